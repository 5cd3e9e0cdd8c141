//! The reconciler, as a pipeline: **read** the spec and the Secret ([`read`]) → **desire** the
//! document, tier, key and tags ([`desired`], pure) → **admit** a new connection under its
//! namespace's tier ([`tier`]) → **plan** the SSM steps
//! ([`plan`], pure) and **write** them ([`write`]) → **report** status, events, metrics and the
//! next check ([`report`]). A connection whose status already records a sync of the same inputs
//! stops after reading (no Secret data, no SSM); out-of-band changes in SSM are found by the
//! batched drift [`sweep`], which asks for a full check of just the connections that differ. A
//! deleted connection goes through [`cleanup`] instead. This file is the driver; [`watches`]
//! wires it to the cluster.

mod admissions;
mod at_rest;
mod budget;
mod cleanup;
pub mod compact;
pub mod connections;
mod context;
mod desired;
mod echoes;
mod error;
pub mod evidence;
mod pipeline;
pub mod plan;
pub mod queue;
mod read;
mod relist;
mod report;
pub mod slim;
mod sweep;
mod synced;
mod tier;
mod touch;
mod verify;
pub mod versions;
mod watches;
mod workers;
mod write;

pub use budget::Budget;
pub use context::{Caches, Context, MANAGED_BY};
pub use error::Error;
pub use pipeline::{error_policy, reconcile};
pub use watches::{Shared, run_scope};
