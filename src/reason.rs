//! Every condition reason the operator sets, listed once: its name, the condition it belongs to,
//! whether the operator recovers from it by itself, and what it means. Status, events, metrics,
//! the Argo CD health check and the README's table all take their reasons from here (tests fail
//! when one of them drifts).

use std::fmt;

/// Which condition a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The spec, the Secret or the credentials (`Valid`).
    Valid,
    /// Storing the parameter (`Synced`).
    Synced,
}

/// The reason of a connection's `Ready` condition (and of `Valid`/`Synced` when they fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The parameter holds the current credentials.
    Synced,
    /// The spec breaks a rule.
    InvalidSpec,
    /// The referenced Secret does not exist.
    SecretNotFound,
    /// The Secret lacks the opt-in label.
    SecretNotLabeled,
    /// A key the provider needs is absent from the Secret.
    MissingKey,
    /// A credential fails a length or format check.
    InvalidCredentials,
    /// With verification on, the provider refused the credentials.
    CredentialsRejected,
    /// The spec names a KMS key the operator may not use.
    KmsKeyNotAllowed,
    /// The SSM document would exceed the Advanced tier's size.
    ValueTooLarge,
    /// The namespace's tier allows fewer connections.
    TierLimitExceeded,
    /// The parameter exists without this connection's ownership tags.
    ParameterNotOwned,
    /// SSM throttled the operator.
    Throttled,
    /// IAM refused an SSM call.
    AccessDenied,
    /// The operator's own AWS credentials failed (expired, unknown, not obtainable).
    AwsCredentialsError,
    /// KMS refused the key.
    KmsKeyError,
    /// Any other SSM failure.
    SyncFailed,
}

impl Reason {
    /// Every reason, in the order the README lists them.
    pub const ALL: [Reason; 16] = [
        Reason::Synced,
        Reason::InvalidSpec,
        Reason::SecretNotFound,
        Reason::SecretNotLabeled,
        Reason::MissingKey,
        Reason::InvalidCredentials,
        Reason::CredentialsRejected,
        Reason::KmsKeyNotAllowed,
        Reason::ValueTooLarge,
        Reason::TierLimitExceeded,
        Reason::ParameterNotOwned,
        Reason::Throttled,
        Reason::SyncFailed,
        Reason::AccessDenied,
        Reason::AwsCredentialsError,
        Reason::KmsKeyError,
    ];

    /// The reason as it appears in conditions, events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Synced => "Synced",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::SecretNotLabeled => "SecretNotLabeled",
            Reason::MissingKey => "MissingKey",
            Reason::InvalidCredentials => "InvalidCredentials",
            Reason::CredentialsRejected => "CredentialsRejected",
            Reason::KmsKeyNotAllowed => "KmsKeyNotAllowed",
            Reason::ValueTooLarge => "ValueTooLarge",
            Reason::TierLimitExceeded => "TierLimitExceeded",
            Reason::ParameterNotOwned => "ParameterNotOwned",
            Reason::Throttled => "Throttled",
            Reason::AccessDenied => "AccessDenied",
            Reason::AwsCredentialsError => "AwsCredentialsError",
            Reason::KmsKeyError => "KmsKeyError",
            Reason::SyncFailed => "SyncFailed",
        }
    }

    /// The reason named `s`, if it is one of ours.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The condition a failure with this reason belongs to; `None` for [`Reason::Synced`].
    pub fn stage(self) -> Option<Stage> {
        match self {
            Reason::Synced => None,
            Reason::InvalidSpec
            | Reason::SecretNotFound
            | Reason::SecretNotLabeled
            | Reason::MissingKey
            | Reason::InvalidCredentials
            | Reason::CredentialsRejected
            | Reason::KmsKeyNotAllowed
            | Reason::ValueTooLarge => Some(Stage::Valid),
            Reason::TierLimitExceeded
            | Reason::ParameterNotOwned
            | Reason::Throttled
            | Reason::AccessDenied
            | Reason::AwsCredentialsError
            | Reason::KmsKeyError
            | Reason::SyncFailed => Some(Stage::Synced),
        }
    }

    /// Whether the operator recovers by itself with a quick retry. Every other failure needs a
    /// change somewhere (spec, Secret, IAM, KMS, tags, tier) before it can clear.
    pub fn is_transient(self) -> bool {
        matches!(self, Reason::Throttled | Reason::SyncFailed)
    }

    /// What the reason means, in one line (the README's table says the same).
    pub fn meaning(self) -> &'static str {
        match self {
            Reason::Synced => "the parameter holds the current credentials",
            Reason::InvalidSpec => {
                "the spec breaks a rule (the message names the field and the rule)"
            }
            Reason::SecretNotFound => "the referenced Secret does not exist in the namespace",
            Reason::SecretNotLabeled => "the Secret lacks the opt-in label",
            Reason::MissingKey => "a key the provider needs is absent from the Secret",
            Reason::InvalidCredentials => "a credential fails a length or format check",
            Reason::CredentialsRejected => {
                "with verification on, the provider refused the credentials; nothing written"
            }
            Reason::KmsKeyNotAllowed => {
                "the spec names a KMS key outside the operator's allow-list"
            }
            Reason::ValueTooLarge => "the SSM document would exceed the Advanced tier's size limit",
            Reason::TierLimitExceeded => {
                "the namespace already holds as many SSM parameters as its tier allows"
            }
            Reason::ParameterNotOwned => {
                "the parameter exists without this connection's ownership tags"
            }
            Reason::Throttled => "SSM throttled the operator; retried with backoff",
            Reason::AccessDenied => "IAM refused an SSM call; retried slowly",
            Reason::AwsCredentialsError => {
                "the operator's own AWS credentials failed (expired, unknown to AWS, or not \
                 obtainable from its identity); retried slowly"
            }
            Reason::KmsKeyError => "KMS refused the key; retried slowly",
            Reason::SyncFailed => "another SSM failure; retried with backoff",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once_and_parses_back() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert!(!Reason::ALL[..i].contains(r), "{r} listed twice");
        }
        assert_eq!(Reason::parse("Pending"), None);
    }

    #[test]
    fn only_synced_has_no_stage_and_transient_reasons_are_sync_failures() {
        for r in Reason::ALL {
            assert_eq!(r.stage().is_none(), r == Reason::Synced, "{r}");
            if r.is_transient() {
                assert_eq!(r.stage(), Some(Stage::Synced), "{r}");
            }
        }
    }
}
