//! `forProvider.serverSideEncryption`: one GetBucketEncryption per poll when set.

use aws_sdk_s3::types::{
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule,
};
use driftless_provider::{CloudError, FieldDiff};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{build_error, BucketClient, BucketField};
use crate::errors::{cloud_error, code_of};

/// Default encryption algorithm.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EncryptionAlgorithm {
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    AwsKms,
}

/// Default server-side encryption of new objects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.kmsKeyId) || self.algorithm == 'aws:kms'",
     "message": "kmsKeyId is only valid with algorithm aws:kms"}
]))]
pub struct Encryption {
    pub algorithm: EncryptionAlgorithm,
    /// KMS key id or ARN (aws:kms only; default: the AWS managed key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

impl BucketClient {
    pub(super) async fn diff_encryption(
        &self,
        name: &str,
        want: &Encryption,
        diff: &mut Vec<FieldDiff<BucketField>>,
    ) -> Result<(), CloudError> {
        let have = match self.s3.get_bucket_encryption().bucket(name).send().await {
            Ok(out) => out
                .server_side_encryption_configuration()
                .and_then(|c| c.rules().first())
                .and_then(|r| r.apply_server_side_encryption_by_default())
                .map(|d| Encryption {
                    algorithm: match d.sse_algorithm() {
                        ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse => {
                            EncryptionAlgorithm::AwsKms
                        }
                        _ => EncryptionAlgorithm::Aes256,
                    },
                    kms_key_id: d.kms_master_key_id().map(str::to_string),
                }),
            Err(e) if code_of(&e) == Some("ServerSideEncryptionConfigurationNotFoundError") => None,
            Err(e) => return Err(cloud_error(e)),
        };
        if have.as_ref() != Some(want) {
            diff.push(FieldDiff::new(
                BucketField::ServerSideEncryption,
                have,
                want,
            ));
        }
        Ok(())
    }

    pub(super) async fn put_encryption(
        &self,
        name: &str,
        enc: &Encryption,
    ) -> Result<(), CloudError> {
        let algorithm = match enc.algorithm {
            EncryptionAlgorithm::Aes256 => ServerSideEncryption::Aes256,
            EncryptionAlgorithm::AwsKms => ServerSideEncryption::AwsKms,
        };
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(algorithm)
            .set_kms_master_key_id(enc.kms_key_id.clone())
            .build()
            .map_err(build_error)?;
        let conf = ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(default)
                    .build(),
            )
            .build()
            .map_err(build_error)?;
        self.s3
            .put_bucket_encryption()
            .bucket(name)
            .server_side_encryption_configuration(conf)
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(())
    }
}
