//! Manifests: the one [`Manifest`] type and [`ManifestError`], for every
//! reader. `walk` finds the files, `parse` reads them keeping where every
//! field was written (so errors say `file:line:col`), `load` checks what
//! every object needs, `validate` checks them against the CRDs offline.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

pub mod limits;
mod load;
mod parse;
pub mod validate;
pub mod walk;

pub use limits::Limits;
pub use load::{file_too_large, find_files, load, load_dir, load_files, revision_too_large};
pub use parse::{parse, parse_with, Budget};

use driftless_provider::{RefSource, Reference};
use serde_json::Value;

/// Where something is written: a file (as its reader names it: a path
/// from the repository root for GitSync, as given on the command line for
/// `validate`), a 1-based line and column (0: unknown).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl Origin {
    /// A whole file (or directory), no line.
    pub fn file(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            line: 0,
            col: 0,
        }
    }

    pub fn at(file: impl Into<PathBuf>, line: usize, col: usize) -> Self {
        Self {
            file: file.into(),
            line,
            col,
        }
    }
}

impl fmt::Display for Origin {
    /// `file:line:col`, leaving out what is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.col > 0 {
                write!(f, ":{}", self.col)?;
            }
        }
        Ok(())
    }
}

/// One object of the manifests, whoever reads them (validate, push mode,
/// GitSync).
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// Where the object starts.
    pub origin: Origin,
    pub value: Value,
    /// Dotted field path (`spec.forProvider.tags.team`, `spec.rules[0]`) to
    /// where its key (or list item) starts.
    positions: HashMap<String, (usize, usize)>,
}

impl Manifest {
    pub(crate) fn new(
        origin: Origin,
        value: Value,
        positions: HashMap<String, (usize, usize)>,
    ) -> Self {
        Self {
            origin,
            value,
            positions,
        }
    }

    /// A rendered object placed at `origin`, with no field positions (its
    /// fields were written by a tool, not in the file).
    pub fn placed(origin: Origin, value: Value) -> Self {
        Self::new(origin, value, HashMap::new())
    }

    /// `value` at this object's place (its origin and field positions): a
    /// rendered object traced back to the document it was built from.
    pub fn with_value(&self, value: Value) -> Self {
        Self::new(self.origin.clone(), value, self.positions.clone())
    }

    /// The string at `pointer`; empty when absent or not a string.
    pub fn str_at(&self, pointer: &str) -> &str {
        self.value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion")
    }
    pub fn kind(&self) -> &str {
        self.str_at("/kind")
    }
    pub fn name(&self) -> &str {
        self.str_at("/metadata/name")
    }
    /// `metadata.namespace` as written (may be empty).
    pub fn namespace(&self) -> &str {
        self.str_at("/metadata/namespace")
    }
    /// The API group: `apps` for `apps/v1`, empty for the core group.
    pub fn group(&self) -> &str {
        self.api_version()
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default()
    }

    /// `Kind namespace/name` (or `Kind name`), for messages.
    pub fn describe(&self) -> String {
        let or = |s: &'static str, v: &str| {
            if v.is_empty() {
                s.to_string()
            } else {
                v.to_string()
            }
        };
        let kind = or("<no kind>", self.kind());
        let name = or("<no name>", self.name());
        match self.namespace() {
            "" => format!("{kind} {name}"),
            ns => format!("{kind} {ns}/{name}"),
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
                None => return (self.origin.line, self.origin.col),
            }
        }
    }

    /// An error about `path` of this object.
    pub fn error(&self, path: &str, message: impl Into<String>) -> ManifestError {
        let (line, col) = self.position(path);
        ManifestError {
            origin: Origin::at(&self.origin.file, line, col),
            object: Some(self.describe()),
            message: message.into(),
        }
    }
}

/// A problem in the manifests, with its place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    pub origin: Origin,
    /// `Kind ns/name`, when the object is known.
    pub object: Option<String>,
    pub message: String,
}

impl ManifestError {
    pub fn new(origin: &Origin, message: impl Into<String>) -> Self {
        Self {
            origin: origin.clone(),
            object: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// The namespace of an object as applied: `default` when unset.
pub fn namespace_or_default(m: &Manifest) -> &str {
    match m.namespace() {
        "" => "default",
        ns => ns,
    }
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
            t.api_version() == api_version && t.kind() == kind && namespace_or_default(t) == ns
        })
    };
    match &r.source {
        RefSource::Id(_) | RefSource::Ids(_) => Ok(Vec::new()),
        RefSource::Names(names) => names
            .iter()
            .map(|name| {
                candidates()
                    .find(|t| t.name() == name.as_str())
                    .ok_or_else(|| format!("{}: {kind} {name:?} is not defined in namespace {ns} of these manifests", r.field))
            })
            .collect(),
        RefSource::Selector(labels) => {
            let mut matches: Vec<&Manifest> = candidates()
                .filter(|t| labels.iter().all(|(k, v)| t.value["metadata"]["labels"][k].as_str() == Some(v.as_str())))
                .collect();
            matches.sort_by_key(|t| t.name().to_string());
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
