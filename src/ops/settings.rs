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
    /// Reconcile only objects labelled `driftless.dev/shard=<this>`;
    /// `None`: only objects without that label (Flux's sharding model).
    pub shard: Option<String>,
}

/// The label that assigns a managed resource or GitSync to a shard.
pub const SHARD_LABEL: &str = "driftless.dev/shard";

impl Settings {
    /// The label selector of every watch that decides what this
    /// controller reconciles: its shard's objects, or the unlabelled ones.
    pub fn shard_selector(&self) -> String {
        match &self.shard {
            Some(shard) => format!("{SHARD_LABEL}={shard}"),
            None => format!("!{SHARD_LABEL}"),
        }
    }
}

/// A shard name is a label value: at most 63 characters, letters, digits,
/// `-`, `_` and `.`, beginning and ending with a letter or digit.
pub fn parse_shard(s: &str) -> Result<String, String> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && edge(s.chars().next())
        && edge(s.chars().last());
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("invalid shard {s:?}: a label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"))
    }
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
            shard: None,
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

    #[test]
    fn a_shard_selects_its_label_and_no_shard_the_unlabelled() {
        let mut s = Settings::default();
        assert_eq!(s.shard_selector(), "!driftless.dev/shard");
        s.shard = Some(parse_shard("eu-1").unwrap());
        assert_eq!(s.shard_selector(), "driftless.dev/shard=eu-1");
        for bad in ["", "-a", "a b", &"x".repeat(64)] {
            assert!(parse_shard(bad).unwrap_err().contains("invalid shard"));
        }
    }
}
