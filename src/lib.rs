//! vault-connection-operator: stores vault-provider credentials from Kubernetes Secrets in AWS
//! SSM Parameter Store, driven by namespaced `VaultConnection` resources.
//!
//! The pure core ([`providers`], one module per vault provider; [`validation`], [`document`],
//! [`status`], [`reason`] and the planner in [`reconcile::plan`]) decides; the shell
//! ([`reconcile`], [`ssm`]) reads and writes.
//! docs/design.md has the data flow, the module map and the rules between modules.

pub mod admission;
pub mod api;
pub mod aws;
pub mod backoff;
pub mod config;
pub mod document;
pub mod fair;
pub mod lease;
pub mod manifests;
pub mod metrics;
pub mod ownership;
pub mod providers;
pub mod reason;
pub mod reconcile;
pub mod run;
pub mod settings;
pub mod ssm;
pub mod status;
pub mod tiers;
pub mod validation;
pub mod verify;
