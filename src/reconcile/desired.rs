//! Step 2, desire (pure): from the checked inputs to what the parameter should be — the
//! document, its tier, its KMS key and its ownership tags. The raw Secret data is dropped as soon
//! as the document is rendered; the validated credentials go on (redacted) only for verification.

use kube::ResourceExt;
use secrecy::SecretString;

use super::evidence::{Digest, Evidence};
use super::read::Inputs;
use crate::api::{ParameterStatus, VaultConnection};
use crate::document::{Tier, render, tier_for};
use crate::ownership::{ADOPT_ANNOTATION, Identity, Tags, Takeover};
use crate::reason::Reason;
use crate::settings::Settings;
use crate::status::Failure;
use crate::validation::{ErrorKind, Provider, summarize, validate_credentials};

/// What the parameter should be.
pub struct Desired {
    /// Parameter name.
    pub name: String,
    /// The document (a secret).
    pub value: SecretString,
    /// Its salted digest in this process (see [`Evidence`]).
    pub digest: Digest,
    /// The salted digest of the Secret data it was rendered from.
    pub source: Digest,
    /// Tier for the document's size (never below the tier status records).
    pub tier: Tier,
    /// KMS key: the spec's, else the operator's default.
    pub kms_key_id: String,
    /// The tags that prove the parameter is this connection's.
    pub tags: Tags,
    /// Who the connection is.
    pub identity: Identity,
    /// What else may be taken over: legacy parameters (the operator's flag), a parameter of an
    /// earlier namespace of the same name (the connection's adoption annotation).
    pub takeover: Takeover,
    /// The parameter as status records it (same name), if any: a hint for the order of calls
    /// and the wording of events, never a proof.
    pub recorded: Option<ParameterStatus>,
    /// The Secret's resourceVersion the document was rendered from (recorded in status by
    /// write, and the version verification asks about).
    pub secret_version: Option<String>,
    /// The spec changed since status was last written.
    pub spec_changed: bool,
    /// The provider and its credentials (redacted in `Debug`), for verification.
    pub provider: Provider,
}

/// What the parameter should be, or why it cannot be written.
pub fn desired(
    vc: &VaultConnection,
    inputs: Inputs,
    settings: &Settings,
    evidence: &Evidence,
) -> Result<Desired, Failure> {
    let Inputs {
        spec,
        parameter,
        secret,
        namespace_uid,
        kms_key_id,
        secret_version,
        source,
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
    .map_err(|e| Failure::new(Reason::ValueTooLarge, e.to_string()))?
    .max(settings.parameter_tier.floor());
    let identity = identity(vc, namespace_uid, settings);
    Ok(Desired {
        tags: identity.tags(),
        identity,
        takeover: takeover(vc, settings),
        name: parameter,
        digest: evidence.digest(&value),
        source,
        value,
        tier,
        kms_key_id,
        recorded,
        secret_version,
        spec_changed: vc.metadata.generation
            != vc.status.as_ref().and_then(|st| st.observed_generation),
        provider: connection.provider,
    })
}

/// Who `vc`, in the namespace with uid `namespace_uid`, is: what its parameter's tags name.
pub fn identity(vc: &VaultConnection, namespace_uid: String, settings: &Settings) -> Identity {
    Identity {
        cluster: settings.cluster.clone(),
        cluster_id: settings.cluster_id.clone(),
        namespace: vc.namespace().unwrap_or_default(),
        namespace_uid,
        name: vc.name_any(),
        uid: vc.uid().unwrap_or_default(),
        vault_type: vc.spec.vault_type.as_str().to_owned(),
    }
}

/// What a connection may take over besides its own parameter: legacy parameters when the
/// operator says so, and one of an earlier namespace of the same name when the connection's
/// adoption annotation asks (only someone allowed to edit the connection can set it).
pub fn takeover(vc: &VaultConnection, settings: &Settings) -> Takeover {
    Takeover {
        legacy: settings.legacy,
        adopt: vc.annotations().get(ADOPT_ANNOTATION).map(String::as_str) == Some("true"),
    }
}
