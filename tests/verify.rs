//! Credential verification against local fake providers (tests/common/providers.rs): each verdict —
//! accepted, rejected at each check, unavailable for each cause, not supported — the calls each
//! one makes, that credentials go nowhere but the configured host, and the leak canary: no
//! credential reaches a verdict message or any log line, even at trace level for every crate,
//! although the fakes echo credentials in their bodies.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::providers::*;
use secrecy::SecretString;
use vault_connection_operator::api::VaultType;
use vault_connection_operator::providers::{doppler, infisical};
use vault_connection_operator::validation::Provider;
use vault_connection_operator::verify::{Cause, Settings, Verdict, Verifier};

/// Every log line of this test binary, at trace level for every crate.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("trace")
            .json()
            .with_writer(move || Writer(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buffer
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn verifier(doppler: &str, infisical: &str) -> Verifier {
    logs();
    Verifier::new(&Settings {
        doppler_url: doppler.into(),
        infisical_url: infisical.into(),
        timeout: Duration::from_millis(800),
        allow_insecure_loopback: true,
    })
    .expect("loopback URLs are allowed with the test flag")
}

fn doppler(token: &str, project: &str, config: &str) -> Provider {
    Provider::Doppler {
        access_token: SecretString::from(token),
        project: project.into(),
        config: config.into(),
    }
}

fn infisical(id: &str, secret: &str, project: &str, env: &str, path: &str) -> Provider {
    Provider::Infisical {
        client_id: SecretString::from(id),
        client_secret: SecretString::from(secret),
        project_id: project.into(),
        environment: env.into(),
        secret_path: path.into(),
    }
}

const CLIENT_ID: &str = "3c90c3cc-0d44-4b50-8888-8dd25736052a";

async fn infisical_fake(secret: &str) -> Fake {
    let fake = Fake::infisical().await;
    fake.add_identity(
        CLIENT_ID,
        Identity {
            client_secret: secret.into(),
            project_id: "proj-1".into(),
            environments: vec!["prod".into()],
            paths: vec!["/".into(), "/app".into()],
        },
    );
    fake
}

/// A URL on loopback where nothing listens.
fn nothing_listens() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

// ---- Doppler ------------------------------------------------------------------------------

#[tokio::test]
async fn doppler_accepts_a_service_token_for_its_own_project_and_config() {
    let fake = Fake::doppler().await;
    fake.add_doppler_token("dp.st.prd.ok1", "backend", "prd");
    let v = verifier(&fake.url, &nothing_listens());
    let verdict = v.verify(&doppler("dp.st.prd.ok1", "backend", "prd")).await;
    assert_eq!(
        verdict,
        Verdict::Accepted {
            provider: VaultType::Doppler
        }
    );
    let calls = fake.calls();
    let paths: Vec<_> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str()))
        .collect();
    assert_eq!(paths, [("GET", DOPPLER_ME), ("GET", DOPPLER_CONFIG)]);
    assert!(
        calls
            .iter()
            .all(|c| c.bearer.as_deref() == Some("dp.st.prd.ok1"))
    );
    assert_eq!(
        calls[1].query.get("project").map(String::as_str),
        Some("backend")
    );
    assert_eq!(
        calls[1].query.get("config").map(String::as_str),
        Some("prd")
    );
}

#[tokio::test]
async fn doppler_rejects_a_revoked_token_at_the_token_check_and_asks_nothing_more() {
    let fake = Fake::doppler().await;
    let v = verifier(&fake.url, &nothing_listens());
    let verdict = v
        .verify(&doppler("dp.st.prd.revoked", "backend", "prd"))
        .await;
    assert_eq!(
        verdict,
        Verdict::Rejected {
            provider: VaultType::Doppler,
            check: doppler::TOKEN,
            status: 401
        }
    );
    assert_eq!(fake.calls().len(), 1);
    assert_eq!(verdict.reason(), "CredentialsRejected");
}

#[tokio::test]
async fn doppler_rejects_a_token_for_another_project_or_config_at_the_config_check() {
    let fake = Fake::doppler().await;
    fake.add_doppler_token("dp.st.prd.scoped", "backend", "prd");
    let v = verifier(&fake.url, &nothing_listens());
    for (project, config) in [("frontend", "prd"), ("backend", "dev")] {
        let verdict = v
            .verify(&doppler("dp.st.prd.scoped", project, config))
            .await;
        assert_eq!(
            verdict,
            Verdict::Rejected {
                provider: VaultType::Doppler,
                check: doppler::CONFIG,
                status: 403
            },
            "{project}/{config}"
        );
        assert!(
            verdict.message().contains("spec.doppler"),
            "{}",
            verdict.message()
        );
    }
}

// ---- Infisical ----------------------------------------------------------------------------

#[tokio::test]
async fn infisical_logs_in_once_and_reads_the_named_project_environment_and_path() {
    let fake = infisical_fake("secret-ok").await;
    let v = verifier(&nothing_listens(), &fake.url);
    let verdict = v
        .verify(&infisical(CLIENT_ID, "secret-ok", "proj-1", "prod", "/app"))
        .await;
    assert_eq!(
        verdict,
        Verdict::Accepted {
            provider: VaultType::Infisical
        }
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    let login = &calls[0];
    assert_eq!(
        (login.method.as_str(), login.path.as_str()),
        ("POST", INFISICAL_LOGIN)
    );
    let body = login.body.as_ref().expect("JSON login body");
    assert_eq!(body["clientId"], CLIENT_ID);
    assert_eq!(body["clientSecret"], "secret-ok");
    assert_eq!(login.bearer, None);
    let read = &calls[1];
    assert_eq!(
        (read.method.as_str(), read.path.as_str()),
        ("GET", INFISICAL_SECRETS)
    );
    assert!(
        read.bearer
            .as_deref()
            .is_some_and(|t| t.starts_with("eyJ.fake."))
    );
    for (k, want) in [
        ("projectId", "proj-1"),
        ("environment", "prod"),
        ("secretPath", "/app"),
        ("viewSecretValue", "false"),
    ] {
        assert_eq!(read.query.get(k).map(String::as_str), Some(want), "{k}");
    }
}

#[tokio::test]
async fn infisical_rejects_a_wrong_client_secret_after_exactly_one_login_attempt() {
    let fake = infisical_fake("secret-right").await;
    let v = verifier(&nothing_listens(), &fake.url);
    let verdict = v
        .verify(&infisical(CLIENT_ID, "secret-wrong", "proj-1", "prod", "/"))
        .await;
    assert_eq!(
        verdict,
        Verdict::Rejected {
            provider: VaultType::Infisical,
            check: infisical::LOGIN,
            status: 401
        }
    );
    assert_eq!(
        fake.count(INFISICAL_LOGIN),
        1,
        "a refused login is never repeated"
    );
    assert_eq!(fake.count(INFISICAL_SECRETS), 0);
}

#[tokio::test]
async fn infisical_rejects_a_wrong_project_environment_or_path_at_the_read_check() {
    let fake = infisical_fake("secret-ok").await;
    let v = verifier(&nothing_listens(), &fake.url);
    for (project, env, path, status) in [
        ("proj-other", "prod", "/", 403),
        ("proj-1", "staging", "/", 404),
        ("proj-1", "prod", "/missing", 404),
    ] {
        let verdict = v
            .verify(&infisical(CLIENT_ID, "secret-ok", project, env, path))
            .await;
        assert_eq!(
            verdict,
            Verdict::Rejected {
                provider: VaultType::Infisical,
                check: infisical::READ,
                status
            },
            "{project} {env} {path}"
        );
    }
}

// ---- transient ----------------------------------------------------------------------------

#[tokio::test]
async fn rate_limiting_is_transient_and_the_next_attempt_succeeds() {
    let fake = Fake::doppler().await;
    fake.add_doppler_token("dp.st.prd.busy", "p", "c");
    fake.fail_next(429, 1);
    let v = verifier(&fake.url, &nothing_listens());
    let first = v.verify(&doppler("dp.st.prd.busy", "p", "c")).await;
    assert_eq!(
        first,
        Verdict::Unavailable {
            provider: VaultType::Doppler,
            check: doppler::TOKEN,
            cause: Cause::RateLimited
        }
    );
    assert!(first.is_transient());
    assert_eq!(first.condition_status(), "Unknown");
    let second = v.verify(&doppler("dp.st.prd.busy", "p", "c")).await;
    assert_eq!(
        second,
        Verdict::Accepted {
            provider: VaultType::Doppler
        }
    );
    assert_eq!(
        fake.calls().len(),
        3,
        "one refused by the rate limit, then two"
    );
}

#[tokio::test]
async fn server_errors_and_an_unreachable_provider_are_transient() {
    let fake = infisical_fake("s").await;
    fake.set_outage(Outage::Status(503));
    let v = verifier(&nothing_listens(), &fake.url);
    let verdict = v
        .verify(&infisical(CLIENT_ID, "s", "proj-1", "prod", "/"))
        .await;
    assert_eq!(
        verdict,
        Verdict::Unavailable {
            provider: VaultType::Infisical,
            check: infisical::LOGIN,
            cause: Cause::ServerError(503)
        }
    );

    let down = verifier(&nothing_listens(), &nothing_listens());
    let verdict = down
        .verify(&infisical(CLIENT_ID, "s", "proj-1", "prod", "/"))
        .await;
    assert_eq!(
        verdict,
        Verdict::Unavailable {
            provider: VaultType::Infisical,
            check: infisical::LOGIN,
            cause: Cause::Unreachable
        }
    );

    let dropping = Fake::doppler().await;
    dropping.set_outage(Outage::Drop);
    let v = verifier(&dropping.url, &nothing_listens());
    let verdict = v.verify(&doppler("dp.st.prd.x", "p", "c")).await;
    assert!(
        matches!(
            verdict,
            Verdict::Unavailable {
                cause: Cause::Unreachable,
                ..
            }
        ),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn a_provider_that_never_answers_times_out_within_the_deadline() {
    let fake = Fake::doppler().await;
    fake.set_outage(Outage::Hang);
    let v = verifier(&fake.url, &nothing_listens());
    let started = Instant::now();
    let verdict = v.verify(&doppler("dp.st.prd.slow", "p", "c")).await;
    assert_eq!(
        verdict,
        Verdict::Unavailable {
            provider: VaultType::Doppler,
            check: doppler::TOKEN,
            cause: Cause::Timeout
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_success_that_is_not_the_documented_response_is_not_an_acceptance() {
    let fake = Fake::doppler().await;
    fake.add_doppler_token("dp.st.prd.portal", "p", "c");
    fake.answer_garbage();
    let v = verifier(&fake.url, &nothing_listens());
    let verdict = v.verify(&doppler("dp.st.prd.portal", "p", "c")).await;
    assert_eq!(
        verdict,
        Verdict::Unavailable {
            provider: VaultType::Doppler,
            check: doppler::TOKEN,
            cause: Cause::UnexpectedBody
        }
    );
}

// ---- where credentials go -----------------------------------------------------------------

#[tokio::test]
async fn redirects_are_not_followed_so_credentials_reach_only_the_configured_host() {
    let elsewhere = Fake::infisical().await;
    let fake = Fake::infisical().await;
    fake.redirect_to(&elsewhere.url);
    let v = verifier(&nothing_listens(), &fake.url);
    let verdict = v
        .verify(&infisical(CLIENT_ID, "s", "proj-1", "prod", "/"))
        .await;
    assert_eq!(
        verdict,
        Verdict::Unavailable {
            provider: VaultType::Infisical,
            check: infisical::LOGIN,
            cause: Cause::UnexpectedStatus(307)
        }
    );
    assert!(
        elsewhere.calls().is_empty(),
        "nothing was sent to the redirect target"
    );
}

#[tokio::test]
async fn each_provider_gets_only_its_own_credentials() {
    let d = Fake::doppler().await;
    let i = infisical_fake("s").await;
    d.add_doppler_token("dp.st.prd.own", "p", "c");
    let v = verifier(&d.url, &i.url);
    v.verify(&doppler("dp.st.prd.own", "p", "c")).await;
    v.verify(&infisical(CLIENT_ID, "s", "proj-1", "prod", "/"))
        .await;
    assert!(d.calls().iter().all(|c| c.path.starts_with("/v3/")));
    assert!(d.calls().iter().all(|c| c.body.is_none()));
    assert!(i.calls().iter().all(|c| c.path.starts_with("/api/")));
    assert!(
        i.calls()
            .iter()
            .all(|c| c.bearer.as_deref() != Some("dp.st.prd.own")),
        "the Doppler token never reaches Infisical"
    );
}

#[test]
fn plain_http_is_refused_without_the_test_flag_and_to_non_loopback_hosts() {
    let settings = |url: &str, insecure| Settings {
        doppler_url: url.into(),
        infisical_url: "https://app.infisical.com".into(),
        timeout: Duration::from_secs(1),
        allow_insecure_loopback: insecure,
    };
    let Err(e) = Verifier::new(&settings("http://127.0.0.1:9", false)) else {
        panic!("plain http accepted without the test flag");
    };
    assert!(e.starts_with("--verify-doppler-url: must use https"), "{e}");
    assert!(Verifier::new(&settings("http://api.doppler.com", true)).is_err());
    assert!(Verifier::new(&settings("https://api.doppler.com", false)).is_ok());
}

#[tokio::test]
async fn one_password_is_not_supported_and_calls_nothing() {
    let d = Fake::doppler().await;
    let i = Fake::infisical().await;
    let v = verifier(&d.url, &i.url);
    let verdict = v
        .verify(&Provider::OnePassword {
            access_token: SecretString::from("ops_x"),
        })
        .await;
    assert_eq!(
        verdict,
        Verdict::NotSupported {
            provider: VaultType::OnePassword
        }
    );
    assert_eq!(verdict.condition_status(), "Unknown");
    assert!(
        verdict
            .message()
            .contains("verification is not available for 1Password")
    );
    assert!(d.calls().is_empty() && i.calls().is_empty());
}

// ---- the leak canary ----------------------------------------------------------------------

const CANARIES: [&str; 4] = [
    "CANARYv1dopplertok",
    "CANARYv2clientsecret",
    "CANARYv3wrongsecret",
    "CANARYv4dopplerbad",
];

#[tokio::test]
async fn no_credential_reaches_a_verdict_or_a_log_line_even_when_the_provider_echoes_it() {
    let d = Fake::doppler().await;
    let i = infisical_fake(CANARIES[1]).await;
    let good_doppler = format!("dp.st.prd.{}", CANARIES[0]);
    d.add_doppler_token(&good_doppler, "p", "c");
    let v = verifier(&d.url, &i.url);
    let cases = [
        doppler(&good_doppler, "p", "c"),
        doppler(&good_doppler, "p", "other"),
        doppler(&format!("dp.st.prd.{}", CANARIES[3]), "p", "c"),
        infisical(CLIENT_ID, CANARIES[1], "proj-1", "prod", "/"),
        infisical(CLIENT_ID, CANARIES[1], "proj-x", "prod", "/"),
        infisical(CLIENT_ID, CANARIES[2], "proj-1", "prod", "/"),
    ];
    let mut text = String::new();
    for provider in &cases {
        let verdict = v.verify(provider).await;
        text.push_str(&format!("{}\n{verdict:?}\n", verdict.message()));
    }
    i.fail_next(429, 1);
    let verdict = v.verify(&cases[3]).await;
    text.push_str(&format!("{}\n{verdict:?}\n", verdict.message()));

    // The fakes did receive the credentials, and echoed them back in their bodies.
    let seen = format!("{:?}{:?}", d.calls(), i.calls());
    assert!(
        CANARIES.iter().all(|c| seen.contains(c)),
        "every canary was sent"
    );
    let logs = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("\"level\":\"TRACE\""),
        "logs were taken at trace level"
    );
    assert!(
        logs.contains("provider answered"),
        "verification logged its calls"
    );
    for canary in CANARIES {
        assert!(
            !text.contains(canary),
            "{canary} leaked into a verdict: {text}"
        );
        assert!(!logs.contains(canary), "{canary} leaked into the logs");
    }
}

#[tokio::test]
async fn every_provider_request_is_counted_by_provider_check_and_outcome() {
    let fake = infisical_fake("right").await;
    let metrics = vault_connection_operator::metrics::Metrics::new();
    let v = verifier(&nothing_listens(), &fake.url).with_metrics(metrics.clone());
    v.verify(&infisical(CLIENT_ID, "right", "proj-1", "prod", "/"))
        .await;
    v.verify(&infisical(CLIENT_ID, "wrong", "proj-1", "prod", "/"))
        .await;
    let text = metrics.encode();
    for line in [
        r#"provider_requests_total{provider="infisical",check="login",outcome="success"} 1"#,
        r#"provider_requests_total{provider="infisical",check="read",outcome="success"} 1"#,
        r#"provider_requests_total{provider="infisical",check="login",outcome="refused"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}
