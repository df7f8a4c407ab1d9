//! The YAML reader: every document of a file, with `kind: List` items
//! expanded, each object knowing where every field was written (line and
//! column). It reads with the event parser under serde-saphyr (what kube
//! uses), because a plain deserializer forgets positions.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Number, Value};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use super::{yaml_type_name, Manifest, ManifestError, Origin};

/// Parses one file: every document, with `kind: List` items expanded.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let at = Origin::at(file, e.marker().line(), e.marker().col() + 1);
            ManifestError::new(&at, format!("invalid YAML: {}", e.info()))
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
}
