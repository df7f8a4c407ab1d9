//! Loading Kubernetes manifests from YAML files, keeping where every field
//! came from, so that an error can say `file:line:col`.
//!
//! Multi-document files and `kind: List` are supported. The YAML is read
//! with the event parser under serde-saphyr (what kube uses), because a
//! plain deserializer forgets positions.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub mod validate;
pub mod walk;

use driftless_provider::{RefSource, Reference};
use serde_json::{Map, Number, Value};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

/// One object from a manifest file.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub file: PathBuf,
    /// Where the object starts (1-based line and column).
    pub line: usize,
    pub col: usize,
    pub value: Value,
    /// Dotted field path (`spec.forProvider.tags.team`, `spec.rules[0]`) to
    /// where its key (or list item) starts.
    positions: HashMap<String, (usize, usize)>,
}

impl Manifest {
    pub fn str_at(&self, pointer: &str) -> Option<&str> {
        self.value.pointer(pointer).and_then(Value::as_str)
    }
    pub fn api_version(&self) -> Option<&str> {
        self.str_at("/apiVersion")
    }
    pub fn kind(&self) -> Option<&str> {
        self.str_at("/kind")
    }
    pub fn name(&self) -> Option<&str> {
        self.str_at("/metadata/name")
    }
    pub fn namespace(&self) -> Option<&str> {
        self.str_at("/metadata/namespace")
    }

    /// `Kind/name` (or `Kind/namespace/name`), for messages.
    pub fn describe(&self) -> String {
        let kind = self.kind().unwrap_or("<no kind>");
        let name = self.name().unwrap_or("<no name>");
        match self.namespace() {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        }
    }

    /// Where `path` (dotted) is written, or its closest written parent.
    pub fn position(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return (self.line, self.col),
            }
        }
    }

    /// An error about `path` of this object.
    pub fn error(&self, path: &str, message: impl Into<String>) -> ManifestError {
        let (line, col) = self.position(path);
        ManifestError {
            file: self.file.clone(),
            line,
            col,
            object: Some(self.describe()),
            message: message.into(),
        }
    }
}

/// A problem in a manifest, with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    /// `Kind ns/name`, when the object is known.
    pub object: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.col)?;
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// The namespace of an object as applied: `default` when unset.
pub fn namespace_or_default(m: &Manifest) -> &str {
    m.namespace().unwrap_or("default")
}

/// The objects a reference points at within `set`: by name or by labels, of
/// the referenced kind, in namespace `ns`. A single reference takes the first
/// selector match by name, as the controller does. Literal ids point at
/// nothing. The error says which target is missing.
pub fn reference_targets<'a>(
    r: &Reference,
    ns: &str,
    set: &'a [Manifest],
) -> Result<Vec<&'a Manifest>, String> {
    let api_version = r.target.api_version.as_str();
    let kind = r.target.kind.as_str();
    let candidates = || {
        set.iter().filter(move |t| {
            t.api_version() == Some(api_version)
                && t.kind() == Some(kind)
                && namespace_or_default(t) == ns
        })
    };
    match &r.source {
        RefSource::Id(_) | RefSource::Ids(_) => Ok(Vec::new()),
        RefSource::Names(names) => names
            .iter()
            .map(|name| {
                candidates()
                    .find(|t| t.name() == Some(name.as_str()))
                    .ok_or_else(|| format!("{}: {kind} {name:?} is not defined in namespace {ns} of these manifests", r.field))
            })
            .collect(),
        RefSource::Selector(labels) => {
            let mut matches: Vec<&Manifest> = candidates()
                .filter(|t| labels.iter().all(|(k, v)| t.value["metadata"]["labels"][k].as_str() == Some(v.as_str())))
                .collect();
            matches.sort_by_key(|t| t.name().unwrap_or_default().to_string());
            if !r.many {
                matches.truncate(1);
            }
            if matches.is_empty() {
                return Err(format!("{}: no {kind} in namespace {ns} of these manifests has labels {labels:?}", r.field));
            }
            Ok(matches)
        }
    }
}

/// How YAML users call a value's type, for messages.
pub fn yaml_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// Every `.yaml` / `.yml` file under `paths` (files or directories,
/// recursively, by [`walk::yaml_files`]), in a stable order. A file named
/// on the command line is read whatever its name.
pub fn find_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.is_dir() {
            let found = walk::yaml_files(p, "")
                .map_err(|e| format!("{}: {}: {}", p.display(), e.dir, e.reason))?;
            files.extend(found.into_iter().map(|f| p.join(f)));
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Loads every manifest under `paths`. Returns the objects of the files that
/// parsed, and one error per file that did not (or object without
/// apiVersion, kind or metadata.name).
pub fn load(paths: &[PathBuf]) -> (Vec<Manifest>, Vec<ManifestError>) {
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    let files = match find_files(paths) {
        Ok(f) => f,
        Err(e) => {
            errors.push(ManifestError {
                file: PathBuf::from(e.split(':').next().unwrap_or_default()),
                line: 0,
                col: 0,
                object: None,
                message: e,
            });
            return (manifests, errors);
        }
    };
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ManifestError {
                    file: file.clone(),
                    line: 0,
                    col: 0,
                    object: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        match parse(&file, &text) {
            Ok(docs) => {
                for m in docs {
                    match check_identity(&m) {
                        Some(e) => errors.push(e),
                        None => manifests.push(m),
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    (manifests, errors)
}

/// apiVersion, kind and metadata.name are what every object needs.
fn check_identity(m: &Manifest) -> Option<ManifestError> {
    let missing: Vec<&str> = [
        ("apiVersion", m.api_version()),
        ("kind", m.kind()),
        ("metadata.name", m.name()),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_none_or(str::is_empty))
    .map(|(k, _)| k)
    .collect();
    (!missing.is_empty()).then(|| ManifestError {
        file: m.file.clone(),
        line: m.line,
        col: m.col,
        object: None,
        message: format!("object lacks {}", missing.join(", ")),
    })
}

/// Parses one file: every document, with `kind: List` items expanded.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| ManifestError {
            file: file.to_path_buf(),
            line: e.marker().line(),
            col: e.marker().col() + 1,
            object: None,
            message: format!("invalid YAML: {}", e.info()),
        })?;
        builder
            .event(event, (span.start.line(), span.start.col() + 1))
            .map_err(|message| ManifestError {
                file: file.to_path_buf(),
                line: span.start.line(),
                col: span.start.col() + 1,
                object: None,
                message,
            })?;
    }
    let mut out = Vec::new();
    for doc in builder.docs {
        if doc.value.is_null() {
            continue; // an empty document (e.g. a trailing `---`)
        }
        if !doc.value.is_object() {
            return Err(ManifestError {
                file: file.to_path_buf(),
                line: doc.line,
                col: doc.col,
                object: None,
                message: format!(
                    "a document must be a mapping (an object), not {}",
                    yaml_type_name(&doc.value)
                ),
            });
        }
        let is_list = doc.value.get("kind").and_then(Value::as_str) == Some("List");
        if is_list {
            let items = doc
                .value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, item) in items.into_iter().enumerate() {
                let prefix = format!("items[{i}]");
                let (line, col) = doc
                    .positions
                    .get(&prefix)
                    .copied()
                    .unwrap_or((doc.line, doc.col));
                let positions = doc
                    .positions
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix(&prefix)
                            .and_then(|rest| rest.strip_prefix('.'))
                            .map(|rest| (rest.to_string(), *v))
                    })
                    .collect();
                out.push(Manifest {
                    file: file.to_path_buf(),
                    line,
                    col,
                    value: item,
                    positions,
                });
            }
        } else {
            out.push(Manifest {
                file: file.to_path_buf(),
                line: doc.line,
                col: doc.col,
                value: doc.value,
                positions: doc.positions,
            });
        }
    }
    Ok(out)
}

struct Doc {
    line: usize,
    col: usize,
    value: Value,
    positions: HashMap<String, (usize, usize)>,
}

enum Frame {
    Seq {
        items: Vec<Value>,
        path: String,
        anchor: usize,
    },
    Map {
        map: Map<String, Value>,
        key: Option<String>,
        path: String,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    docs: Vec<Doc>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    positions: HashMap<String, (usize, usize)>,
    start: Option<(usize, usize)>,
    root: Option<Value>,
}

impl Builder {
    /// The path of the node about to be added, recording its position.
    fn child_path(&mut self, pos: (usize, usize)) -> Option<String> {
        match self.stack.last_mut() {
            None => {
                self.start.get_or_insert(pos);
                Some(String::new())
            }
            Some(Frame::Seq { items, path, .. }) => {
                let p = format!("{path}[{}]", items.len());
                self.positions.insert(p.clone(), pos);
                Some(p)
            }
            // A key's position was recorded with the key.
            Some(Frame::Map {
                key: Some(k), path, ..
            }) => Some(join(path, k)),
            Some(Frame::Map { key: None, .. }) => None,
        }
    }

    fn add(&mut self, value: Value) -> Result<(), String> {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, .. }) => {
                let k = key.take().ok_or("internal: value without key")?;
                map.insert(k, value);
            }
        }
        Ok(())
    }

    fn event(&mut self, event: Event<'_>, pos: (usize, usize)) -> Result<(), String> {
        match event {
            Event::DocumentStart(..) => {
                self.positions.clear();
                self.start = None;
                self.root = None;
            }
            Event::DocumentEnd => {
                let (line, col) = self.start.unwrap_or(pos);
                self.docs.push(Doc {
                    line,
                    col,
                    value: self.root.take().unwrap_or(Value::Null),
                    positions: std::mem::take(&mut self.positions),
                });
            }
            Event::Scalar(text, style, anchor, _tag) => {
                // A scalar where a key is expected is the key.
                if let Some(Frame::Map {
                    key: key @ None,
                    path,
                    ..
                }) = self.stack.last_mut()
                {
                    let k = text.into_owned();
                    self.positions.insert(join(path, &k), pos);
                    *key = Some(k);
                    return Ok(());
                }
                self.child_path(pos);
                let value = scalar(&text, style);
                if anchor != 0 {
                    self.anchors.insert(anchor, value.clone());
                }
                self.add(value)?;
            }
            Event::SequenceStart(_, anchor, _) => {
                let path = self
                    .child_path(pos)
                    .ok_or("a sequence cannot be a mapping key")?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    path,
                    anchor,
                });
            }
            Event::MappingStart(_, anchor, _) => {
                let path = self
                    .child_path(pos)
                    .ok_or("a mapping cannot be a mapping key")?;
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    key: None,
                    path,
                    anchor,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { items, anchor, .. }) => (Value::Array(items), anchor),
                    Some(Frame::Map { map, anchor, .. }) => (Value::Object(map), anchor),
                    None => return Err("unbalanced YAML".into()),
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, value.clone());
                }
                self.add(value)?;
            }
            Event::Alias(id) => {
                let value = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or("alias to an unknown anchor")?;
                if let Some(Frame::Map {
                    key: key @ None, ..
                }) = self.stack.last_mut()
                {
                    *key = Some(
                        value
                            .as_str()
                            .ok_or("a mapping key must be a string")?
                            .to_string(),
                    );
                    return Ok(());
                }
                self.child_path(pos);
                self.add(value)?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// YAML 1.2 core schema resolution of a scalar.
fn scalar(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    let looks_numeric = text
        .trim_start_matches(['-', '+'])
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '.');
    if looks_numeric {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Vec<Manifest>, ManifestError> {
        parse(Path::new("m.yaml"), text)
    }

    #[test]
    fn documents_values_and_positions() {
        let docs = parse_str(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  n: \"1\"\n  b: true\n---\napiVersion: aws.driftless.dev/v1alpha1\nkind: Vpc\nmetadata: {name: main}\nspec:\n  forProvider:\n    cidrBlock: 10.0.0.0/16\n    count: 3\n    list: [a, b]\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].value["data"]["n"], "1");
        assert_eq!(docs[0].value["data"]["b"], true);
        assert_eq!((docs[1].line, docs[1].col), (9, 1));
        assert_eq!(docs[1].value["spec"]["forProvider"]["count"], 3);
        assert_eq!(docs[1].position("spec.forProvider.cidrBlock"), (14, 5));
        assert_eq!(docs[1].position("spec.forProvider.list[1]"), (16, 15));
        // An unwritten field points at its closest written parent.
        assert_eq!(docs[1].position("spec.forProvider.missing"), (13, 3));
        assert_eq!(docs[1].describe(), "Vpc main");
    }

    #[test]
    fn list_items_are_objects() {
        let docs = parse_str(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: b\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].name(), Some("b"));
        assert_eq!(docs[1].line, 7);
        assert_eq!(docs[1].position("metadata.name"), (10, 5));
    }

    #[test]
    fn broken_yaml_names_the_line() {
        let err =
            parse_str("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [a\n").unwrap_err();
        assert!(err.line >= 4, "{err}");
        assert!(err.to_string().starts_with("m.yaml:"), "{err}");
        assert!(err.message.starts_with("invalid YAML"), "{err}");
    }

    #[test]
    fn objects_need_identity() {
        let m = parse_str("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").unwrap();
        let e = check_identity(&m[0]).unwrap();
        assert_eq!(e.message, "object lacks metadata.name");
        assert_eq!((e.line, e.col), (1, 1));
    }
}
