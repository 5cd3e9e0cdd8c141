//! The vault providers, one module each: [`onepassword`], [`doppler`], [`infisical`]. Everything
//! that differs between providers lives in its module; this file only dispatches to them, with
//! exhaustive matches (never `_ =>`), so a new provider does not compile until every part is
//! given. The shared machinery stays shared: reading a credential and the length rule
//! ([`crate::validation::rules`]), the document envelope ([`crate::document`]), verdicts and HTTP
//! ([`crate::verify`]).
//!
//! **The parts of a provider.** In its module `src/providers/<name>.rs`:
//! 1. its name (`NAME`) and [`VaultType`] variant (in [`parts`]);
//! 2. its spec section, if any (`<Name>Spec`, re-exported by [`crate::api`] so the CRD does not
//!    change), with its limits and its check ([`settings`]);
//! 3. its credentials: Secret keys, limits and format rules ([`credentials`]);
//! 4. its fields of the SSM document, in their order ([`Provider::fields`]);
//! 5. its verification checks (`CHECKS`: label, endpoint, what a success proves) and the default
//!    URL they call (`DEFAULT_URL`), or none; the HTTP calls are in `src/verify/<name>.rs`.
//!
//! Outside this directory, each provider also has (and `tests/providers.rs` fails when one
//! lacks any of them):
//! - a variant in [`ProviderSettings`] and [`Provider`] here, and a field and two CEL rules
//!   (present when chosen, absent otherwise) in [`crate::api::VaultConnectionSpec`] when it has
//!   a spec section; the generated CRD in `crds/` and the chart's `crd.yaml`;
//! - when it is verifiable: the `--verify-<name>-url` flag in `src/config.rs`, the chart value
//!   `operator.verification.<name>Url` (`values.yaml`, `values.schema.json`, `deployment.yaml`),
//!   its URL in the NetworkPolicy of `networkpolicy-verification.yaml`, and a fake of its API in
//!   `tests/common/providers.rs` serving every check's endpoint;
//! - an example, `examples/<name>.yaml`.

pub mod doppler;
pub mod infisical;
pub mod onepassword;
pub mod parts;

use secrecy::SecretString;
use serde::Serialize;

pub use parts::{Check, VaultType};

use crate::api::VaultConnectionSpec;
use crate::validation::rules::{FieldError, SecretKeys};

impl VaultType {
    /// The provider's name as people write it.
    pub fn name(self) -> &'static str {
        match self {
            VaultType::OnePassword => onepassword::NAME,
            VaultType::Doppler => doppler::NAME,
            VaultType::Infisical => infisical::NAME,
        }
    }

    /// The checks verification makes, in order (none: the provider cannot be verified).
    pub fn checks(self) -> &'static [Check] {
        match self {
            VaultType::OnePassword => onepassword::CHECKS,
            VaultType::Doppler => doppler::CHECKS,
            VaultType::Infisical => infisical::CHECKS,
        }
    }

    /// The URL verification calls unless configured otherwise (none without checks).
    pub fn default_url(self) -> Option<&'static str> {
        match self {
            VaultType::OnePassword => None,
            VaultType::Doppler => Some(doppler::DEFAULT_URL),
            VaultType::Infisical => Some(infisical::DEFAULT_URL),
        }
    }

    /// Why verification is not available, for a provider without checks.
    pub fn unverifiable_because(self) -> Option<&'static str> {
        match self {
            VaultType::OnePassword => Some(onepassword::NOT_VERIFIABLE),
            VaultType::Doppler | VaultType::Infisical => None,
        }
    }

    /// Whether the provider has a check verification can make.
    pub fn verifiable(self) -> bool {
        !self.checks().is_empty()
    }
}

impl Check {
    /// The check named `label` for `provider`, as [`Check::label`] writes it.
    pub fn parse(provider: VaultType, label: &str) -> Option<Check> {
        provider
            .checks()
            .iter()
            .copied()
            .find(|c| c.label() == label)
    }
}

/// The non-secret, provider-specific settings of a valid spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderSettings {
    /// 1Password needs only the token.
    OnePassword,
    /// Doppler project and config.
    Doppler {
        /// Doppler project name.
        project: String,
        /// Doppler config name.
        config: String,
    },
    /// Infisical project, environment and normalised secret path.
    Infisical {
        /// Infisical project id.
        project_id: String,
        /// Environment slug.
        environment: String,
        /// Secret path, always starting with `/`.
        secret_path: String,
    },
}

impl ProviderSettings {
    /// The provider these settings are for.
    pub fn vault_type(&self) -> VaultType {
        match self {
            ProviderSettings::OnePassword => VaultType::OnePassword,
            ProviderSettings::Doppler { .. } => VaultType::Doppler,
            ProviderSettings::Infisical { .. } => VaultType::Infisical,
        }
    }
}

/// A provider with its settings and its credentials, the credentials redacted in `Debug`.
#[derive(Debug, Clone)]
pub enum Provider {
    /// 1Password service account.
    OnePassword {
        /// Service-account token (`ops_...`).
        access_token: SecretString,
    },
    /// Doppler service token scoped to a project and config.
    Doppler {
        /// Service token (`dp.st....`).
        access_token: SecretString,
        /// Doppler project name.
        project: String,
        /// Doppler config name.
        config: String,
    },
    /// Infisical Universal Auth machine identity.
    Infisical {
        /// Client id (a UUID).
        client_id: SecretString,
        /// Client secret.
        client_secret: SecretString,
        /// Infisical project id.
        project_id: String,
        /// Environment slug.
        environment: String,
        /// Secret path, always starting with `/`.
        secret_path: String,
    },
}

/// The provider's fields of the SSM document (serialised flat into the document envelope).
#[derive(Serialize)]
#[serde(untagged)]
pub enum Fields<'a> {
    /// 1Password's.
    OnePassword(onepassword::Fields<'a>),
    /// Doppler's.
    Doppler(doppler::Fields<'a>),
    /// Infisical's.
    Infisical(infisical::Fields<'a>),
}

impl Provider {
    /// The provider.
    pub fn vault_type(&self) -> VaultType {
        match self {
            Provider::OnePassword { .. } => VaultType::OnePassword,
            Provider::Doppler { .. } => VaultType::Doppler,
            Provider::Infisical { .. } => VaultType::Infisical,
        }
    }

    /// Its fields of the SSM document (secrets: serialise them only into the document).
    pub fn fields(&self) -> Fields<'_> {
        match self {
            Provider::OnePassword { access_token } => {
                Fields::OnePassword(onepassword::fields(access_token))
            }
            Provider::Doppler {
                access_token,
                project,
                config,
            } => Fields::Doppler(doppler::fields(access_token, project, config)),
            Provider::Infisical {
                client_id,
                client_secret,
                project_id,
                environment,
                secret_path,
            } => Fields::Infisical(infisical::fields(
                client_id,
                client_secret,
                project_id,
                environment,
                secret_path,
            )),
        }
    }
}

/// A provider's spec section: absent unless its provider is chosen, required when it is.
/// Records the broken rules; gives the section when the provider is chosen and it is there.
fn section<'a, T>(
    spec: &VaultConnectionSpec,
    owner: VaultType,
    section: Option<&'a T>,
    errors: &mut Vec<FieldError>,
) -> Option<&'a T> {
    let (vt, name) = (spec.vault_type.as_str(), owner.as_str());
    if section.is_some() && spec.vault_type != owner {
        errors.push(FieldError::spec(
            format!("spec.{name}"),
            format!(
                "must be absent when spec.vaultType is {vt}; remove it or set vaultType: {name}"
            ),
        ));
    }
    section.filter(|_| spec.vault_type == owner)
}

/// Checks the provider settings of `spec`: the chosen provider's section, and no other's.
pub fn settings(
    spec: &VaultConnectionSpec,
    errors: &mut Vec<FieldError>,
) -> Option<ProviderSettings> {
    let doppler = section(spec, VaultType::Doppler, spec.doppler.as_ref(), errors);
    let infisical = section(spec, VaultType::Infisical, spec.infisical.as_ref(), errors);
    let vt = spec.vault_type;
    let required = |errors: &mut Vec<FieldError>, what: &str| {
        let name = vt.as_str();
        errors.push(FieldError::spec(
            format!("spec.{name}"),
            format!("is required when spec.vaultType is {name}; {what}"),
        ));
        None
    };
    match vt {
        VaultType::OnePassword => Some(ProviderSettings::OnePassword),
        VaultType::Doppler => match doppler {
            None => required(errors, doppler::REQUIRED),
            Some(d) => {
                let (project, config) = doppler::settings(d, errors);
                Some(ProviderSettings::Doppler { project, config })
            }
        },
        VaultType::Infisical => match infisical {
            None => required(errors, infisical::REQUIRED),
            Some(i) => {
                let (project_id, environment, secret_path) = infisical::settings(i, errors);
                Some(ProviderSettings::Infisical {
                    project_id,
                    environment,
                    secret_path,
                })
            }
        },
    }
}

/// Reads and checks the credentials `settings`' provider needs from the Secret.
/// `allow_doppler_personal_tokens` is the operator's policy.
pub fn credentials(
    settings: &ProviderSettings,
    secret: &mut SecretKeys,
    allow_doppler_personal_tokens: bool,
) -> Option<Provider> {
    match settings {
        ProviderSettings::OnePassword => onepassword::credentials(secret)
            .map(|access_token| Provider::OnePassword { access_token }),
        ProviderSettings::Doppler { project, config } => {
            doppler::credentials(secret, allow_doppler_personal_tokens).map(|access_token| {
                Provider::Doppler {
                    access_token,
                    project: project.clone(),
                    config: config.clone(),
                }
            })
        }
        ProviderSettings::Infisical {
            project_id,
            environment,
            secret_path,
        } => infisical::credentials(secret).map(|(client_id, client_secret)| Provider::Infisical {
            client_id,
            client_secret,
            project_id: project_id.clone(),
            environment: environment.clone(),
            secret_path: secret_path.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails to compile when a provider is added without a place in the list.
    fn position(vt: VaultType) -> usize {
        match vt {
            VaultType::OnePassword => 0,
            VaultType::Doppler => 1,
            VaultType::Infisical => 2,
        }
    }

    #[test]
    fn every_provider_is_listed_once_and_its_checks_are_its_own() {
        for (i, vt) in VaultType::ALL.into_iter().enumerate() {
            assert_eq!(position(vt), i, "{vt:?}");
            assert_eq!(vt.verifiable(), vt.default_url().is_some(), "{vt:?}");
            assert_eq!(
                vt.verifiable(),
                vt.unverifiable_because().is_none(),
                "{vt:?}"
            );
            let mut labels = std::collections::BTreeSet::new();
            for check in vt.checks() {
                assert_eq!(check.provider(), vt);
                assert!(labels.insert(check.label()), "{vt:?}: label twice");
                assert_eq!(Check::parse(vt, check.label()), Some(*check));
            }
        }
    }
}
