//! The vocabulary every provider module speaks: which providers there are ([`VaultType`]) and
//! what one verification request is ([`Check`]). Imports nothing of the crate, so every provider
//! module (and [`crate::api`], which re-exports [`VaultType`]) can use it without a circle.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The external vault provider.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum VaultType {
    /// 1Password, with a service-account access token (`ops_...`).
    #[serde(rename = "onepassword")]
    OnePassword,
    /// Doppler, with a service token (`dp.st....`) scoped to a project and config.
    Doppler,
    /// Infisical, with a Universal Auth machine identity (client id and client secret).
    Infisical,
}

impl VaultType {
    /// Every provider, in the order docs and messages list them.
    pub const ALL: [VaultType; 3] = [
        VaultType::OnePassword,
        VaultType::Doppler,
        VaultType::Infisical,
    ];

    /// The name used in the API and in the SSM document.
    pub fn as_str(self) -> &'static str {
        match self {
            VaultType::OnePassword => "onepassword",
            VaultType::Doppler => "doppler",
            VaultType::Infisical => "infisical",
        }
    }
}

/// One request a verification makes, in order per provider: which documented endpoint it calls
/// and what a success proves. Each provider module defines its own as constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Check {
    provider: VaultType,
    label: &'static str,
    describe: &'static str,
    endpoint: &'static str,
    names_scope: bool,
}

impl Check {
    /// A check of `provider`: its stable `label`, what it proves (`describe`), the `endpoint`
    /// it calls, and whether the request names something the provider may not know
    /// (`names_scope`: then 400/404/422 mean "not accepted", not "broken").
    pub const fn new(
        provider: VaultType,
        label: &'static str,
        describe: &'static str,
        endpoint: &'static str,
        names_scope: bool,
    ) -> Check {
        Check {
            provider,
            label,
            describe,
            endpoint,
            names_scope,
        }
    }

    /// The provider the check calls.
    pub fn provider(self) -> VaultType {
        self.provider
    }

    /// A short stable name for logs, metrics and status (unique per provider).
    pub fn label(self) -> &'static str {
        self.label
    }

    /// What the check proves, for messages.
    pub fn describe(self) -> &'static str {
        self.describe
    }

    /// The documented endpoint the check calls (`GET /v3/me`).
    pub fn endpoint(self) -> &'static str {
        self.endpoint
    }

    /// Whether the request names a project, config, environment or client the provider may
    /// not know, so that 400/404/422 mean "not accepted".
    pub fn names_scope(self) -> bool {
        self.names_scope
    }
}
