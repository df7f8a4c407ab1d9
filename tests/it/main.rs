//! driftless integration tests: one binary, against LocalStack and a real
//! Kubernetes API server (see support.rs for how they are found or started).

mod aws_faults;
mod bucket;
mod chart_repo;
mod cluster;
mod crds;
mod diff;
mod ec2;
mod elastic_ip;
mod examples;
mod faults;
mod git_faults;
mod gitsync;
mod hostile;
mod key_pair;
mod lifecycle;
mod metrics;
mod nat_gateway;
mod ops;
mod outage;
mod push;
mod remote_cluster;
mod render;
mod rollout;
mod route_table;
mod secrets;
mod sops;
mod support;
mod tenancy;
mod tools;
mod validate;
mod volume;
mod webhook;
mod wiring;
