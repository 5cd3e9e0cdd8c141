//! vault-connection-operator: stores vault-provider credentials from Kubernetes Secrets in AWS
//! SSM Parameter Store, driven by namespaced `VaultConnection` resources.
//!
//! The pure core ([`validation`], [`document`]) decides; the shell (controller, SSM client)
//! reads and writes.

pub mod api;
pub mod backoff;
pub mod config;
pub mod controller;
pub mod document;
pub mod manifests;
pub mod metrics;
pub mod run;
pub mod ssm;
pub mod status;
pub mod tiers;
pub mod validation;
pub mod verify;
