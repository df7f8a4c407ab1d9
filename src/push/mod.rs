//! Push mode: `driftless plan | apply | get` straight against the cloud, no
//! cluster. The same provider code as the controller; no state file: a stack's
//! resources are found by their tags (`driftless.dev/stack`, owner, kind).
//!
//! - `unit`: one managed object of the manifests (plan, apply), and one
//!   kind's tagged resources (list, delete), built by visiting the registry;
//! - `stack`: the objects in waves by reference: plan, apply, prune, get.

mod stack;
mod unit;

use std::fmt;
use std::time::Duration;

use driftless_provider::{FieldDiff, Identity};

pub use stack::Stack;

/// How push mode runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub stack: String,
    /// Resources worked on at once (independent ones only).
    pub concurrency: usize,
    /// How long one resource may take to become ready.
    pub timeout: Duration,
}

/// `Kind namespace/name`: what an object is, in the manifests and in tags.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What `plan` found for one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Absent: will be created (after the listed objects, when some are new too).
    Create { after: Vec<Key> },
    /// Differs from the manifests in these fields.
    Update(Vec<FieldDiff>),
    /// Up to date.
    Unchanged,
    /// Not looked at: paused, or only observed.
    Skipped(String),
    /// In the stack's tags but no longer in the manifests (`--prune`).
    Delete { external_name: String, orphan: bool },
}

/// One finished object during `apply`.
pub struct Progress<'a> {
    pub done: usize,
    pub total: usize,
    pub key: &'a Key,
    /// What was done and the id, or the error.
    pub outcome: Result<(&'static str, &'a str), String>,
    pub elapsed: Duration,
}

pub(super) fn key_of(id: &Identity) -> Key {
    Key {
        kind: id.kind.clone(),
        namespace: id.namespace.clone(),
        name: id.name.clone(),
    }
}

pub(super) fn prune_key() -> Key {
    Key {
        kind: "Prune".into(),
        namespace: "-".into(),
        name: "-".into(),
    }
}
