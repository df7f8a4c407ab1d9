//! Whether `driftless controller` elects a leader when not told.
//!
//! In a pod (several replicas may run) it does, in the pod's namespace. On a
//! laptop (`driftless controller` against the current kubeconfig) it does
//! not: one process, and no Lease namespace to create first. Asking for a
//! Lease namespace (`--leader-election-namespace`) turns it on anywhere.

/// Whether this process runs in a Kubernetes pod (the kubelet sets
/// `KUBERNETES_SERVICE_HOST` in every container).
pub fn in_pod() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty())
}

/// `(elect, why)`: `explicit` is `--leader-elect` when given.
pub fn decide(
    explicit: Option<bool>,
    lease_namespace_given: bool,
    in_pod: bool,
) -> (bool, &'static str) {
    match explicit {
        Some(true) => (true, "--leader-elect"),
        Some(false) => (false, "--leader-elect=false"),
        None if lease_namespace_given => (true, "--leader-election-namespace is set"),
        None if in_pod => (true, "running in a pod"),
        None => (
            false,
            "not running in a pod (one process; pass --leader-elect to elect one anyway)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::decide;

    #[test]
    fn on_in_a_pod_off_on_a_laptop_unless_told() {
        assert!(decide(None, false, true).0);
        assert!(!decide(None, false, false).0);
        assert!(decide(None, true, false).0);
        assert!(decide(Some(true), false, false).0);
        assert!(!decide(Some(false), true, true).0);
    }
}
