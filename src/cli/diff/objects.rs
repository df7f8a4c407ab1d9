//! One object, live against the dry-run result: what is left out (the
//! server's bookkeeping), Secret data masked, and the unified diff.

use serde_json::Value;

/// Metadata the server keeps for itself: it changes on every write and says
/// nothing about what a pull request changes.
const SERVER_METADATA: [&str; 6] = [
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
];

/// `obj` without status and the server's own metadata.
pub fn strip(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in SERVER_METADATA {
                meta.remove(key);
            }
        }
    }
    out
}

/// Masks the values of a Secret's `data` and `stringData` in both objects,
/// as `kubectl diff` does: `***` where a key's value is the same on both
/// sides, `*** (before)` and `*** (after)` where it changed, so that the
/// diff shows which keys changed and never a value.
pub fn mask_secret(before: Option<&mut Value>, after: Option<&mut Value>) {
    let is_secret = |v: &Option<&mut Value>| {
        v.as_ref()
            .is_some_and(|v| v["kind"] == "Secret" && v["apiVersion"] == "v1")
    };
    if !is_secret(&before) && !is_secret(&after) {
        return;
    }
    let (mut before, mut after) = (before, after);
    for field in ["data", "stringData"] {
        let old = before.as_deref().and_then(|b| b.get(field)).cloned();
        let new = after.as_deref().and_then(|a| a.get(field)).cloned();
        if let Some(b) = before.as_deref_mut() {
            mask_map(b.get_mut(field), new.as_ref(), "before");
        }
        if let Some(a) = after.as_deref_mut() {
            mask_map(a.get_mut(field), old.as_ref(), "after");
        }
    }
}

/// Replaces every value of `map` with `***`, marked `side` when `other`
/// has a different value (or none) for the key.
fn mask_map(map: Option<&mut Value>, other: Option<&Value>, side: &str) {
    let Some(Value::Object(map)) = map else {
        return;
    };
    for (k, v) in map.iter_mut() {
        let same = other.and_then(|o| o.get(k)) == Some(&*v);
        *v = match same {
            true => "***".into(),
            false => format!("*** ({side})").into(),
        };
    }
}

/// Masks, in both objects, every value that SOPS encrypted in Git
/// (`ENC[...]` in `written`, the object as written): `**SOPS**`, as `build`
/// shows it, marked `(before)` / `(after)` where the value changes.
pub fn mask_sops(before: Option<&mut Value>, after: Option<&mut Value>, written: &Value) {
    let mut pointers = Vec::new();
    encrypted_at(written, String::new(), &mut pointers);
    let (mut before, mut after) = (before, after);
    for p in &pointers {
        let old = before.as_deref().and_then(|b| b.pointer(p)).cloned();
        let new = after.as_deref().and_then(|a| a.pointer(p)).cloned();
        let mark = |side: &str| match old == new {
            true => Value::from("**SOPS**"),
            false => Value::from(format!("**SOPS** ({side})")),
        };
        if let Some(v) = before.as_deref_mut().and_then(|b| b.pointer_mut(p)) {
            *v = mark("before");
        }
        if let Some(v) = after.as_deref_mut().and_then(|a| a.pointer_mut(p)) {
            *v = mark("after");
        }
    }
}

/// The JSON pointers of the `ENC[...]` values of `v`.
fn encrypted_at(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let key = k.replace('~', "~0").replace('/', "~1");
                encrypted_at(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                encrypted_at(child, format!("{at}/{i}"), out);
            }
        }
        Value::String(s) if s.starts_with("ENC[") => out.push(at),
        _ => {}
    }
}

/// `v` as YAML, the way `kubectl get -o yaml` reads.
pub fn yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_else(|e| format!("# cannot print as YAML: {e}\n"))
}

/// The unified diff of two YAML texts (`None` when they are the same).
pub fn unified(before: &str, after: &str, from: &str, to: &str) -> Option<String> {
    if before == after {
        return None;
    }
    let diff = similar::TextDiff::from_lines(before, after);
    Some(
        diff.unified_diff()
            .context_radius(3)
            .header(from, to)
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bookkeeping_and_status_are_left_out() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "uid": "u", "resourceVersion": "7", "generation": 2,
                "creationTimestamp": "t", "managedFields": [], "labels": {"a": "b"}},
            "data": {"k": "v"}, "status": {"x": 1}});
        assert_eq!(
            strip(&live),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "labels": {"a": "b"}}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn secret_values_are_masked_and_changed_keys_marked() {
        let mut before = json!({"apiVersion": "v1", "kind": "Secret",
            "data": {"same": "c2FtZQ==", "changed": "b2xk", "gone": "eA=="}});
        let mut after = json!({"apiVersion": "v1", "kind": "Secret",
            "data": {"same": "c2FtZQ==", "changed": "bmV3", "added": "eQ=="}});
        mask_secret(Some(&mut before), Some(&mut after));
        assert_eq!(
            before["data"],
            json!({"same": "***", "changed": "*** (before)", "gone": "*** (before)"})
        );
        assert_eq!(
            after["data"],
            json!({"same": "***", "changed": "*** (after)", "added": "*** (after)"})
        );
        let mut created = json!({"apiVersion": "v1", "kind": "Secret", "stringData": {"k": "v"}});
        mask_secret(None, Some(&mut created));
        assert_eq!(created["stringData"], json!({"k": "*** (after)"}));
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}});
        mask_secret(None, Some(&mut cm));
        assert_eq!(cm["data"]["k"], "v", "only Secrets are masked");
    }

    #[test]
    fn what_sops_encrypted_is_masked() {
        let written = json!({"kind": "ConfigMap", "data": {"token": "ENC[AES256_GCM,data:x]",
            "a/b": "ENC[AES256_GCM,data:y]", "plain": "p"}});
        let mut before =
            json!({"kind": "ConfigMap", "data": {"token": "old", "a/b": "same", "plain": "p"}});
        let mut after =
            json!({"kind": "ConfigMap", "data": {"token": "new", "a/b": "same", "plain": "p"}});
        mask_sops(Some(&mut before), Some(&mut after), &written);
        assert_eq!(
            before["data"],
            json!({"token": "**SOPS** (before)", "a/b": "**SOPS**", "plain": "p"})
        );
        assert_eq!(
            after["data"],
            json!({"token": "**SOPS** (after)", "a/b": "**SOPS**", "plain": "p"})
        );
    }

    #[test]
    fn the_diff_is_unified_with_headers() {
        let d = unified("a: 1\nb: 2\n", "a: 1\nb: 3\n", "live", "after").unwrap();
        assert!(d.starts_with("--- live\n+++ after\n"), "{d}");
        assert!(d.contains("-b: 2\n+b: 3\n"), "{d}");
        assert_eq!(unified("a: 1\n", "a: 1\n", "x", "y"), None);
    }
}
