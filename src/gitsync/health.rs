//! When is an applied object healthy. Generic rules, no cloud kind named:
//! - a managed resource (it has `spec.forProvider`), or anything else with a
//!   `Ready` condition: `Ready=True`, observed at its current generation;
//! - a Deployment: `Available=True` with every replica updated, observed at
//!   its current generation (skipped when workload checks are off: an API
//!   server without controllers never reports them);
//! - anything else: healthy once applied.

use serde_json::Value;

/// `None`: healthy. `Some(why)`: not yet, and why (for the status message).
pub fn not_ready(obj: &Value, check_workloads: bool) -> Option<String> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let generation = obj["metadata"]["generation"].as_i64();
    let conditions = obj["status"]["conditions"].as_array();
    let condition = |type_: &str| {
        conditions
            .into_iter()
            .flatten()
            .find(|c| c["type"].as_str() == Some(type_))
    };
    if api_version == "apps/v1" && kind == "Deployment" {
        if !check_workloads {
            return None;
        }
        let observed = obj["status"]["observedGeneration"].as_i64();
        if generation.is_some() && observed < generation {
            return Some("not yet observed by its controller".into());
        }
        let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
        let updated = obj["status"]["updatedReplicas"].as_i64().unwrap_or(0);
        if updated < want {
            return Some(format!("{updated} of {want} replicas updated"));
        }
        return match condition("Available") {
            Some(c) if c["status"] == "True" => None,
            Some(c) => Some(describe("Available", c)),
            None => Some("no Available condition yet".into()),
        };
    }
    let managed = obj["spec"].get("forProvider").is_some();
    match condition("Ready") {
        Some(c) if c["status"] == "True" => {
            let observed = c["observedGeneration"].as_i64();
            match (observed, generation) {
                (Some(o), Some(g)) if o < g => {
                    Some(format!("Ready is for generation {o}, not yet for {g}"))
                }
                _ => None,
            }
        }
        Some(c) => Some(describe("Ready", c)),
        None if managed => Some("no Ready condition yet".into()),
        None => None,
    }
}

fn describe(type_: &str, c: &Value) -> String {
    let status = c["status"].as_str().unwrap_or("Unknown");
    let reason = c["reason"].as_str().unwrap_or_default();
    let message = c["message"].as_str().unwrap_or_default();
    let mut s = format!("{type_}={status}");
    if !reason.is_empty() {
        s.push_str(&format!(" ({reason})"));
    }
    if !message.is_empty() {
        s.push_str(&format!(": {message}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn managed_resources_by_ready_at_their_generation() {
        let mut b = json!({"apiVersion": "aws.driftless.dev/v1alpha1", "kind": "Bucket",
            "metadata": {"name": "b", "generation": 2}, "spec": {"forProvider": {}}});
        assert_eq!(
            not_ready(&b, true).as_deref(),
            Some("no Ready condition yet")
        );
        b["status"] = json!({"conditions": [{"type": "Ready", "status": "False", "reason": "Creating", "message": "waiting"}]});
        assert_eq!(
            not_ready(&b, true).as_deref(),
            Some("Ready=False (Creating): waiting")
        );
        b["status"]["conditions"][0] =
            json!({"type": "Ready", "status": "True", "observedGeneration": 1});
        assert_eq!(
            not_ready(&b, false).as_deref(),
            Some("Ready is for generation 1, not yet for 2")
        );
        b["status"]["conditions"][0]["observedGeneration"] = json!(2);
        assert_eq!(not_ready(&b, true), None);
    }

    #[test]
    fn deployments_by_available_unless_skipped() {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 3}, "spec": {"replicas": 3}});
        assert_eq!(not_ready(&d, false), None);
        assert_eq!(
            not_ready(&d, true).as_deref(),
            Some("not yet observed by its controller")
        );
        d["status"] = json!({"observedGeneration": 3, "updatedReplicas": 1});
        assert_eq!(
            not_ready(&d, true).as_deref(),
            Some("1 of 3 replicas updated")
        );
        d["status"]["updatedReplicas"] = json!(3);
        d["status"]["conditions"] = json!([{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]);
        assert_eq!(
            not_ready(&d, true).as_deref(),
            Some("Available=False (MinimumReplicasUnavailable)")
        );
        d["status"]["conditions"][0]["status"] = json!("True");
        assert_eq!(not_ready(&d, true), None);
    }

    #[test]
    fn plain_objects_are_ready_once_applied() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert_eq!(not_ready(&cm, true), None);
    }
}
