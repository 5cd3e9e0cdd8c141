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
use crate::document::{FORMAT, Tier, render, tier_for};
use crate::reason::Reason;
use crate::status::Failure;
use crate::status::ready_condition;
use crate::validation::{ErrorKind, Provider, ValidSpec, summarize, validate_credentials};
use crate::verify::verifiable;

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
    let kms_key_id = kms_key_for(&spec, settings);
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

/// The KMS key a connection's parameter is encrypted with: the spec's, else the operator's
/// default.
pub fn kms_key_for(spec: &ValidSpec, settings: &Settings) -> String {
    spec.kms_key_id
        .clone()
        .unwrap_or_else(|| settings.default_kms_key_id.clone())
}

/// The parameter as status records it, when that record still describes what the parameter
/// should be: the connection is Ready for this spec generation, and its last sync wrote (or
/// confirmed) `parameter` with `kms_key` from the Secret at `secret_version` in today's document
/// format — and, with verification on, the provider's final answer is recorded for the same
/// Secret version and generation. Then nothing that shapes the document changed, and neither the
/// Secret nor SSM need be read.
pub fn unchanged(
    vc: &VaultConnection,
    parameter: &str,
    kms_key: &str,
    secret_version: &str,
    verification_on: bool,
) -> Option<ParameterStatus> {
    let status = vc.status.as_ref()?;
    let ready = ready_condition(vc).is_some_and(|c| c.status == "True");
    let generation = vc.metadata.generation;
    let verified = !verification_on
        || !verifiable(vc.spec.vault_type)
        || status.verification.as_ref().is_some_and(|v| {
            v.secret_resource_version == secret_version && Some(v.generation) == generation
        });
    let recorded = status.parameter.as_ref()?;
    let same = recorded.name == parameter
        && recorded.kms_key_id.as_deref() == Some(kms_key)
        && recorded.secret_resource_version.as_deref() == Some(secret_version)
        && recorded.document_format == Some(FORMAT);
    (ready && verified && same && status.observed_generation == generation)
        .then(|| recorded.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        VaultConnectionSpec, VaultConnectionStatus, VerificationResult, VerificationStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn recorded() -> ParameterStatus {
        ParameterStatus {
            name: "/p/c/ns/db".into(),
            version: 3,
            tier: "Standard".into(),
            kms_key_id: Some("alias/aws/ssm".into()),
            secret_resource_version: Some("41".into()),
            document_format: Some(FORMAT),
        }
    }

    fn connection(ready: &str) -> VaultConnection {
        let spec: VaultConnectionSpec = serde_json::from_value(serde_json::json!({
            "vaultType": "onepassword",
            "credentialsSecretRef": {"name": "s"}
        }))
        .unwrap();
        let mut vc = VaultConnection::new("db", spec);
        vc.metadata.generation = Some(2);
        vc.status = Some(VaultConnectionStatus {
            observed_generation: Some(2),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: ready.into(),
                reason: "Synced".into(),
                message: String::new(),
                observed_generation: Some(2),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            }],
            parameter: Some(recorded()),
            ..VaultConnectionStatus::default()
        });
        vc
    }

    fn check(vc: &VaultConnection, verification_on: bool) -> bool {
        unchanged(vc, "/p/c/ns/db", "alias/aws/ssm", "41", verification_on).is_some()
    }

    #[test]
    fn a_recorded_sync_of_the_same_inputs_needs_no_read() {
        let vc = connection("True");
        assert_eq!(
            unchanged(&vc, "/p/c/ns/db", "alias/aws/ssm", "41", false),
            Some(recorded())
        );
    }

    #[test]
    fn anything_that_shapes_the_parameter_changed_means_a_full_read() {
        let vc = connection("True");
        assert!(
            unchanged(&vc, "/p/other/ns/db", "alias/aws/ssm", "41", false).is_none(),
            "name"
        );
        assert!(
            unchanged(&vc, "/p/c/ns/db", "alias/other", "41", false).is_none(),
            "key"
        );
        assert!(
            unchanged(&vc, "/p/c/ns/db", "alias/aws/ssm", "42", false).is_none(),
            "Secret"
        );
        assert!(!check(&connection("False"), false), "not Ready");
        let mut newer = connection("True");
        newer.metadata.generation = Some(3);
        assert!(!check(&newer, false), "spec changed");
        let mut old_format = connection("True");
        if let Some(p) = old_format
            .status
            .as_mut()
            .and_then(|s| s.parameter.as_mut())
        {
            p.document_format = None;
        }
        assert!(!check(&old_format, false), "written by an older operator");
        let mut no_version = connection("True");
        if let Some(p) = no_version
            .status
            .as_mut()
            .and_then(|s| s.parameter.as_mut())
        {
            p.secret_resource_version = None;
        }
        assert!(!check(&no_version, false), "no Secret version recorded");
    }

    #[test]
    fn with_verification_on_the_answer_must_be_recorded_for_the_same_secret() {
        let mut vc = connection("True");
        assert!(
            check(&vc, true),
            "1Password has no check, so no answer to wait for"
        );
        vc.spec.vault_type = crate::api::VaultType::Doppler;
        assert!(!check(&vc, true), "no answer recorded");
        let answer = |rv: &str, generation| VerificationStatus {
            secret_resource_version: rv.into(),
            generation,
            result: VerificationResult::Accepted,
            check: None,
            http_status: None,
        };
        if let Some(s) = vc.status.as_mut() {
            s.verification = Some(answer("40", 2));
        }
        assert!(!check(&vc, true), "answer about an older Secret");
        if let Some(s) = vc.status.as_mut() {
            s.verification = Some(answer("41", 2));
        }
        assert!(check(&vc, true));
        assert!(check(&vc, false));
    }
}
