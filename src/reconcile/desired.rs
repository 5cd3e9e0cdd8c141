//! Step 2, desire (pure): from the checked inputs to what the parameter should be — the
//! document, its tier, its KMS key and its ownership tags. The raw Secret data is dropped as soon
//! as the document is rendered; the validated credentials go on (redacted) only for verification.

use std::collections::BTreeMap;

use kube::ResourceExt;
use secrecy::SecretString;

use super::plan::{Legacy, identity_tags};
use super::read::Inputs;
use crate::api::{ParameterStatus, VaultConnection};
use crate::config::Settings;
use crate::document::{Tier, render, tier_for};
use crate::reason::Reason;
use crate::status::Failure;
use crate::validation::{ErrorKind, Provider, summarize, validate_credentials};

/// What the parameter should be.
pub struct Desired {
    /// Parameter name.
    pub name: String,
    /// The document (a secret).
    pub value: SecretString,
    /// Tier for the document's size (never below the tier status records).
    pub tier: Tier,
    /// KMS key: the spec's, else the operator's default.
    pub kms_key_id: String,
    /// The tags that prove the parameter is this connection's.
    pub tags: BTreeMap<String, String>,
    /// The parameter as status records it (same name), if any.
    pub recorded: Option<ParameterStatus>,
    /// The spec changed since status was last written.
    pub spec_changed: bool,
    /// Whether a parameter without a cluster-id tag may be taken over.
    pub legacy: Legacy,
    /// The provider and its credentials (redacted in `Debug`), for verification.
    pub provider: Provider,
}

/// What the parameter should be, or why it cannot be written.
pub fn desired(
    vc: &VaultConnection,
    inputs: Inputs,
    settings: &Settings,
) -> Result<Desired, Failure> {
    let Inputs {
        spec,
        parameter,
        secret,
        ..
    } = inputs;
    let connection = validate_credentials(&spec, &secret, &settings.policy).map_err(|errors| {
        let kind = if errors.iter().any(|e| e.kind == ErrorKind::MissingKey) {
            ErrorKind::MissingKey
        } else {
            ErrorKind::InvalidCredentials
        };
        Failure::new(kind.reason(), summarize(&errors))
    })?;
    drop(secret);
    let value = render(&connection);
    let recorded = vc
        .status
        .as_ref()
        .and_then(|st| st.parameter.clone())
        .filter(|p| p.name == parameter);
    let tier = tier_for(
        secrecy::ExposeSecret::expose_secret(&value).len(),
        recorded.as_ref().and_then(|p| Tier::parse(&p.tier)),
    )
    .map_err(|e| Failure::new(Reason::ValueTooLarge, e.to_string()))?;
    let kms_key_id = spec
        .kms_key_id
        .clone()
        .unwrap_or_else(|| settings.default_kms_key_id.clone());
    let ns = vc.namespace().unwrap_or_default();
    Ok(Desired {
        tags: identity_tags(vc, &ns, &vc.name_any(), settings),
        name: parameter,
        value,
        tier,
        kms_key_id,
        recorded,
        spec_changed: vc.metadata.generation
            != vc.status.as_ref().and_then(|st| st.observed_generation),
        legacy: settings.legacy,
        provider: connection.provider,
    })
}
