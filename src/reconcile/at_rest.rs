//! Step 1's shortcut, at rest (pure): whether status records a sync of exactly these inputs, so
//! that neither the Secret nor SSM need be read; and the KMS key the inputs name, computed once
//! here and carried in [`super::read::Inputs`] to the later steps.

use crate::api::{ParameterStatus, VaultConnection, reverify_request};
use crate::document::FORMAT;
use crate::settings::Settings;
use crate::status::ready_condition;
use crate::validation::ValidSpec;

/// The KMS key a connection's parameter is encrypted with: the spec's, else the operator's
/// default.
pub fn kms_key_for(spec: &ValidSpec, settings: &Settings) -> String {
    spec.kms_key_id
        .clone()
        .unwrap_or_else(|| settings.default_kms_key_id.clone())
}

/// What status records about the inputs of the stored parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// A sync of exactly these inputs under this policy: nothing needs reading.
    Same(ParameterStatus),
    /// A sync of these inputs under another validation policy (or one not recorded): only the
    /// credentials need checking again; SSM holds what they render to.
    OtherPolicy(ParameterStatus),
    /// Something that shapes the document differs, or nothing is recorded.
    Differs,
}

/// The parameter as status records it, when that record still describes what the parameter
/// should be: the connection is Ready for this spec generation, and its last sync wrote (or
/// confirmed) `parameter` with `kms_key` from the Secret at `secret_version` in today's document
/// format — and, with verification on, the provider's final answer is recorded for the same
/// Secret version and generation. Then nothing that shapes the document changed, and neither the
/// Secret nor SSM need be read — unless the record was made under another validation `policy`
/// (a fingerprint of the rules and their settings), when the credentials are checked again.
pub fn unchanged(
    vc: &VaultConnection,
    parameter: &str,
    kms_key: &str,
    secret_version: &str,
    verification_on: bool,
    policy: &str,
) -> Recorded {
    let Some(status) = vc.status.as_ref() else {
        return Recorded::Differs;
    };
    let ready = ready_condition(vc).is_some_and(|c| c.status == "True");
    let generation = vc.metadata.generation;
    let verified = !verification_on
        || !vc.spec.vault_type.verifiable()
        || status.verification.as_ref().is_some_and(|v| {
            v.secret_resource_version == secret_version
                && Some(v.generation) == generation
                && v.request == reverify_request(vc)
        });
    let Some(recorded) = status.parameter.as_ref() else {
        return Recorded::Differs;
    };
    let same = recorded.name == parameter
        && recorded.kms_key_id.as_deref() == Some(kms_key)
        && recorded.secret_resource_version.as_deref() == Some(secret_version)
        && recorded.document_format == Some(FORMAT);
    if !(ready && verified && same && status.observed_generation == generation) {
        Recorded::Differs
    } else if recorded.policy.as_deref() == Some(policy) {
        Recorded::Same(recorded.clone())
    } else {
        Recorded::OtherPolicy(recorded.clone())
    }
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
            policy: Some(POLICY.into()),
            ..ParameterStatus::default()
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

    const POLICY: &str = "1-abc";

    fn check(vc: &VaultConnection, verification_on: bool) -> bool {
        matches!(
            unchanged(
                vc,
                "/p/c/ns/db",
                "alias/aws/ssm",
                "41",
                verification_on,
                POLICY
            ),
            Recorded::Same(_)
        )
    }

    #[test]
    fn a_recorded_sync_of_the_same_inputs_needs_no_read() {
        let vc = connection("True");
        assert_eq!(
            unchanged(&vc, "/p/c/ns/db", "alias/aws/ssm", "41", false, POLICY),
            Recorded::Same(recorded())
        );
    }

    #[test]
    fn anything_that_shapes_the_parameter_changed_means_a_full_read() {
        let vc = connection("True");
        let differs = |parameter, key, secret| {
            unchanged(&vc, parameter, key, secret, false, POLICY) == Recorded::Differs
        };
        assert!(differs("/p/other/ns/db", "alias/aws/ssm", "41"), "name");
        assert!(differs("/p/c/ns/db", "alias/other", "41"), "key");
        assert!(differs("/p/c/ns/db", "alias/aws/ssm", "42"), "Secret");
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
    fn a_record_made_under_another_policy_asks_for_the_credentials_to_be_checked_again() {
        let vc = connection("True");
        assert_eq!(
            unchanged(
                &vc,
                "/p/c/ns/db",
                "alias/aws/ssm",
                "41",
                false,
                "1-stricter"
            ),
            Recorded::OtherPolicy(recorded())
        );
        let mut unrecorded = connection("True");
        if let Some(p) = unrecorded
            .status
            .as_mut()
            .and_then(|s| s.parameter.as_mut())
        {
            p.policy = None;
        }
        assert!(
            matches!(
                unchanged(
                    &unrecorded,
                    "/p/c/ns/db",
                    "alias/aws/ssm",
                    "41",
                    false,
                    POLICY
                ),
                Recorded::OtherPolicy(_)
            ),
            "recorded by a release before policy fingerprints"
        );
        assert_eq!(
            unchanged(
                &connection("False"),
                "/p/c/ns/db",
                "alias/aws/ssm",
                "41",
                false,
                "x"
            ),
            Recorded::Differs,
            "a connection that is not Ready is read in full"
        );
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
            request: None,
            result: VerificationResult::Accepted,
            check: None,
            http_status: None,
        };
        if let Some(s) = vc.status.as_mut() {
            s.verification = Some(Box::new(answer("40", 2)));
        }
        assert!(!check(&vc, true), "answer about an older Secret");
        if let Some(s) = vc.status.as_mut() {
            s.verification = Some(Box::new(answer("41", 2)));
        }
        assert!(check(&vc, true));
        assert!(check(&vc, false));
    }
}
