//! `forProvider.policy`: the bucket policy, compared as a policy rather than
//! as text. One GetBucketPolicy per poll when set; none when unset.
//! LocalStack returns the text exactly as put (indentation included) and
//! does not check Resource ARNs as AWS does; the compare below does not
//! depend on either.

use driftless_provider::{CloudError, FieldDiff};
use serde_json::Value;

use super::{BucketClient, BucketField};
use crate::errors::{cloud_error, code_of};

/// The schema of `policy`: a JSON object, or a string holding one (a
/// policy pasted as text). Untyped: Kubernetes keeps either as given.
pub(super) fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "The bucket policy: a JSON policy document, as an object or as a string. Compared as a policy (key and statement order, whitespace, and a single value versus a list of one do not matter). Unset leaves the policy alone; removing it deletes the policy driftless set.",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The spec's policy as a document: a string is parsed.
pub(super) fn document(spec: &Value) -> Result<Value, CloudError> {
    let doc = match spec {
        Value::String(text) => serde_json::from_str(text).map_err(|e| {
            CloudError::terminal(
                "MalformedPolicy",
                format!("forProvider.policy is not a JSON document: {e}"),
            )
        })?,
        other => other.clone(),
    };
    if doc.get("Statement").is_none() {
        return Err(CloudError::terminal(
            "MalformedPolicy",
            "forProvider.policy must be a JSON object with a Statement",
        ));
    }
    Ok(doc)
}

/// The same policy in one canonical form: statements and the values of
/// Action, Resource, Principal and Condition as sorted lists (IAM treats a
/// single value as a list of one, and these lists as sets), and a bare
/// 12-digit account principal as the root ARN AWS stores it as.
pub fn canonical(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(statements) = doc.get_mut("Statement") {
        let list = list(statements.take()).into_iter().map(statement).collect();
        *statements = set(Value::Array(list));
    }
    doc
}

fn list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        one => vec![one],
    }
}

/// Sorted by a key-order-independent rendering, duplicates dropped.
fn set(v: Value) -> Value {
    let mut items = list(v);
    items.sort_by_cached_key(sort_key);
    items.dedup();
    Value::Array(items)
}

fn sort_key(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k:?}:{}", sort_key(v)))
                .collect();
            fields.sort();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(sort_key).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

fn statement(mut s: Value) -> Value {
    let Some(fields) = s.as_object_mut() else {
        return s;
    };
    for (key, value) in fields.iter_mut() {
        match key.as_str() {
            "Action" | "NotAction" | "Resource" | "NotResource" => *value = set(value.take()),
            "Principal" | "NotPrincipal" => principal(value),
            "Condition" => {
                for keys in value
                    .as_object_mut()
                    .into_iter()
                    .flat_map(|m| m.values_mut())
                {
                    for v in keys
                        .as_object_mut()
                        .into_iter()
                        .flat_map(|m| m.values_mut())
                    {
                        *v = set(v.take());
                    }
                }
            }
            _ => {}
        }
    }
    s
}

/// `{"AWS": ..., "Service": ...}` values become sets; `"*"` is
/// `{"AWS": "*"}` (IAM documents the two as the same).
fn principal(p: &mut Value) {
    if p.as_str() == Some("*") {
        *p = serde_json::json!({"AWS": "*"});
    }
    for (kind, ids) in p.as_object_mut().into_iter().flatten() {
        let mut items = list(ids.take());
        if kind == "AWS" {
            for id in &mut items {
                if let Some(account) = id.as_str().filter(|s| is_account(s)) {
                    *id = Value::String(format!("arn:aws:iam::{account}:root"));
                }
            }
        }
        *ids = set(Value::Array(items));
    }
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

impl BucketClient {
    pub(super) async fn diff_policy(
        &self,
        name: &str,
        want: &Value,
        diff: &mut Vec<FieldDiff<BucketField>>,
    ) -> Result<(), CloudError> {
        let want = document(want)?;
        let have = match self.s3.get_bucket_policy().bucket(name).send().await {
            Ok(out) => out.policy().and_then(|p| serde_json::from_str(p).ok()),
            Err(e) if code_of(&e) == Some("NoSuchBucketPolicy") => None,
            Err(e) => return Err(cloud_error(e)),
        };
        if have.as_ref().map(canonical) != Some(canonical(&want)) {
            let have = have.map_or("none".to_string(), |h| h.to_string());
            diff.push(FieldDiff::new(
                BucketField::Policy,
                format_args!("{have}"),
                format_args!("{want}"),
            ));
        }
        Ok(())
    }

    pub(super) async fn put_policy(&self, name: &str, spec: &Value) -> Result<(), CloudError> {
        let doc = document(spec)?;
        self.s3
            .put_bucket_policy()
            .bucket(name)
            .policy(doc.to_string())
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(())
    }

    pub(super) async fn delete_policy(&self, name: &str) -> Result<(), CloudError> {
        match self.s3.delete_bucket_policy().bucket(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if code_of(&e) == Some("NoSuchBucketPolicy") => Ok(()),
            Err(e) => Err(cloud_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn same(a: Value, b: Value) -> bool {
        canonical(&a) == canonical(&b)
    }

    const RESOURCE: &str = "arn:aws:s3:::b/*";

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let text = r#"{ "Version": "2012-10-17",
            "Statement": [ { "Effect": "Allow", "Principal": "*",
                             "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*" } ] }"#;
        let parsed = document(&Value::String(text.into())).unwrap();
        let reordered = json!({"Statement": [{"Resource": RESOURCE, "Action": "s3:GetObject", "Principal": "*", "Effect": "Allow"}], "Version": "2012-10-17"});
        assert!(same(parsed, reordered));
    }

    #[test]
    fn a_single_statement_or_value_is_a_list_of_one() {
        let single = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "s3:GetObject", "Resource": RESOURCE, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}});
        let lists = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::111122223333:root"]}, "Action": ["s3:GetObject"], "Resource": [RESOURCE], "Condition": {"Bool": {"aws:SecureTransport": ["true"]}}}]});
        assert!(same(single, lists));
    }

    #[test]
    fn statement_and_value_order_do_not_matter() {
        let a = json!({"Statement": [{"Sid": "1", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": RESOURCE}, {"Sid": "2", "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": RESOURCE}]});
        let b = json!({"Statement": [{"Sid": "2", "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": RESOURCE}, {"Sid": "1", "Effect": "Allow", "Principal": "*", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": RESOURCE}]});
        assert!(same(a, b));
    }

    #[test]
    fn an_account_principal_is_its_root_arn() {
        let short = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "s3:GetObject", "Resource": RESOURCE}]});
        let arn = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "s3:GetObject", "Resource": RESOURCE}]});
        assert!(same(short, arn));
    }

    #[test]
    fn the_anyone_principal_has_two_spellings() {
        let short = json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": RESOURCE}]});
        let long = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": "s3:GetObject", "Resource": RESOURCE}]});
        assert!(same(short, long));
    }

    #[test]
    fn real_differences_are_seen() {
        let base = json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": RESOURCE}]});
        for changed in [
            json!({"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": RESOURCE}]}),
            json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": RESOURCE}]}),
            json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "*"}, "Action": "s3:GetObject", "Resource": RESOURCE}]}),
            json!({"Statement": [{"Effect": "Allow", "Principal": "*", "NotAction": "s3:GetObject", "Resource": RESOURCE}]}),
            json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other/*"}]}),
            json!({"Statement": [
                {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": RESOURCE},
                {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": RESOURCE}]}),
        ] {
            assert!(!same(base.clone(), changed.clone()), "{changed}");
        }
    }

    #[test]
    fn a_string_that_is_not_a_policy_is_refused_by_name() {
        let e = document(&Value::String("{not json".into())).unwrap_err();
        assert!(
            e.message
                .contains("forProvider.policy is not a JSON document"),
            "{}",
            e.message
        );
        let e = document(&json!({"Version": "2012-10-17"})).unwrap_err();
        assert!(e.message.contains("with a Statement"), "{}", e.message);
    }
}
