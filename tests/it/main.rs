//! driftless integration tests: one binary, against LocalStack and a real
//! Kubernetes API server (see support.rs for how they are found or started).

mod bucket;
mod crds;
mod gitsync;
mod support;
mod wiring;
