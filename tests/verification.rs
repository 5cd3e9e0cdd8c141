//! Credential verification in the operator, end to end: an operator process against the real API
//! server, the SSM emulator and the fake providers (tests/common/providers.rs). Each test checks
//! what is written to SSM, the `Verified` and `Ready` conditions, and how many calls each
//! provider received — the policy: a rejected credential is never stored and costs one attempt
//! until the Secret or the spec changes; an unavailable provider does not block the write; an
//! answer is never asked for again for the same credentials, across drift checks and restarts.

mod common;

use std::time::Duration;

use kube::api::ListParams;
use serde_json::json;

use common::providers::*;
use common::{Connection, Credentials, Operator, World, cond, condition, eventually};

const CLIENT_ID: &str = "3c90c3cc-0d44-4b50-8888-8dd25736052a";

/// The fakes, with one Infisical identity: CLIENT_ID, secret `right-secret`, reading `/` in
/// environment `prod` of project `proj-1`.
async fn providers() -> Providers {
    let fakes = Providers::start().await;
    fakes.infisical.add_identity(
        CLIENT_ID,
        Identity {
            client_secret: "right-secret".into(),
            project_id: "proj-1".into(),
            environments: vec!["prod".into()],
            paths: vec!["/".into()],
        },
    );
    fakes
}

/// An operator that verifies against the fakes.
async fn operator(w: &World, fakes: &Providers) -> Operator {
    w.operator_with(fakes.options()).await
}

/// A Doppler connection NAME and its Secret NAME holding TOKEN.
async fn doppler(w: &World, name: &str, token: &str, project: &str, config: &str) {
    w.apply(Credentials::secret(name).token(token)).await;
    w.apply(Connection::doppler(name).project(project).config(config))
        .await;
}

/// An Infisical connection NAME and its Secret NAME holding CLIENT_ID and SECRET.
async fn infisical(w: &World, name: &str, secret: &str, project: &str, environment: &str) {
    w.apply(Credentials::secret(name).client(CLIENT_ID, secret))
        .await;
    w.apply(
        Connection::infisical(name)
            .project(project)
            .environment(environment),
    )
    .await;
}

/// Makes the operator reconcile NAME again without changing spec or Secret.
async fn poke(w: &World, name: &str, n: usize) {
    w.patch(
        name,
        json!({ "metadata": { "annotations": { "poke": n.to_string() } } }),
    )
    .await;
}

/// (status, reason) of condition TYPE.
fn status_reason(
    vc: &vault_connection_operator::api::VaultConnection,
    t: &str,
) -> (String, String) {
    let (status, reason, _) = cond(vc, t);
    (status, reason)
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_credentials_are_stored_and_marked_verified_with_two_provider_calls() {
    let Some(w) = World::new("vok").await else {
        return;
    };
    let fakes = providers().await;
    fakes
        .doppler
        .add_doppler_token("dp.st.prd.good", "backend", "prd");
    let _op = operator(&w, &fakes).await;
    doppler(&w, "dp", "dp.st.prd.good", "backend", "prd").await;
    let vc = w
        .wait_condition("dp", "Ready", Some("True"), "Synced")
        .await;
    let verified = condition(&vc, "Verified").expect("a Verified condition");
    assert_eq!(
        (verified.status.as_str(), verified.reason.as_str()),
        ("True", "Verified")
    );
    assert_eq!(verified.observed_generation, vc.metadata.generation);
    assert!(
        verified.message.contains("Doppler accepted"),
        "{}",
        verified.message
    );
    assert!(w.read("dp").await.is_some());
    assert_eq!(fakes.doppler.count(DOPPLER_ME), 1);
    assert_eq!(fakes.doppler.count(DOPPLER_CONFIG), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_credentials_are_never_stored_and_cost_one_login_until_the_secret_changes() {
    let Some(w) = World::new("vrej").await else {
        return;
    };
    let fakes = providers().await;
    let _op = operator(&w, &fakes).await;
    infisical(&w, "inf", "wrong-secret", "proj-1", "prod").await;
    let vc = w
        .wait_condition("inf", "Ready", Some("False"), "CredentialsRejected")
        .await;
    let (_, _, message) = cond(&vc, "Ready");
    assert!(
        message.contains("Infisical rejected")
            && message.contains("POST /api/v1/auth/universal-auth/login answered 401"),
        "{message}"
    );
    assert_eq!(
        status_reason(&vc, "Verified"),
        pair("False", "CredentialsRejected")
    );
    assert!(condition(&vc, "Stalled").is_some(), "a Stalled condition");
    assert_eq!(
        status_reason(&vc, "Stalled"),
        pair("True", "CredentialsRejected"),
        "a person must act"
    );
    assert!(w.read("inf").await.is_none(), "nothing written");

    // Many reconciles later (pokes and 2 s drift checks), still one login.
    for n in 0..5 {
        poke(&w, "inf", n).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        fakes.infisical.count(INFISICAL_LOGIN),
        1,
        "exactly one login attempt"
    );
    assert!(w.read("inf").await.is_none());

    // Rotating the Secret to the right secret fixes it, with one more login.
    w.rotate("inf", "client_secret", "right-secret").await;
    let vc = w
        .wait_condition("inf", "Ready", Some("True"), "Synced")
        .await;
    assert_eq!(cond(&vc, "Verified").0, "True");
    assert!(w.read("inf").await.is_some());
    assert_eq!(fakes.infisical.count(INFISICAL_LOGIN), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_project_config_or_environment_is_rejected_at_the_read_check() {
    let Some(w) = World::new("vscope").await else {
        return;
    };
    let fakes = providers().await;
    fakes
        .doppler
        .add_doppler_token("dp.st.prd.scoped", "backend", "prd");
    let _op = operator(&w, &fakes).await;
    doppler(&w, "dp-config", "dp.st.prd.scoped", "backend", "dev").await;
    infisical(&w, "inf-env", "right-secret", "proj-1", "staging").await;
    infisical(&w, "inf-project", "right-secret", "proj-2", "prod").await;
    for (name, endpoint) in [
        ("dp-config", "GET /v3/configs/config answered 403"),
        ("inf-env", "GET /api/v4/secrets answered 404"),
        ("inf-project", "GET /api/v4/secrets answered 403"),
    ] {
        let vc = w
            .wait_condition(name, "Ready", Some("False"), "CredentialsRejected")
            .await;
        let (_, _, message) = cond(&vc, "Ready");
        assert!(message.contains(endpoint), "{name}: {message}");
        assert!(w.read(name).await.is_none(), "{name}: nothing written");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_provider_does_not_block_the_write_and_is_asked_again_later() {
    let Some(w) = World::new("v429").await else {
        return;
    };
    let fakes = providers().await;
    fakes
        .doppler
        .add_doppler_token("dp.st.prd.busy", "backend", "prd");
    fakes.doppler.fail_next(429, 1);
    let _op = operator(&w, &fakes).await;
    doppler(&w, "dp", "dp.st.prd.busy", "backend", "prd").await;
    let vc = w
        .wait_condition("dp", "Ready", Some("True"), "Synced")
        .await;
    assert!(w.read("dp").await.is_some(), "written while unverified");
    let (status, reason, _) = cond(&vc, "Verified");
    if status == "Unknown" {
        assert_eq!(reason, "ProviderUnavailable");
    }
    w.wait_condition("dp", "Verified", Some("True"), "Verified")
        .await;
    assert_eq!(
        fakes.doppler.count(DOPPLER_ME),
        2,
        "the 429, then the retry"
    );
    assert_eq!(fakes.doppler.count(DOPPLER_CONFIG), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_provider_does_not_block_the_write_and_leaves_verified_unknown() {
    let Some(w) = World::new("vdown").await else {
        return;
    };
    let fakes = providers().await;
    let options = fakes
        .options()
        .env("VCO_VERIFY_INFISICAL_URL", common::fake_ssm::nowhere())
        .env("VCO_VERIFY_RETRY_INTERVAL", "1h");
    let _op = w.operator_with(options).await;
    infisical(&w, "inf", "right-secret", "proj-1", "prod").await;
    let vc = w
        .wait_condition("inf", "Ready", Some("True"), "Synced")
        .await;
    let vc = if condition(&vc, "Verified").is_some() {
        vc
    } else {
        w.wait_condition("inf", "Verified", Some("Unknown"), "ProviderUnavailable")
            .await
    };
    let (status, reason, message) = cond(&vc, "Verified");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "ProviderUnavailable")
    );
    assert!(message.contains("could not be reached"), "{message}");
    assert!(w.read("inf").await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn one_password_is_stored_with_verification_not_available() {
    let Some(w) = World::new("vop").await else {
        return;
    };
    let fakes = providers().await;
    let _op = operator(&w, &fakes).await;
    w.one_password("op", "ops_abc").await;
    let vc = w
        .wait_condition("op", "Ready", Some("True"), "Synced")
        .await;
    let (status, reason, message) = cond(&vc, "Verified");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "VerificationNotSupported")
    );
    assert!(message.contains("not available for 1Password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_checks_and_restarts_never_ask_the_provider_again() {
    let Some(w) = World::new("vrestart").await else {
        return;
    };
    let fakes = providers().await;
    fakes
        .doppler
        .add_doppler_token("dp.st.prd.kept", "backend", "prd");
    let mut op = operator(&w, &fakes).await;
    doppler(&w, "dp", "dp.st.prd.kept", "backend", "prd").await;
    infisical(&w, "inf", "wrong-secret", "proj-1", "prod").await;
    w.wait_condition("dp", "Verified", Some("True"), "Verified")
        .await;
    w.wait_condition("inf", "Ready", Some("False"), "CredentialsRejected")
        .await;
    let calls = || (fakes.doppler.calls().len(), fakes.infisical.calls().len());
    let before = calls();
    assert_eq!(before, (2, 1));
    // Several 2 s drift checks.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        op.logs().contains("reconciled"),
        "the operator kept reconciling"
    );
    op.kill();
    let op = operator(&w, &fakes).await;
    // The new process reconciles both connections, then its drift sweeps (every 2 s) check the
    // parameter in SSM without reconciling again.
    eventually(20, "the restarted operator to reconcile", || async {
        (op.logs().matches("\"reconciled\"").count() >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        calls(),
        before,
        "no provider call after drift checks and a restart"
    );
    let vc = w.vcs().get("dp").await.expect("dp");
    assert_eq!(cond(&vc, "Verified").0, "True");
    let vc = w.vcs().get("inf").await.expect("inf");
    assert_eq!(cond(&vc, "Ready").1, "CredentialsRejected");
}

/// Distinctive credential values, each sent through a verification path.
const CANARIES: [&str; 4] = [
    "CANARYw1accepted",
    "CANARYw2rejected",
    "CANARYw3wrongenv",
    "CANARYw4ratelimit",
];

#[tokio::test(flavor = "multi_thread")]
async fn no_credential_reaches_status_events_or_trace_logs_on_any_verification_path() {
    let Some(w) = World::new("vleak").await else {
        return;
    };
    let fakes = providers().await;
    let id = |n: u8| format!("3c90c3cc-0d44-4b50-8888-00000000000{n}");
    for (n, secret) in [(0, CANARIES[0]), (2, CANARIES[2])] {
        fakes.infisical.add_identity(
            &id(n),
            Identity {
                client_secret: secret.into(),
                project_id: "proj-1".into(),
                environments: vec!["prod".into()],
                paths: vec!["/".into()],
            },
        );
    }
    let busy = format!("dp.st.prd.{}", CANARIES[3]);
    fakes.doppler.add_doppler_token(&busy, "p", "c");
    fakes.doppler.fail_next(429, 1);
    let op = w
        .operator_with(
            fakes
                .options()
                .env("VCO_LOG_LEVEL", "trace,vault_connection_operator=trace"),
        )
        .await;
    // Accepted; rejected at login (the fake echoes the secret in its 401 body); rejected at the
    // read; rate limited, then accepted.
    for (name, n, secret, env) in [
        ("ok", 0, CANARIES[0], "prod"),
        ("bad", 9, CANARIES[1], "prod"),
        ("env", 2, CANARIES[2], "dev"),
    ] {
        w.apply(Credentials::secret(name).client(&id(n), secret))
            .await;
        w.apply(
            Connection::infisical(name)
                .project("proj-1")
                .environment(env),
        )
        .await;
    }
    doppler(&w, "busy", &busy, "p", "c").await;
    w.wait_condition("ok", "Verified", Some("True"), "Verified")
        .await;
    w.wait_condition("bad", "Ready", Some("False"), "CredentialsRejected")
        .await;
    w.wait_condition("env", "Ready", Some("False"), "CredentialsRejected")
        .await;
    w.wait_condition("busy", "Verified", Some("True"), "Verified")
        .await;

    let seen = format!("{:?}{:?}", fakes.infisical.calls(), fakes.doppler.calls());
    for c in CANARIES {
        assert!(seen.contains(c), "{c} was sent to its provider");
    }
    let statuses: Vec<_> = w
        .vcs()
        .list(&ListParams::default())
        .await
        .expect("list connections")
        .items
        .into_iter()
        .map(|vc| vc.status)
        .collect();
    let events = w.all_events().await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("CredentialsRejected")),
        "the rejection was published as an event"
    );
    let logs = op.logs();
    assert!(logs.contains("\"level\":\"TRACE\""), "logs at trace level");
    assert!(
        logs.contains("provider answered"),
        "verification calls were logged"
    );
    for (channel, text) in [
        ("status", serde_json::to_string(&statuses).expect("JSON")),
        ("events", serde_json::to_string(&events).expect("JSON")),
        ("operator logs", logs),
        ("/metrics", op.metrics_text().await),
    ] {
        for c in CANARIES {
            assert!(!text.contains(c), "{c} leaked into {channel}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reverify_request_asks_the_provider_again_after_a_rejection() {
    let Some(w) = World::new("vagain").await else {
        return;
    };
    let fakes = providers().await;
    let _op = operator(&w, &fakes).await;
    // The provider refuses a token it does not know yet (it was wrong: the token is new).
    doppler(&w, "dp", "dp.st.prd.fresh", "backend", "prd").await;
    w.wait_condition("dp", "Ready", Some("False"), "CredentialsRejected")
        .await;
    assert_eq!(fakes.doppler.count(DOPPLER_ME), 1);
    fakes
        .doppler
        .add_doppler_token("dp.st.prd.fresh", "backend", "prd");
    poke(&w, "dp", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fakes.doppler.count(DOPPLER_ME),
        1,
        "a refusal is final for these credentials"
    );

    // Someone allowed to edit the connection asks for another check.
    let again = |value: &'static str| json!({"metadata": {"annotations": {"vaultconnections.io/reverify": value}}});
    w.patch("dp", again("after-the-fix")).await;
    w.wait_condition("dp", "Ready", Some("True"), "Synced")
        .await;
    assert_eq!(fakes.doppler.count(DOPPLER_ME), 2, "asked once more");
    assert!(w.read("dp").await.is_some(), "stored once accepted");
    // The same request is answered: no third call.
    poke(&w, "dp", 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fakes.doppler.count(DOPPLER_ME), 2);
}
