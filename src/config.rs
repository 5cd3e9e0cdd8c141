//! The `run` command's flags (every flag can also be set by environment variable), their
//! checks, and the [`Settings`] built from them. The reconciler reads [`crate::settings`], never
//! this module.

use std::net::SocketAddr;
use std::time::Duration;

use crate::document::{DocumentError, TierChoice, check_prefix};
use crate::ownership::Legacy;
use crate::settings::{AWS_MANAGED_KEY, Settings};
use crate::tiers::TierLimits;
use crate::validation::Policy;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log pipelines).
    Json,
    /// Human-readable lines.
    Text,
}

/// Settings of `vault-connection-operator run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Prefix of every SSM parameter name: {prefix}/{cluster}/{namespace}/{name}.
    #[arg(long, env = "VCO_SSM_PREFIX", default_value = "/vault-connections")]
    pub ssm_prefix: String,

    /// Name of this cluster in parameter names and tags. Give every cluster that shares an AWS
    /// account and region its own. Empty: derived from the cluster id (`cluster-` and its first
    /// 12 hex digits), which no other cluster shares.
    #[arg(long, env = "VCO_CLUSTER_NAME", default_value = "")]
    pub cluster_name: String,

    /// Identity of this cluster, tagged on every parameter and required to match before the
    /// operator overwrites or deletes one (default: the uid of the kube-system namespace).
    #[arg(long, env = "VCO_CLUSTER_ID")]
    pub cluster_id: Option<String>,

    /// Also take over parameters written before parameters carried a cluster id and a namespace
    /// uid (all other ownership tags must match). Turn on once, on the one cluster that owns
    /// them, before any namespace name is reused; then turn off. (A parameter without a namespace
    /// uid whose connection-uid tag names the very connection is taken over without it.)
    #[arg(long, env = "VCO_ADOPT_LEGACY_PARAMETERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub adopt_legacy_parameters: bool,

    /// KMS key for connections that set none (default: the AWS managed key alias/aws/ssm).
    #[arg(long, env = "VCO_DEFAULT_KMS_KEY_ID")]
    pub default_kms_key_id: Option<String>,

    /// KMS keys a connection may name in spec.ssm.kmsKeyId besides the default key,
    /// comma-separated and compared as written (list every form used: key id, ARN, alias).
    /// Default: only the default key.
    #[arg(long, env = "VCO_ALLOWED_KMS_KEYS", value_delimiter = ',')]
    pub allowed_kms_keys: Vec<String>,

    /// Accept Doppler personal (dp.pt.) and CLI (dp.ct.) tokens. They carry one person's access
    /// to the whole workspace, so they are refused unless this is set.
    #[arg(long, env = "VCO_ALLOW_DOPPLER_PERSONAL_TOKENS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_doppler_personal_tokens: bool,

    /// Most SSM parameters deleted (with their connections) in any --deletion-window; more
    /// deletions wait, with their finalizers, and count in the deletions_held metric (the chart
    /// alerts on it). A guard against mass deletion (a namespace or many connections deleted by
    /// mistake); 0: no limit.
    #[arg(long, env = "VCO_MAX_DELETIONS", default_value_t = 50)]
    pub max_deletions: usize,

    /// The window of --max-deletions.
    #[arg(long, env = "VCO_DELETION_WINDOW", default_value = "10m", value_parser = humantime::parse_duration)]
    pub deletion_window: Duration,

    /// Namespaces to watch, comma-separated (default: all namespaces).
    #[arg(long, env = "VCO_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Connections reconciled at once (the workers, shared round-robin between namespaces).
    #[arg(long, env = "VCO_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,

    /// How often the versions of all parameters are compared with status, 10 per non-decrypting
    /// GetParameters call, to find out-of-band changes.
    #[arg(long, env = "VCO_DRIFT_CHECK_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub drift_check_interval: Duration,

    /// Most SSM PutParameter calls per second (AWS's default quota is 3).
    #[arg(long, env = "VCO_SSM_WRITE_RATE", default_value_t = 3.0)]
    pub ssm_write_rate: f64,

    /// Most SSM read calls per second: GetParameter, GetParameters, DescribeParameters and
    /// ListTagsForResource together (the default quota GetParameter and GetParameters share is 40).
    #[arg(long, env = "VCO_SSM_READ_RATE", default_value_t = 20.0)]
    pub ssm_read_rate: f64,

    /// Timeout of one SSM request attempt (the SDK retries throttling and 5xx within 3 attempts).
    #[arg(long, env = "VCO_SSM_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub ssm_timeout: Duration,

    /// A role assumed for SSM on top of the pod's identity.
    #[command(flatten)]
    pub ssm_role: crate::aws::RoleArgs,

    /// Connection limit of each tier, e.g. free=1,team=10,enterprise=unlimited.
    #[arg(
        long,
        env = "VCO_TIER_LIMITS",
        default_value = "free=1,team=10,enterprise=unlimited"
    )]
    pub tier_limits: TierLimits,

    /// Tier of namespaces without a vaultconnections.io/tier label (or with an unknown one).
    #[arg(long, env = "VCO_DEFAULT_TIER", default_value = "team")]
    pub default_tier: String,

    /// SSM parameter tier: standard (Advanced only for a value over 4 KB; at most 10,000
    /// Standard parameters per account and region), advanced (every parameter, charged), or
    /// intelligent-tiering (SSM picks: Standard while the value and the account's quota allow).
    #[arg(
        long,
        env = "VCO_PARAMETER_TIER",
        value_enum,
        default_value = "standard"
    )]
    pub parameter_tier: TierChoice,

    /// Log format.
    #[arg(long, env = "VCO_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,

    /// Log level (error, warn, info, debug, trace) or a tracing filter directive.
    #[arg(long, env = "VCO_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Elect one active replica through a Lease (turn on when running more than one replica).
    #[arg(long, env = "VCO_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "VCO_LEASE_NAME",
        default_value = "vault-connection-operator"
    )]
    pub lease_name: String,

    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE, else default).
    #[arg(long, env = "VCO_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a leader holds the Lease without renewing it; a standby takes over after this.
    #[arg(long, env = "VCO_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: std::time::Duration,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "VCO_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    // ---- credential verification (off by default) ----
    /// Verify Doppler and Infisical credentials against the provider before storing them: a
    /// rejected credential is never written; an unreachable provider does not block the write.
    #[arg(long, env = "VCO_VERIFY_CREDENTIALS", default_value_t = false, action = clap::ArgAction::Set)]
    pub verify_credentials: bool,

    /// Base URL of the Doppler API that verification calls.
    #[arg(long, env = "VCO_VERIFY_DOPPLER_URL", default_value = crate::providers::doppler::DEFAULT_URL)]
    pub verify_doppler_url: String,

    /// Site URL of Infisical that verification calls: https://app.infisical.com (US cloud),
    /// https://eu.infisical.com (EU cloud) or a self-hosted instance.
    #[arg(long, env = "VCO_VERIFY_INFISICAL_URL", default_value = crate::providers::infisical::DEFAULT_URL)]
    pub verify_infisical_url: String,

    /// Deadline of one request to a provider (connect, TLS, answer).
    #[arg(long, env = "VCO_VERIFY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub verify_timeout: Duration,

    /// First retry delay after a provider could not be reached; it doubles per attempt up to an
    /// hour, so a connection asks an unavailable provider at most a few times an hour.
    #[arg(long, env = "VCO_VERIFY_RETRY_INTERVAL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub verify_retry_interval: Duration,

    /// Tests only: allow http:// provider URLs on loopback IP addresses.
    #[arg(long, env = "VCO_VERIFY_ALLOW_INSECURE_LOOPBACK", default_value_t = false, action = clap::ArgAction::Set)]
    pub verify_allow_insecure_loopback: bool,
}

impl RunArgs {
    /// Checks the settings together; the error names the flag and the rule.
    pub fn check(&self) -> Result<(), String> {
        check_prefix(&self.ssm_prefix).map_err(|e| format!("--ssm-prefix: {e}"))?;
        if !self.cluster_name.is_empty() {
            crate::document::parameter_name(&self.ssm_prefix, &self.cluster_name, "ns", "name")
                .map_err(|e: DocumentError| format!("--cluster-name: {e}"))?;
        }
        if let Some(id) = &self.cluster_id
            && !valid_cluster_id(id)
        {
            return Err(
                "--cluster-id: must be 1-128 letters, digits, '-', '_' or '.' (a tag value)".into(),
            );
        }
        if !self.tier_limits.contains(&self.default_tier) {
            return Err(format!(
                "--default-tier: {:?} is not one of the tiers in --tier-limits ({})",
                self.default_tier, self.tier_limits
            ));
        }
        if self.concurrency == 0 {
            return Err("--concurrency: must be at least 1".into());
        }
        if !self.ssm_write_rate.is_finite() || self.ssm_write_rate <= 0.0 {
            return Err("--ssm-write-rate: must be a positive number of writes per second".into());
        }
        if !self.ssm_read_rate.is_finite() || self.ssm_read_rate <= 0.0 {
            return Err("--ssm-read-rate: must be a positive number of reads per second".into());
        }
        if self.leader_election && self.lease_duration < Duration::from_secs(2) {
            return Err("--lease-duration: must be at least 2s".into());
        }
        if self.max_deletions > 0 && self.deletion_window < Duration::from_secs(1) {
            return Err("--deletion-window: must be at least 1s".into());
        }
        if self.drift_check_interval < Duration::from_secs(1) {
            return Err("--drift-check-interval: must be at least 1s".into());
        }
        self.ssm_role.check()?;
        self.check_verification()
    }

    fn check_verification(&self) -> Result<(), String> {
        let Some(verification) = self.verification() else {
            return Ok(());
        };
        verification.check()?;
        if self.verify_retry_interval < Duration::from_secs(1) {
            return Err("--verify-retry-interval: must be at least 1s".into());
        }
        Ok(())
    }

    /// The verification settings, when verification is on.
    pub fn verification(&self) -> Option<crate::verify::Settings> {
        self.verify_credentials.then(|| crate::verify::Settings {
            doppler_url: self.verify_doppler_url.clone(),
            infisical_url: self.verify_infisical_url.clone(),
            timeout: self.verify_timeout,
            allow_insecure_loopback: self.verify_allow_insecure_loopback,
        })
    }

    /// The reconciler's settings, for the cluster whose identity is `cluster_id`.
    pub fn settings(&self, cluster_id: &str) -> Settings {
        let default_kms_key_id = self
            .default_kms_key_id
            .clone()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| AWS_MANAGED_KEY.to_owned());
        Settings {
            policy: Policy::for_operator(
                self.allow_doppler_personal_tokens,
                &default_kms_key_id,
                &self.allowed_kms_keys,
            ),
            default_kms_key_id,
            prefix: self.ssm_prefix.clone(),
            cluster: if self.cluster_name.is_empty() {
                derived_cluster_name(cluster_id)
            } else {
                self.cluster_name.clone()
            },
            cluster_id: cluster_id.to_owned(),
            legacy: if self.adopt_legacy_parameters {
                Legacy::Adopt
            } else {
                Legacy::Refuse
            },
            tiers: self.tier_limits.clone(),
            default_tier: self.default_tier.clone(),
            drift_interval: self.drift_check_interval,
            parameter_tier: self.parameter_tier,
        }
    }

    /// The scopes to run a controller over: each watched namespace, or all (`None`).
    pub fn scopes(&self) -> Vec<Option<String>> {
        let namespaces = self.watched_namespaces();
        if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.into_iter().map(Some).collect()
        }
    }

    /// The namespaces to watch; empty means all.
    pub fn watched_namespaces(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect()
    }
}

/// Whether `id` can be a cluster id: a tag value of a safe, bounded shape.
pub fn valid_cluster_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The cluster name used when none is configured: stable for the cluster's lifetime and
/// different for every cluster (a uid's first 12 hex digits).
pub fn derived_cluster_name(cluster_id: &str) -> String {
    let hex: String = cluster_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("cluster-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_cluster_name_is_a_valid_path_segment_from_the_uid() {
        let name = derived_cluster_name("0A1b2c3d-4e5f-6789-abcd-ef0123456789");
        assert_eq!(name, "cluster-0a1b2c3d4e5f");
        assert!(crate::document::parameter_name("/p", &name, "ns", "n").is_ok());
    }

    #[test]
    fn a_cluster_id_must_be_a_plain_tag_value() {
        assert!(valid_cluster_id("0a1b2c3d-4e5f-6789-abcd-ef0123456789"));
        for bad in ["", "a b", "x/y", &"a".repeat(129)] {
            assert!(!valid_cluster_id(bad), "{bad:?}");
        }
    }
}
