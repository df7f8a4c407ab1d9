//! `forProvider.cors`: the bucket's CORS rules. One GetBucketCors per poll
//! when set; none when unset.

use aws_sdk_s3::types::{CorsConfiguration, CorsRule as S3CorsRule};
use driftless_provider::{CloudError, FieldDiff};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{build_error, BucketClient, BucketField};
use crate::errors::{cloud_error, code_of};

/// One CORS rule. S3 answers a request with the first rule that matches,
/// so the rules' order matters; within a rule, the lists are sets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub id: Option<String>,
    /// GET, PUT, POST, DELETE or HEAD.
    #[schemars(
        length(min = 1, max = 5),
        inner(regex(pattern = "^(GET|PUT|POST|DELETE|HEAD)$"))
    )]
    pub allowed_methods: Vec<String>,
    #[schemars(length(min = 1))]
    pub allowed_origins: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_age_seconds: Option<i32>,
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

/// The rule with its lists as sets.
fn canonical(r: &CorsRule) -> CorsRule {
    CorsRule {
        id: r.id.clone().filter(|id| !id.is_empty()),
        allowed_methods: sorted(&r.allowed_methods),
        allowed_origins: sorted(&r.allowed_origins),
        allowed_headers: sorted(&r.allowed_headers),
        expose_headers: sorted(&r.expose_headers),
        max_age_seconds: r.max_age_seconds,
    }
}

fn rule_from(r: &S3CorsRule) -> CorsRule {
    CorsRule {
        id: r.id().map(str::to_string),
        allowed_methods: r.allowed_methods().to_vec(),
        allowed_origins: r.allowed_origins().to_vec(),
        allowed_headers: r.allowed_headers().to_vec(),
        expose_headers: r.expose_headers().to_vec(),
        max_age_seconds: r.max_age_seconds(),
    }
}

fn rule_to(r: &CorsRule) -> Result<S3CorsRule, CloudError> {
    S3CorsRule::builder()
        .set_id(r.id.clone())
        .set_allowed_methods(Some(r.allowed_methods.clone()))
        .set_allowed_origins(Some(r.allowed_origins.clone()))
        .set_allowed_headers(Some(r.allowed_headers.clone()).filter(|h| !h.is_empty()))
        .set_expose_headers(Some(r.expose_headers.clone()).filter(|h| !h.is_empty()))
        .set_max_age_seconds(r.max_age_seconds)
        .build()
        .map_err(build_error)
}

impl BucketClient {
    pub(super) async fn diff_cors(
        &self,
        name: &str,
        want: &[CorsRule],
        diff: &mut Vec<FieldDiff<BucketField>>,
    ) -> Result<(), CloudError> {
        let have: Vec<CorsRule> = match self.s3.get_bucket_cors().bucket(name).send().await {
            Ok(out) => out.cors_rules().iter().map(rule_from).collect(),
            Err(e) if code_of(&e) == Some("NoSuchCORSConfiguration") => Vec::new(),
            Err(e) => return Err(cloud_error(e)),
        };
        let have: Vec<CorsRule> = have.iter().map(canonical).collect();
        let want: Vec<CorsRule> = want.iter().map(canonical).collect();
        if have != want {
            diff.push(FieldDiff::new(BucketField::Cors, have, want));
        }
        Ok(())
    }

    /// An empty list deletes the configuration (S3 refuses an empty one).
    pub(super) async fn put_cors(&self, name: &str, rules: &[CorsRule]) -> Result<(), CloudError> {
        if rules.is_empty() {
            return self.delete_cors(name).await;
        }
        let rules = rules.iter().map(rule_to).collect::<Result<Vec<_>, _>>()?;
        let conf = CorsConfiguration::builder()
            .set_cors_rules(Some(rules))
            .build()
            .map_err(build_error)?;
        self.s3
            .put_bucket_cors()
            .bucket(name)
            .cors_configuration(conf)
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(())
    }

    pub(super) async fn delete_cors(&self, name: &str) -> Result<(), CloudError> {
        self.s3
            .delete_bucket_cors()
            .bucket(name)
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(())
    }
}
