//! Placeholder until the chart repository fetcher lands.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec.helm.chart` of a GitSync: a chart from a Helm repository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChartSource {
    pub repository: String,
    pub name: String,
    pub version: String,
}

/// Basic auth for the repository.
pub struct RepoAuth {
    pub username: String,
    pub password: String,
}

/// Placeholder.
pub async fn fetch(
    _source: &ChartSource,
    _auth: Option<&RepoAuth>,
    _cache: &std::path::Path,
    _into: &std::path::Path,
    _timeout: std::time::Duration,
) -> Result<std::path::PathBuf, String> {
    Err("charts from Helm repositories are not built yet".into())
}
