//! Credential verification in the operator, end to end: an operator process against the real API
//! server, the SSM emulator and the fake providers (tests/fake_providers). Each test checks what
//! is written to SSM, the `Verified` and `Ready` conditions, and how many calls each provider
//! received — the policy: a rejected credential is never stored and costs one attempt until the
//! Secret or the spec changes; an unavailable provider does not block the write; an answer is
//! never asked for again for the same credentials, across drift checks and restarts.

mod common;
mod fake_providers;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use vault_connection_operator::api::VaultConnection;

use common::{Operator, OperatorOptions, TestEnv, eventually, install_crd, namespace, unique};
use fake_providers::*;

const CLIENT_ID: &str = "3c90c3cc-0d44-4b50-8888-8dd25736052a";

struct World {
    env: TestEnv,
    client: kube::Client,
    ssm: aws_sdk_ssm::Client,
    ns: String,
    prefix: String,
    doppler: Fake,
    infisical: Fake,
}

impl World {
    async fn new(name: &str) -> World {
        let env = TestEnv::get();
        let client = env.kube().await;
        install_crd(&client).await;
        let ns = namespace(&client, name).await;
        let ssm = env.ssm().await;
        let infisical = Fake::infisical().await;
        infisical.add_identity(
            CLIENT_ID,
            Identity {
                client_secret: "right-secret".into(),
                project_id: "proj-1".into(),
                environments: vec!["prod".into()],
                paths: vec!["/".into()],
            },
        );
        World {
            env,
            client,
            ssm,
            ns,
            prefix: format!("/{}", unique("v")),
            doppler: Fake::doppler().await,
            infisical,
        }
    }

    fn options(&self, extra: &[(&str, &str)]) -> OperatorOptions {
        let mut env = vec![
            ("VCO_VERIFY_CREDENTIALS".to_owned(), "true".to_owned()),
            (
                "VCO_VERIFY_DOPPLER_URL".to_owned(),
                self.doppler.url.clone(),
            ),
            (
                "VCO_VERIFY_INFISICAL_URL".to_owned(),
                self.infisical.url.clone(),
            ),
            (
                "VCO_VERIFY_ALLOW_INSECURE_LOOPBACK".to_owned(),
                "true".to_owned(),
            ),
            ("VCO_VERIFY_TIMEOUT".to_owned(), "2s".to_owned()),
            ("VCO_VERIFY_RETRY_INTERVAL".to_owned(), "1s".to_owned()),
            ("VCO_DRIFT_CHECK_INTERVAL".to_owned(), "2s".to_owned()),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        OperatorOptions { env }
    }

    async fn operator(&self, extra: &[(&str, &str)]) -> Operator {
        Operator::start(&self.env, &self.ns, &self.prefix, &self.options(extra)).await
    }

    fn vcs(&self) -> Api<VaultConnection> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn doppler_connection(&self, name: &str, token: &str, project: &str, config: &str) {
        self.env.apply(
            &self.ns,
            &format!(
                r#"apiVersion: v1
kind: Secret
metadata: {{name: {name}, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{access_token: "{token}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: {name}}}
spec:
  vaultType: doppler
  credentialsSecretRef: {{name: {name}}}
  doppler: {{project: {project}, config: {config}}}
"#
            ),
        );
    }

    fn infisical_connection(&self, name: &str, secret: &str, project: &str, environment: &str) {
        self.env.apply(
            &self.ns,
            &format!(
                r#"apiVersion: v1
kind: Secret
metadata: {{name: {name}, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{client_id: "{CLIENT_ID}", client_secret: "{secret}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: {name}}}
spec:
  vaultType: infisical
  credentialsSecretRef: {{name: {name}}}
  infisical: {{projectId: {project}, environment: {environment}}}
"#
            ),
        );
    }

    /// Waits until `condition` of `name` has `status` and `reason`; returns the object.
    async fn wait_condition(
        &self,
        name: &str,
        condition: &str,
        status: &str,
        reason: &str,
    ) -> VaultConnection {
        let api = self.vcs();
        eventually(
            30,
            &format!("{name}: {condition}={status} ({reason})"),
            || async {
                let vc = api.get(name).await.ok()?;
                let c = condition_of(&vc, condition)?;
                (c.status == status && c.reason == reason).then_some(vc)
            },
        )
        .await
    }

    async fn parameter_exists(&self, name: &str) -> bool {
        self.ssm
            .get_parameter()
            .name(format!("{}/default/{}/{name}", self.prefix, self.ns))
            .send()
            .await
            .is_ok()
    }

    async fn rotate(&self, secret: &str, key: &str, value: &str) {
        let patch = serde_json::json!({ "stringData": { key: value } });
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .patch(secret, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch secret");
    }

    /// Makes the operator reconcile `name` again without changing spec or Secret.
    async fn poke(&self, name: &str, n: usize) {
        let patch = serde_json::json!({ "metadata": { "annotations": { "poke": n.to_string() } } });
        self.vcs()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate");
    }
}

fn condition_of<'a>(vc: &'a VaultConnection, t: &str) -> Option<&'a Condition> {
    vc.status.as_ref()?.conditions.iter().find(|c| c.type_ == t)
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_credentials_are_stored_and_marked_verified_with_two_provider_calls() {
    let w = World::new("vok").await;
    w.doppler
        .add_doppler_token("dp.st.prd.good", "backend", "prd");
    let _op = w.operator(&[]).await;
    w.doppler_connection("dp", "dp.st.prd.good", "backend", "prd");
    let vc = w.wait_condition("dp", "Ready", "True", "Synced").await;
    let verified = condition_of(&vc, "Verified").expect("a Verified condition");
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
    assert!(w.parameter_exists("dp").await);
    assert_eq!(w.doppler.count(DOPPLER_ME), 1);
    assert_eq!(w.doppler.count(DOPPLER_CONFIG), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_credentials_are_never_stored_and_cost_one_login_until_the_secret_changes() {
    let w = World::new("vrej").await;
    let _op = w.operator(&[]).await;
    w.infisical_connection("inf", "wrong-secret", "proj-1", "prod");
    let vc = w
        .wait_condition("inf", "Ready", "False", "CredentialsRejected")
        .await;
    let ready = condition_of(&vc, "Ready").unwrap();
    assert!(
        ready.message.contains("Infisical rejected")
            && ready
                .message
                .contains("POST /api/v1/auth/universal-auth/login answered 401"),
        "{}",
        ready.message
    );
    let verified = condition_of(&vc, "Verified").unwrap();
    assert_eq!(
        (verified.status.as_str(), verified.reason.as_str()),
        ("False", "CredentialsRejected")
    );
    let stalled = condition_of(&vc, "Stalled").expect("a Stalled condition");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "CredentialsRejected"),
        "a person must act"
    );
    assert!(!w.parameter_exists("inf").await, "nothing written");

    // Many reconciles later (pokes and 2 s drift checks), still one login.
    for n in 0..5 {
        w.poke("inf", n).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        w.infisical.count(INFISICAL_LOGIN),
        1,
        "exactly one login attempt"
    );
    assert!(!w.parameter_exists("inf").await);

    // Rotating the Secret to the right secret fixes it, with one more login.
    w.rotate("inf", "client_secret", "right-secret").await;
    let vc = w.wait_condition("inf", "Ready", "True", "Synced").await;
    assert_eq!(condition_of(&vc, "Verified").unwrap().status, "True");
    assert!(w.parameter_exists("inf").await);
    assert_eq!(w.infisical.count(INFISICAL_LOGIN), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_project_config_or_environment_is_rejected_at_the_read_check() {
    let w = World::new("vscope").await;
    w.doppler
        .add_doppler_token("dp.st.prd.scoped", "backend", "prd");
    let _op = w.operator(&[]).await;
    w.doppler_connection("dp-config", "dp.st.prd.scoped", "backend", "dev");
    w.infisical_connection("inf-env", "right-secret", "proj-1", "staging");
    w.infisical_connection("inf-project", "right-secret", "proj-2", "prod");
    for (name, endpoint) in [
        ("dp-config", "GET /v3/configs/config answered 403"),
        ("inf-env", "GET /api/v4/secrets answered 404"),
        ("inf-project", "GET /api/v4/secrets answered 403"),
    ] {
        let vc = w
            .wait_condition(name, "Ready", "False", "CredentialsRejected")
            .await;
        let message = &condition_of(&vc, "Ready").unwrap().message;
        assert!(message.contains(endpoint), "{name}: {message}");
        assert!(!w.parameter_exists(name).await, "{name}: nothing written");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_provider_does_not_block_the_write_and_is_asked_again_later() {
    let w = World::new("v429").await;
    w.doppler
        .add_doppler_token("dp.st.prd.busy", "backend", "prd");
    w.doppler.fail_next(429, 1);
    let _op = w.operator(&[]).await;
    w.doppler_connection("dp", "dp.st.prd.busy", "backend", "prd");
    let vc = w.wait_condition("dp", "Ready", "True", "Synced").await;
    assert!(w.parameter_exists("dp").await, "written while unverified");
    let verified = condition_of(&vc, "Verified").unwrap();
    if verified.status == "Unknown" {
        assert_eq!(verified.reason, "ProviderUnavailable");
    }
    w.wait_condition("dp", "Verified", "True", "Verified").await;
    assert_eq!(w.doppler.count(DOPPLER_ME), 2, "the 429, then the retry");
    assert_eq!(w.doppler.count(DOPPLER_CONFIG), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_provider_does_not_block_the_write_and_leaves_verified_unknown() {
    let w = World::new("vdown").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let _op = w
        .operator(&[
            ("VCO_VERIFY_INFISICAL_URL", &nowhere),
            ("VCO_VERIFY_RETRY_INTERVAL", "1h"),
        ])
        .await;
    w.infisical_connection("inf", "right-secret", "proj-1", "prod");
    let vc = w.wait_condition("inf", "Ready", "True", "Synced").await;
    let vc = if condition_of(&vc, "Verified").is_some() {
        vc
    } else {
        w.wait_condition("inf", "Verified", "Unknown", "ProviderUnavailable")
            .await
    };
    let verified = condition_of(&vc, "Verified").unwrap();
    assert_eq!(
        (verified.status.as_str(), verified.reason.as_str()),
        ("Unknown", "ProviderUnavailable")
    );
    assert!(
        verified.message.contains("could not be reached"),
        "{}",
        verified.message
    );
    assert!(w.parameter_exists("inf").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_password_is_stored_with_verification_not_available() {
    let w = World::new("vop").await;
    let _op = w.operator(&[]).await;
    w.env.apply(
        &w.ns,
        r#"apiVersion: v1
kind: Secret
metadata: {name: op, labels: {vaultconnections.io/credentials: "true"}}
stringData: {access_token: "ops_abc"}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: op}
spec: {vaultType: onepassword, credentialsSecretRef: {name: op}}
"#,
    );
    let vc = w.wait_condition("op", "Ready", "True", "Synced").await;
    let verified = condition_of(&vc, "Verified").unwrap();
    assert_eq!(
        (verified.status.as_str(), verified.reason.as_str()),
        ("Unknown", "VerificationNotSupported")
    );
    assert!(verified.message.contains("not available for 1Password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_checks_and_restarts_never_ask_the_provider_again() {
    let w = World::new("vrestart").await;
    w.doppler
        .add_doppler_token("dp.st.prd.kept", "backend", "prd");
    let mut op = w.operator(&[]).await;
    w.doppler_connection("dp", "dp.st.prd.kept", "backend", "prd");
    w.infisical_connection("inf", "wrong-secret", "proj-1", "prod");
    w.wait_condition("dp", "Verified", "True", "Verified").await;
    w.wait_condition("inf", "Ready", "False", "CredentialsRejected")
        .await;
    let before = (w.doppler.calls().len(), w.infisical.calls().len());
    assert_eq!(before, (2, 1));
    // Several 2 s drift checks.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        op.logs().contains("reconciled"),
        "the operator kept reconciling"
    );
    op.kill();
    let op = w.operator(&[]).await;
    // The new process reconciles both connections, then its drift sweeps (every 2 s) check the
    // parameter in SSM without reconciling again.
    eventually(20, "the restarted operator to reconcile", || async {
        op.logs()
            .matches("\"reconciled\"")
            .count()
            .ge(&2)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        (w.doppler.calls().len(), w.infisical.calls().len()),
        before,
        "no provider call after drift checks and a restart"
    );
    let vc = w.vcs().get("dp").await.unwrap();
    assert_eq!(condition_of(&vc, "Verified").unwrap().status, "True");
    let vc = w.vcs().get("inf").await.unwrap();
    assert_eq!(
        condition_of(&vc, "Ready").unwrap().reason,
        "CredentialsRejected"
    );
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
    let w = World::new("vleak").await;
    let id = |n: u8| format!("3c90c3cc-0d44-4b50-8888-00000000000{n}");
    for (n, secret) in [(0, CANARIES[0]), (2, CANARIES[2])] {
        w.infisical.add_identity(
            &id(n),
            Identity {
                client_secret: secret.into(),
                project_id: "proj-1".into(),
                environments: vec!["prod".into()],
                paths: vec!["/".into()],
            },
        );
    }
    w.doppler
        .add_doppler_token(&format!("dp.st.prd.{}", CANARIES[3]), "p", "c");
    w.doppler.fail_next(429, 1);
    let op = w
        .operator(&[("VCO_LOG_LEVEL", "trace,vault_connection_operator=trace")])
        .await;
    let infisical = |name: &str, id: &str, secret: &str, env: &str| {
        format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: {name}, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{client_id: "{id}", client_secret: "{secret}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: {name}}}
spec:
  vaultType: infisical
  credentialsSecretRef: {{name: {name}}}
  infisical: {{projectId: proj-1, environment: {env}}}
"#
        )
    };
    // Accepted; rejected at login (the fake echoes the secret in its 401 body); rejected at the
    // read; rate limited, then accepted.
    w.env
        .apply(&w.ns, &infisical("ok", &id(0), CANARIES[0], "prod"));
    w.env
        .apply(&w.ns, &infisical("bad", &id(9), CANARIES[1], "prod"));
    w.env
        .apply(&w.ns, &infisical("env", &id(2), CANARIES[2], "dev"));
    w.doppler_connection("busy", &format!("dp.st.prd.{}", CANARIES[3]), "p", "c");
    w.wait_condition("ok", "Verified", "True", "Verified").await;
    w.wait_condition("bad", "Ready", "False", "CredentialsRejected")
        .await;
    w.wait_condition("env", "Ready", "False", "CredentialsRejected")
        .await;
    w.wait_condition("busy", "Verified", "True", "Verified")
        .await;

    let seen = format!("{:?}{:?}", w.infisical.calls(), w.doppler.calls());
    for c in CANARIES {
        assert!(seen.contains(c), "{c} was sent to its provider");
    }
    let statuses: Vec<_> = w
        .vcs()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|vc| vc.status)
        .collect();
    let events: Api<Event> = Api::namespaced(w.client.clone(), &w.ns);
    let events = events.list(&ListParams::default()).await.unwrap().items;
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
        ("status", serde_json::to_string(&statuses).unwrap()),
        ("events", serde_json::to_string(&events).unwrap()),
        ("operator logs", logs),
        ("/metrics", op.metrics_text().await),
    ] {
        for c in CANARIES {
            assert!(!text.contains(c), "{c} leaked into {channel}");
        }
    }
}
