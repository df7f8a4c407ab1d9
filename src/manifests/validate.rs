//! `driftless validate`: offline checks of manifests against the same schema
//! the CRDs carry (types, required fields, enums, patterns, unknown fields and
//! the CEL rules), and of references within the set. No cluster, no cloud.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use driftless_provider::{Connector, KindVisitor, ManagedKind, RefSource, References};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{compile_schema, CompiledSchema, Validator};
use regex::Regex;
use serde_json::{Map, Value};

use super::{namespace_or_default, reference_targets, Manifest, ManifestError};

/// The schema of one kind, by `apiVersion` and `kind`.
struct KindSchema {
    api_version: String,
    kind: String,
    schema: Value,
    /// CEL rules compiled once, not per object.
    cel: CompiledSchema,
}

fn schemas(crds: &[CustomResourceDefinition]) -> Vec<KindSchema> {
    let mut out = Vec::new();
    for crd in crds {
        for v in &crd.spec.versions {
            let Some(schema) = v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
            else {
                continue;
            };
            let schema = serde_json::to_value(schema).expect("a schema serializes");
            out.push(KindSchema {
                api_version: format!("{}/{}", crd.spec.group, v.name),
                kind: crd.spec.names.kind.clone(),
                cel: compile_schema(&schema),
                schema,
            });
        }
    }
    out
}

/// Validates `manifests` against `crds`; every problem found, in file order.
pub fn validate(manifests: &[Manifest], crds: &[CustomResourceDefinition]) -> Vec<ManifestError> {
    let schemas = schemas(crds);
    let cel = Validator::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for m in manifests {
        let id = (m.api_version(), m.kind(), m.namespace(), m.name());
        if !seen.insert(id) {
            errors.push(m.error("metadata.name", "defined more than once"));
        }
        let Some(ks) = schemas
            .iter()
            .find(|s| s.api_version == m.api_version() && s.kind == m.kind())
        else {
            // Not ours (the API server will judge it), unless its group is.
            errors.extend(unknown_kind(&schemas, m));
            continue;
        };
        check_object(&ks.schema, &m.value, "", m, &mut errors, true);
        if let Err(errs) = cel.validate_compiled(&ks.cel, &m.value, None) {
            for e in errs.into_vec() {
                let mut path = e.field_path.trim_start_matches('.').to_string();
                if path.is_empty() && e.rule.contains("self.metadata.name") {
                    path = "metadata.name".into();
                }
                let message = if path.is_empty() {
                    e.message
                } else {
                    format!("{path}: {}", e.message)
                };
                errors.push(m.error(&path, message));
            }
        }
    }
    let mut refs = CheckReferences {
        manifests,
        errors: Vec::new(),
    };
    crate::registry::Providers::offline().visit(&mut refs);
    errors.extend(refs.errors);
    errors.sort_by(|a, b| a.origin.cmp(&b.origin));
    errors
}

/// An object of one of driftless' own groups whose apiVersion and kind
/// match no CRD: a typo the cluster would only reject at apply time.
fn unknown_kind(schemas: &[KindSchema], m: &Manifest) -> Option<ManifestError> {
    let group = |api_version: &str| api_version.rsplit_once('/').map(|(g, _)| g.to_string());
    let ours = group(m.api_version())?;
    let mut known: Vec<&str> = schemas
        .iter()
        .filter(|s| group(&s.api_version).as_deref() == Some(ours.as_str()))
        .map(|s| s.kind.as_str())
        .collect();
    if known.is_empty() {
        return None;
    }
    known.sort();
    known.dedup();
    let message = if known.contains(&m.kind()) {
        format!("{} has no version {}", m.kind(), m.api_version())
    } else {
        format!(
            "{ours} has no kind {:?}; its kinds: {}",
            m.kind(),
            known.join(", ")
        )
    };
    Some(m.error("kind", message))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Structural validation, as the API server does it for a CRD.
fn check_object(
    schema: &Value,
    value: &Value,
    path: &str,
    m: &Manifest,
    errors: &mut Vec<ManifestError>,
    root: bool,
) {
    Checker { m, errors }.value(schema, value, path, root);
}

/// Walks one object against its schema, collecting every problem.
struct Checker<'a> {
    m: &'a Manifest,
    errors: &'a mut Vec<ManifestError>,
}

/// How messages name a field path (`the object` for the root).
fn at(path: &str) -> &str {
    if path.is_empty() {
        "the object"
    } else {
        path
    }
}

impl Checker<'_> {
    fn fail(&mut self, path: &str, message: String) {
        self.errors
            .push(self.m.error(path, format!("{}: {message}", at(path))));
    }

    fn value(&mut self, schema: &Value, value: &Value, path: &str, root: bool) {
        if value.is_null() && schema["nullable"] == true {
            return;
        }
        if schema["x-kubernetes-int-or-string"] == true && (value.is_string() || value.is_i64()) {
            return;
        }
        let want = schema["type"].as_str().unwrap_or("");
        let have = type_name(value);
        let type_ok = match want {
            "" => true,
            "number" => value.is_number(),
            other => other == have,
        };
        if !type_ok {
            return self.fail(path, format!("expected {want}, got {have}"));
        }
        if let Some(allowed) = schema["enum"].as_array().filter(|a| !a.contains(value)) {
            let list: Vec<String> = allowed
                .iter()
                .filter(|a| !a.is_null())
                .map(|a| a.to_string())
                .collect();
            let supported = list.join(", ");
            self.fail(
                path,
                format!("unsupported value {value}: supported values: {supported}"),
            );
        }
        match value {
            Value::Object(map) => self.object(schema, map, path, root),
            Value::Array(items) => self.array(schema, items, path),
            Value::String(s) => self.string(schema, s, path),
            Value::Number(n) => self.number(schema, n.as_f64().unwrap_or_default(), path),
            _ => {}
        }
    }

    fn object(&mut self, schema: &Value, map: &Map<String, Value>, path: &str, root: bool) {
        let props = schema["properties"].as_object();
        let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
        for (k, v) in map {
            // The API server owns these.
            if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status") {
                continue;
            }
            let p = join(path, k);
            if let Some(sub) = props.and_then(|p| p.get(k)) {
                self.value(sub, v, &p, false);
            } else if schema["additionalProperties"].is_object() {
                self.value(&schema["additionalProperties"], v, &p, false);
            } else if !preserve && props.is_some() {
                let message = format!("{}: unknown field \"{k}\"", at(path));
                self.errors.push(self.m.error(&p, message));
            }
        }
        let required = schema["required"].as_array().into_iter().flatten();
        for req in required.filter_map(Value::as_str) {
            if !map.contains_key(req) {
                self.fail(path, format!("missing required field \"{req}\""));
            }
        }
        if let Some(max) = schema["maxProperties"]
            .as_u64()
            .filter(|max| map.len() as u64 > *max)
        {
            self.fail(path, format!("at most {max} entries, got {}", map.len()));
        }
    }

    fn array(&mut self, schema: &Value, items: &[Value], path: &str) {
        for (i, item) in items.iter().enumerate() {
            self.value(&schema["items"], item, &format!("{path}[{i}]"), false);
        }
        if let Some(max) = schema["maxItems"]
            .as_u64()
            .filter(|max| items.len() as u64 > *max)
        {
            self.fail(path, format!("at most {max} items, got {}", items.len()));
        }
    }

    fn string(&mut self, schema: &Value, s: &str, path: &str) {
        if let Some(pattern) = schema["pattern"].as_str() {
            if !pattern_matches(pattern, s) {
                self.fail(path, format!("{s:?} does not match {pattern}"));
            }
        }
        let len = s.chars().count() as u64;
        if let Some(min) = schema["minLength"].as_u64().filter(|min| len < *min) {
            self.fail(path, format!("at least {min} characters"));
        }
        if let Some(max) = schema["maxLength"].as_u64().filter(|max| len > *max) {
            self.fail(path, format!("at most {max} characters"));
        }
    }

    fn number(&mut self, schema: &Value, x: f64, path: &str) {
        if let Some(min) = schema["minimum"].as_f64().filter(|min| x < *min) {
            self.fail(path, format!("must be at least {min}"));
        }
        if let Some(max) = schema["maximum"].as_f64().filter(|max| x > *max) {
            self.fail(path, format!("must be at most {max}"));
        }
    }
}

/// `s` matches `pattern` (an invalid pattern matches everything: the API
/// server would have refused the CRD). Compiled patterns are kept, because
/// the same few run on every object.
fn pattern_matches(pattern: &str, s: &str) -> bool {
    thread_local! {
        static COMPILED: RefCell<HashMap<String, Option<Regex>>> = RefCell::new(HashMap::new());
    }
    COMPILED.with_borrow_mut(|compiled| {
        compiled
            .entry(pattern.to_string())
            .or_insert_with(|| Regex::new(pattern).ok())
            .as_ref()
            .is_none_or(|re| re.is_match(s))
    })
}

/// References must point at objects in the same set (same namespace).
struct CheckReferences<'a> {
    manifests: &'a [Manifest],
    errors: Vec<ManifestError>,
}

impl KindVisitor for CheckReferences<'_> {
    fn visit<K: ManagedKind>(&mut self, _connector: Arc<dyn Connector<K>>) {
        let api_version = K::api_version(&()).to_string();
        let kind = K::kind(&()).to_string();
        for m in self
            .manifests
            .iter()
            .filter(|m| m.api_version() == api_version && m.kind() == kind)
        {
            let Ok(obj) = serde_json::from_value::<K>(m.value.clone()) else {
                continue; // already reported by the schema check
            };
            for r in obj.for_provider().references() {
                let Err(message) = reference_targets(&r, namespace_or_default(m), self.manifests)
                else {
                    continue;
                };
                // Point at the field the user wrote: vpcRef, securityGroupRefs, vpcSelector.
                let field = r.field.trim_end_matches("Ids").trim_end_matches("Id");
                let path = match &r.source {
                    RefSource::Selector(_) => format!("spec.forProvider.{field}Selector"),
                    _ if r.many => format!("spec.forProvider.{field}Refs"),
                    _ => format!("spec.forProvider.{field}Ref"),
                };
                self.errors.push(m.error(&path, message));
            }
        }
    }
}
