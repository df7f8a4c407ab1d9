//! Ready and Synced, with Crossplane's meaning. Every condition driftless
//! writes on a managed resource is built here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";

/// One condition's desired value, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Cond {
    pub fn available() -> Self {
        Self::new(READY, true, "Available", "")
    }
    pub fn creating(message: impl Into<String>) -> Self {
        Self::new(READY, false, "Creating", message)
    }
    pub fn deleting(message: impl Into<String>) -> Self {
        Self::new(READY, false, "Deleting", message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(READY, false, "Unavailable", message)
    }
    pub fn reconcile_success() -> Self {
        Self::new(SYNCED, true, "ReconcileSuccess", "")
    }
    pub fn reconcile_error(message: impl Into<String>) -> Self {
        Self::new(SYNCED, false, "ReconcileError", message)
    }
    pub fn reconcile_paused() -> Self {
        Self::new(
            SYNCED,
            false,
            "ReconcilePaused",
            "reconciliation is paused by the driftless.dev/paused annotation",
        )
    }
    pub fn reference_not_ready(message: impl Into<String>) -> Self {
        Self::new(SYNCED, false, "ReferenceNotReady", message)
    }

    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

fn status_str(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// Sets `cond` in `conditions`. The transition time moves only when the
/// status changes, so that it tells since when the state holds.
pub fn set(conditions: &mut Vec<Condition>, cond: &Cond, observed_generation: Option<i64>) {
    let status = status_str(cond.status);
    let previous = conditions.iter().position(|c| c.type_ == cond.type_);
    let last_transition_time = previous
        .map(|i| &conditions[i])
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    let new = Condition {
        type_: cond.type_.to_string(),
        status: status.to_string(),
        reason: cond.reason.to_string(),
        message: cond.message.clone(),
        observed_generation,
        last_transition_time,
    };
    match previous {
        Some(i) => conditions[i] = new,
        None => conditions.push(new),
    }
}

/// Whether a condition of `type_` is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut conds = Vec::new();
        set(&mut conds, &Cond::creating("waiting"), Some(1));
        let t0 = conds[0].last_transition_time.clone();
        set(&mut conds, &Cond::creating("still waiting"), Some(2));
        assert_eq!(conds[0].last_transition_time, t0);
        assert_eq!(conds[0].message, "still waiting");
        assert_eq!(conds[0].observed_generation, Some(2));
        std::thread::sleep(std::time::Duration::from_millis(5));
        set(&mut conds, &Cond::available(), Some(2));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].status, "True");
        assert_ne!(conds[0].last_transition_time, t0);
        assert!(is_true(&conds, READY));
    }
}
