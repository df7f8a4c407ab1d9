//! The YAML reader: every document of a file, with `kind: List` items
//! expanded, each object knowing where every field was written (line and
//! column). It reads with the event parser under serde-saphyr (what kube
//! uses), because a plain deserializer forgets positions.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Number, Value};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use super::limits::{self, Limits};
use super::{yaml_type_name, Manifest, ManifestError, Origin};

/// What reading one revision (several files) has spent, against its limits.
pub struct Budget {
    pub limits: Limits,
    /// Nodes copied by anchors and aliases so far.
    pub alias_nodes: usize,
}

impl Budget {
    /// A fresh budget under the process's limits.
    pub fn new() -> Self {
        Self {
            limits: limits::get(),
            alias_nodes: 0,
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

/// Parses one file: every document, with `kind: List` items expanded.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Manifest>, ManifestError> {
    parse_with(file, text, &mut Budget::new())
}

/// The event parser's own message, worded for a user: its recursion limit
/// (about 256 levels of flow collections) is a nesting limit too, met before
/// `--max-yaml-depth` when a scanner looks ahead.
fn parser_error(info: &str) -> String {
    if info.contains("recursion limit exceeded") {
        "nesting deeper than the YAML reader's own limit (about 256 levels); refused".into()
    } else {
        format!("invalid YAML: {info}")
    }
}

/// [`parse`], spending from a budget shared with other files.
pub fn parse_with(
    file: &Path,
    text: &str,
    budget: &mut Budget,
) -> Result<Vec<Manifest>, ManifestError> {
    let mut builder = Builder::new(budget);
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let at = Origin::at(file, e.marker().line(), e.marker().col() + 1);
            ManifestError::new(&at, parser_error(&e.info()))
        })?;
        builder
            .event(event, (span.start.line(), span.start.col() + 1))
            .map_err(|message| {
                ManifestError::new(
                    &Origin::at(file, span.start.line(), span.start.col() + 1),
                    message,
                )
            })?;
    }
    let mut out = Vec::new();
    for doc in builder.docs {
        if doc.value.is_null() {
            continue; // an empty document (e.g. a trailing `---`)
        }
        if !doc.value.is_object() {
            let why = format!(
                "a document must be a mapping (an object), not {}",
                yaml_type_name(&doc.value)
            );
            return Err(ManifestError::new(
                &Origin::at(file, doc.line, doc.col),
                why,
            ));
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
                out.push(Manifest::new(Origin::at(file, line, col), item, positions));
            }
        } else {
            out.push(Manifest::new(
                Origin::at(file, doc.line, doc.col),
                doc.value,
                doc.positions,
            ));
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

enum Kind {
    Seq(Vec<Value>),
    Map(Map<String, Value>, Option<String>),
}

/// A collection being read, with the size of what it holds so far.
struct Frame {
    kind: Kind,
    path: String,
    anchor: usize,
    /// Nodes in this collection, itself included.
    nodes: usize,
    /// Levels of collections it spans, itself included.
    levels: usize,
}

/// An anchored value, with its size (what an alias to it costs).
struct Anchored {
    value: Value,
    nodes: usize,
    /// Levels of collections (0: a scalar).
    levels: usize,
}

struct Builder<'b> {
    budget: &'b mut Budget,
    docs: Vec<Doc>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    positions: HashMap<String, (usize, usize)>,
    start: Option<(usize, usize)>,
    root: Option<Value>,
}

impl<'b> Builder<'b> {
    fn new(budget: &'b mut Budget) -> Self {
        Self {
            budget,
            docs: Vec::new(),
            stack: Vec::new(),
            anchors: HashMap::new(),
            positions: HashMap::new(),
            start: None,
            root: None,
        }
    }

    /// The path of the node about to be added, recording its position.
    fn child_path(&mut self, pos: (usize, usize)) -> Option<String> {
        match self.stack.last_mut() {
            None => {
                self.start.get_or_insert(pos);
                Some(String::new())
            }
            Some(Frame {
                kind: Kind::Seq(items),
                path,
                ..
            }) => {
                let p = format!("{path}[{}]", items.len());
                self.positions.insert(p.clone(), pos);
                Some(p)
            }
            // A key's position was recorded with the key.
            Some(Frame {
                kind: Kind::Map(_, Some(k)),
                path,
                ..
            }) => Some(join(path, k)),
            Some(Frame {
                kind: Kind::Map(_, None),
                ..
            }) => None,
        }
    }

    /// Adds a value of `nodes` nodes spanning `levels` levels of
    /// collections to the collection being read (or as the document).
    fn add(&mut self, value: Value, nodes: usize, levels: usize) -> Result<(), String> {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(frame) => {
                frame.nodes += nodes;
                frame.levels = frame.levels.max(levels + 1);
                match &mut frame.kind {
                    Kind::Seq(items) => items.push(value),
                    Kind::Map(map, key) => {
                        let k = key.take().ok_or("internal: value without key")?;
                        map.insert(k, value);
                    }
                }
            }
        }
        Ok(())
    }

    /// Charges `nodes` copied by an anchor or an alias to the budget.
    fn spend(&mut self, nodes: usize) -> Result<(), String> {
        self.budget.alias_nodes += nodes;
        let max = self.budget.limits.max_alias_expansion;
        if self.budget.alias_nodes > max {
            return Err(format!(
                "alias expansion exceeds {max} nodes (the limit of --max-alias-expansion)"
            ));
        }
        Ok(())
    }

    fn deeper(&self, levels: usize) -> Result<(), String> {
        let max = self.budget.limits.max_yaml_depth;
        if self.stack.len() + levels > max {
            return Err(format!(
                "nesting deeper than {max} levels (the limit of --max-yaml-depth)"
            ));
        }
        Ok(())
    }

    fn anchor(
        &mut self,
        anchor: usize,
        value: &Value,
        nodes: usize,
        levels: usize,
    ) -> Result<(), String> {
        if anchor != 0 {
            self.spend(nodes)?;
            let value = value.clone();
            self.anchors.insert(
                anchor,
                Anchored {
                    value,
                    nodes,
                    levels,
                },
            );
        }
        Ok(())
    }

    fn open(&mut self, kind: Kind, anchor: usize, pos: (usize, usize)) -> Result<(), String> {
        let path = self
            .child_path(pos)
            .ok_or("a collection cannot be a mapping key")?;
        self.deeper(1)?;
        self.stack.push(Frame {
            kind,
            path,
            anchor,
            nodes: 1,
            levels: 1,
        });
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
                if let Some(Frame {
                    kind: Kind::Map(_, key @ None),
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
                self.anchor(anchor, &value, 1, 0)?;
                self.add(value, 1, 0)?;
            }
            Event::SequenceStart(_, anchor, _) => {
                self.open(Kind::Seq(Vec::new()), anchor, pos)?;
            }
            Event::MappingStart(_, anchor, _) => {
                self.open(Kind::Map(Map::new(), None), anchor, pos)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = self.stack.pop().ok_or("unbalanced YAML")?;
                let value = match frame.kind {
                    Kind::Seq(items) => Value::Array(items),
                    Kind::Map(map, _) => Value::Object(map),
                };
                self.anchor(frame.anchor, &value, frame.nodes, frame.levels)?;
                self.add(value, frame.nodes, frame.levels)?;
            }
            Event::Alias(id) => {
                let (nodes, levels) = match self.anchors.get(&id) {
                    Some(a) => (a.nodes, a.levels),
                    None => return Err("alias to an unknown anchor".into()),
                };
                if let Some(Frame {
                    kind: Kind::Map(_, key @ None),
                    ..
                }) = self.stack.last_mut()
                {
                    let k = self.anchors[&id]
                        .value
                        .as_str()
                        .ok_or("a mapping key must be a string")?
                        .to_string();
                    *key = Some(k);
                    return Ok(());
                }
                // Checked before the copy is made.
                self.deeper(levels)?;
                self.spend(nodes)?;
                self.child_path(pos);
                let value = self.anchors[&id].value.clone();
                self.add(value, nodes, levels)?;
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
        assert_eq!((docs[1].origin.line, docs[1].origin.col), (9, 1));
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
        assert_eq!(docs[1].name(), "b");
        assert_eq!(docs[1].origin.line, 7);
        assert_eq!(docs[1].position("metadata.name"), (10, 5));
    }

    #[test]
    fn broken_yaml_names_the_line() {
        let err =
            parse_str("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [a\n").unwrap_err();
        assert!(err.origin.line >= 4, "{err}");
        assert!(err.to_string().starts_with("m.yaml:"), "{err}");
        assert!(err.message.starts_with("invalid YAML"), "{err}");
    }

    /// The classic "billion laughs": nine levels of nine aliases, 419 bytes.
    pub(crate) const BOMB: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";

    #[test]
    fn the_billion_laughs_is_refused_fast_with_its_line() {
        let started = std::time::Instant::now();
        let err = parse_str(BOMB).unwrap_err();
        let took = started.elapsed();
        assert!(
            err.message
                .starts_with("alias expansion exceeds 100000 nodes"),
            "{err}"
        );
        // Level e (line 9) is where the copies pass 100,000 nodes.
        assert_eq!(err.origin.file, Path::new("m.yaml"), "{err}");
        assert_eq!(err.origin.line, 9, "{err}");
        assert!(err.origin.col > 0, "{err}");
        assert!(took < std::time::Duration::from_millis(200), "{took:?}");
    }

    #[test]
    fn a_few_aliases_still_parse() {
        let docs = parse_str(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: &labels {app: web, tier: front}\nspec:\n  selector:\n    matchLabels: *labels\n  template:\n    metadata:\n      labels: *labels\n    spec:\n      containers:\n      - &c {name: web, image: web:v1, env: [{name: A, value: \"1\"}]}\n      - *c\n",
        )
        .unwrap();
        let v = &docs[0].value;
        assert_eq!(v["spec"]["selector"]["matchLabels"]["tier"], "front");
        assert_eq!(v["spec"]["template"]["metadata"]["labels"]["app"], "web");
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][1]["env"][0]["value"],
            "1"
        );
    }

    #[test]
    fn deep_nesting_is_refused_with_its_line() {
        let deep = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\ndata:\n  x: {}{}\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let err = parse_str(&deep).unwrap_err();
        // The event parser stops itself at its own recursion limit (about
        // 256 levels of flow collections) before ours is reached here.
        assert!(
            err.message.starts_with("nesting deeper than 100 levels")
                || err
                    .message
                    .starts_with("nesting deeper than the YAML reader's own limit"),
            "{err}"
        );
        assert_eq!(err.origin.line, 5, "{err}");
        let deep = format!("a: {}{}\n", "{a: ".repeat(150), "}".repeat(150));
        let err = parse_str(&deep).unwrap_err();
        assert!(
            err.message.starts_with("nesting deeper than 100 levels"),
            "{err}"
        );
        assert_eq!(err.origin.line, 1, "{err}");
        // 99 levels under the top mapping is fine; 100 is not.
        let ok = format!("a: {}{}\n", "[".repeat(99), "]".repeat(99));
        assert!(parse_str(&ok).is_ok());
        let no = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        assert!(parse_str(&no).is_err());
        // An alias cannot smuggle depth past the limit.
        let nested = format!("a: &x {}{}\nb: [[*x]]\n", "[".repeat(98), "]".repeat(98));
        let err = parse_str(&nested).unwrap_err();
        assert!(err.message.starts_with("nesting deeper"), "{err}");
        assert_eq!(err.origin.line, 2, "{err}");
    }
}
