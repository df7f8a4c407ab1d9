//! `forProvider.forceDestroy`: emptying the bucket before deleting it.

use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use driftless_provider::CloudError;

use super::{build_error, BucketClient};
use crate::errors::cloud_error;

impl BucketClient {
    /// Deletes every object version and delete marker, then every object.
    pub(super) async fn empty(&self, name: &str) -> Result<(), CloudError> {
        loop {
            let listed = self
                .s3
                .list_object_versions()
                .bucket(name)
                .send()
                .await
                .map_err(cloud_error)?;
            let mut ids = Vec::new();
            for v in listed.versions() {
                ids.push((
                    v.key().unwrap_or_default().to_string(),
                    v.version_id().map(str::to_string),
                ));
            }
            for m in listed.delete_markers() {
                ids.push((
                    m.key().unwrap_or_default().to_string(),
                    m.version_id().map(str::to_string),
                ));
            }
            if ids.is_empty() {
                break;
            }
            let objects = ids
                .into_iter()
                .map(|(key, version)| {
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version)
                        .build()
                        .map_err(build_error)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(build_error)?;
            self.s3
                .delete_objects()
                .bucket(name)
                .delete(delete)
                .send()
                .await
                .map_err(cloud_error)?;
        }
        Ok(())
    }
}
