//! The operator-wide settings the reconciler needs: plain data, built from the `run` flags by
//! [`crate::config::RunArgs::settings`] and read by the reconciler. It imports only the core, so
//! the reconciler never reaches the command line.

use std::time::Duration;

use crate::document::TierChoice;
use crate::ownership::Legacy;
use crate::tiers::TierLimits;
use crate::validation::Policy;

/// The KMS key used when neither the spec nor the operator names one.
pub const AWS_MANAGED_KEY: &str = "alias/aws/ssm";

/// Operator-wide settings the reconciler needs, built from the flags by
/// [`crate::config::RunArgs::settings`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Parameter name prefix.
    pub prefix: String,
    /// Cluster name in parameter names and tags.
    pub cluster: String,
    /// Cluster identity in tags; a parameter tagged with another is never touched.
    pub cluster_id: String,
    /// Whether parameters that carry every ownership tag but the cluster id are taken over.
    pub legacy: Legacy,
    /// KMS key for connections that name none.
    pub default_kms_key_id: String,
    /// Connection limits by tier.
    pub tiers: TierLimits,
    /// Tier of unlabelled namespaces.
    pub default_tier: String,
    /// Interval of the drift check.
    pub drift_interval: Duration,
    /// The tier the operator asks SSM for.
    pub parameter_tier: TierChoice,
    /// Cluster-admin rules for specs and credentials (KMS keys, Doppler personal tokens).
    pub policy: Policy,
}
