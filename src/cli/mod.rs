//! The command line: push-mode commands, CRD generation, and the
//! `driftless controller` process, which composes the engines.

pub mod bootstrap;
pub mod commands;
pub mod controller;
pub mod crds;
pub mod diff;
pub mod keys;
pub mod tree;
