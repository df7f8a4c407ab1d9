//! Managed resources: one generic controller and reconciler drive every
//! provider kind through the four-operation contract (observe, create,
//! update, delete). The reconciler runs named steps; [`decide`] turns an
//! observation and the policies into the one action to take, for the
//! controller and for push mode alike.

pub mod controller;
pub mod decide;
pub mod reconciler;
pub mod resolve;
pub mod triggers;
pub mod waiters;
mod writes;
