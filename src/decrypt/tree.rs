//! A file's documents in document order, scalars typed the way sops (Go's
//! yaml.v3 decoding into `interface{}`) types them. The SOPS MAC hashes every
//! value in this order and form, which `serde_json::Value` (sorted maps,
//! YAML 1.2 core typing) cannot give. JSON files parse here too: JSON is YAML.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
    Scalar(Scalar),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Scalar {
    /// sops' `ToBytes`: what the MAC hashes for this value.
    pub(crate) fn mac_bytes(&self) -> Vec<u8> {
        match self {
            Scalar::Null => Vec::new(),
            Scalar::Bool(true) => b"True".to_vec(),
            Scalar::Bool(false) => b"False".to_vec(),
            Scalar::Int(i) => i.to_string().into_bytes(),
            Scalar::Float(f) => go_float(*f).into_bytes(),
            Scalar::Str(s) => s.as_bytes().to_vec(),
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: Rust's `Display` is also the
/// shortest round-trip form without an exponent; only the specials differ.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        f.to_string()
    }
}

impl Node {
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn str(&self) -> Option<&str> {
        match self {
            Node::Scalar(s) => s.as_str(),
            _ => None,
        }
    }
}

/// Every document of `text` (`None` for an empty one), in order.
pub(crate) fn parse(text: &str) -> Result<Vec<Option<Node>>, String> {
    let mut b = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, _) = event.map_err(|e| {
            format!(
                "invalid YAML at line {}: {}",
                e.marker().line(),
                e.marker().col() + 1
            )
        })?;
        b.event(event)?;
    }
    Ok(b.docs)
}

enum Frame {
    Seq(Vec<Node>, usize),
    Map(Vec<(String, Node)>, Option<String>, usize),
}

#[derive(Default)]
struct Builder {
    docs: Vec<Option<Node>>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>) -> Result<(), String> {
        match event {
            Event::DocumentStart(..) => self.root = None,
            // An empty document parses as a null scalar.
            Event::DocumentEnd => {
                let root = self.root.take();
                self.docs
                    .push(root.filter(|r| *r != Node::Scalar(Scalar::Null)));
            }
            Event::Scalar(text, style, anchor, tag) => {
                let quoted_or_tagged_str =
                    style != ScalarStyle::Plain || tag.is_some_and(|t| t.suffix() == "str");
                let value = if quoted_or_tagged_str {
                    Scalar::Str(text.into_owned())
                } else {
                    resolve(&text)
                };
                self.node(Node::Scalar(value), anchor)?;
            }
            Event::SequenceStart(_, anchor, _) => self.stack.push(Frame::Seq(Vec::new(), anchor)),
            Event::MappingStart(_, anchor, _) => {
                self.stack.push(Frame::Map(Vec::new(), None, anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(items, a)) => (Node::Seq(items), a),
                    Some(Frame::Map(items, _, a)) => (Node::Map(items), a),
                    None => return Err("unbalanced YAML".into()),
                };
                self.node(node, anchor)?;
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or("unknown YAML alias")?;
                self.node(node, 0)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Adds a finished node where the parser is: a key, a value or an item.
    fn node(&mut self, node: Node, anchor: usize) -> Result<(), String> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(items, _)) => items.push(node),
            Some(Frame::Map(items, key, _)) => match key.take() {
                Some(k) => items.push((k, node)),
                None => *key = Some(key_text(node)?),
            },
        }
        Ok(())
    }
}

fn key_text(node: Node) -> Result<String, String> {
    match node {
        Node::Scalar(Scalar::Str(s)) => Ok(s),
        Node::Scalar(Scalar::Int(i)) => Ok(i.to_string()),
        Node::Scalar(Scalar::Bool(b)) => Ok(b.to_string()),
        Node::Scalar(Scalar::Null) => Ok(String::new()),
        _ => Err("a mapping key must be a string".into()),
    }
}

/// yaml.v3's resolution of a plain scalar decoded into `interface{}`
/// (timestamps stay strings there, and so they do here).
fn resolve(text: &str) -> Scalar {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    let plain = text.replace('_', "");
    if let Some(i) = go_int(&plain) {
        return Scalar::Int(i);
    }
    if is_yaml_float(&plain) {
        if let Ok(f) = plain.parse::<f64>() {
            return Scalar::Float(f);
        }
    }
    Scalar::Str(text.to_string())
}

/// Go's `strconv.ParseInt(s, 0, 64)`: a sign, then decimal, 0x, 0o, 0b or a
/// leading-0 octal.
fn go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (digits, radix) = if let Some(d) = lower.strip_prefix("0x") {
        (d, 16)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (d, 8)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (d, 2)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (&lower[1..], 8)
    } else {
        (lower.as_str(), 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    i64::try_from(if neg { -magnitude } else { magnitude }).ok()
}

/// yaml.v3's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_order_and_sops_typing() {
        let docs =
            parse("b: 1\na: [x, 1.50, true, null, '7']\n---\n---\n{\"z\": 2, \"y\": \"s\"}\n")
                .unwrap();
        assert_eq!(docs.len(), 3);
        let Some(Node::Map(items)) = &docs[0] else {
            panic!("{docs:?}")
        };
        assert_eq!(items[0].0, "b");
        assert_eq!(items[1].0, "a");
        let Node::Seq(list) = &items[1].1 else {
            panic!()
        };
        let bytes: Vec<_> = list
            .iter()
            .map(|n| match n {
                Node::Scalar(s) => String::from_utf8(s.mac_bytes()).unwrap(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(bytes, ["x", "1.5", "True", "", "7"]);
        assert!(docs[1].is_none());
        let Some(Node::Map(json)) = &docs[2] else {
            panic!()
        };
        assert_eq!(json[0], ("z".into(), Node::Scalar(Scalar::Int(2))));
    }

    #[test]
    fn scalars_resolve_like_yaml_v3() {
        assert_eq!(resolve("0x1F"), Scalar::Int(31));
        assert_eq!(resolve("1_000"), Scalar::Int(1000));
        assert_eq!(resolve("1e3"), Scalar::Float(1000.0));
        assert_eq!(resolve(".5"), Scalar::Float(0.5));
        assert_eq!(resolve("yes"), Scalar::Str("yes".into()));
        assert_eq!(resolve("2026-12-01"), Scalar::Str("2026-12-01".into()));
        assert_eq!(resolve("1.2.3"), Scalar::Str("1.2.3".into()));
        assert_eq!(go_float(f64::INFINITY), "+Inf");
        assert_eq!(go_float(1e21), "1000000000000000000000");
    }
}
