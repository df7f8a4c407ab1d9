//! Controller settings (from flags and the environment).

use std::path::PathBuf;
use std::time::Duration;

/// How the controller paces its work.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often an idle resource is observed to find drift (jittered ±10%).
    pub poll_interval: Duration,
    /// Reconciles running at once, per kind.
    pub concurrency: u16,
    /// Delay before retrying an error that retrying cannot fix (a spec change
    /// retries at once).
    pub terminal_backoff: Duration,
    /// Longest one managed-resource reconcile may run.
    pub reconcile_timeout: Duration,
    /// Delete duplicates made by an object's own create call.
    pub delete_proven_duplicates: bool,
    /// Watch only this namespace (default: all).
    pub namespace: Option<String>,
    /// Where GitSync keeps its bare clones.
    pub git_cache: PathBuf,
    /// Wait for Deployments to be Available before a GitSync is Ready. Off
    /// for API servers that run no workload controllers (tests).
    pub health_check_workloads: bool,
    /// How often an object waiting for a reference looks again. A fallback:
    /// it is woken the moment its target turns Ready (see `waiters`).
    pub reference_retry: Duration,
    /// The kustomize and helm binaries GitSync renders with, and whether
    /// kustomize may fetch remote bases.
    pub render: crate::render::Tools,
    /// Lock-down mode: the ServiceAccount a GitSync without
    /// `spec.serviceAccountName` acts as (in its own namespace), never the
    /// controller itself.
    pub default_service_account: Option<String>,
    /// Which source URLs GitSyncs may fetch.
    pub sources: crate::gitsync::source::UrlPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(60),
            concurrency: 8,
            terminal_backoff: Duration::from_secs(600),
            reconcile_timeout: Duration::from_secs(180),
            delete_proven_duplicates: false,
            namespace: None,
            git_cache: default_git_cache(),
            health_check_workloads: true,
            reference_retry: Duration::from_secs(30),
            render: crate::render::Tools::default(),
            default_service_account: None,
            sources: crate::gitsync::source::UrlPolicy::default(),
        }
    }
}

/// `$XDG_CACHE_HOME/driftless/git`, else `~/.cache/driftless/git`, else
/// (no home: a container) `/tmp/driftless/git`.
pub fn default_git_cache() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("driftless")
        .join("git")
}

/// Parses `5s`, `1m`, `1h30m`, ... with a message that names the input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (examples: 30s, 1m, 1h30m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("\"soon\""), "{err}");
    }
}
