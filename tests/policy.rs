//! The cluster admin's policy against the real API server and SSM emulator: which KMS keys a
//! connection may name, and whether Doppler personal tokens are accepted. A refused connection
//! reports why and nothing is written.

mod common;

use serde_json::json;

use common::{Connection, Credentials, Options, World, cond};

#[tokio::test]
async fn a_kms_key_outside_the_allow_list_gets_kms_key_not_allowed_and_nothing_is_written() {
    let Some(w) = World::new("kms-allow").await else {
        return;
    };
    let _op = w
        .operator_with(Options::new().env("VCO_ALLOWED_KMS_KEYS", "alias/team-a"))
        .await;
    for (name, kms) in [
        ("other", "alias/someone-elses-key"),
        ("listed", "alias/team-a"),
    ] {
        w.apply(Credentials::secret(name).token("ops_kms")).await;
        w.apply(Connection::onepassword(name).kms_key(kms)).await;
    }

    let vc = w.wait_reason("other", "KmsKeyNotAllowed").await;
    let (status, _, message) = cond(&vc, "Ready");
    assert_eq!(status, "False");
    assert!(message.starts_with("spec.ssm.kmsKeyId: "), "{message}");
    assert!(message.contains("--allowed-kms-keys"), "{message}");
    assert!(
        !message.contains("someone-elses"),
        "no value in the message: {message}"
    );
    let (valid, reason, _) = cond(&vc, "Valid");
    assert_eq!(
        (valid.as_str(), reason.as_str()),
        ("False", "KmsKeyNotAllowed")
    );
    w.nothing_written("other").await;

    w.wait_reason("listed", "Synced").await;
    assert!(w.read("listed").await.is_some());

    // Dropping the key falls back to the default key, which is always allowed.
    w.patch("other", json!({"spec": {"ssm": null}})).await;
    w.wait_reason("other", "Synced").await;
}

#[tokio::test]
async fn a_doppler_personal_token_is_refused_unless_the_operator_allows_it() {
    let Some(w) = World::new("doppler-pt").await else {
        return;
    };
    let mut op = w.operator().await;
    w.apply(Credentials::secret("personal").token("dp.pt.CANARYperson"))
        .await;
    w.apply(Connection::doppler("personal")).await;
    let vc = w.wait_reason("personal", "InvalidCredentials").await;
    let (status, _, message) = cond(&vc, "Ready");
    assert_eq!(status, "False");
    assert!(
        message.starts_with("Secret/personal[access_token]: is a Doppler personal"),
        "{message}"
    );
    assert!(
        message.contains("--allow-doppler-personal-tokens"),
        "{message}"
    );
    assert!(!message.contains("CANARY"), "{message}");
    w.nothing_written("personal").await;

    op.kill();
    let _op = w
        .operator_with(Options::new().env("VCO_ALLOW_DOPPLER_PERSONAL_TOKENS", "true"))
        .await;
    w.wait_reason("personal", "Synced").await;
    assert!(w.read("personal").await.is_some());
}
