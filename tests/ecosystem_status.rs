//! Live VaultConnections, as the ecosystem's own code reads them: for every reason the operator
//! can reach, the verdict of kstatus (`sigs.k8s.io/cli-utils`, what Flux, kpt and cli-utils
//! waiters use), the chart's Argo CD health check run by gopher-lua, and `kubectl wait`.
//! Real kube-apiserver, real SSM emulator (or a real closed port / AWS-format error answers for
//! failures the emulator cannot produce), and the operator process.

mod common;

use serde_json::json;

use common::ecosystem::Ecosystem;
use common::fake_ssm::{answering, nowhere};
use common::{Connection, Credentials, Options, TestEnv, World, eventually};

/// Reasons the operator retries by itself: kstatus InProgress, Argo CD Progressing. Every other
/// reason that is not Synced needs a person: kstatus Failed, Argo CD Degraded.
const TRANSIENT: &[&str] = &["Throttled", "SyncFailed"];

/// (kstatus status, Argo CD health status) a connection with Ready reason `reason` must have.
fn expected(reason: &str) -> (&'static str, &'static str) {
    match reason {
        "Synced" => ("Current", "Healthy"),
        r if TRANSIENT.contains(&r) => ("InProgress", "Progressing"),
        _ => ("Failed", "Degraded"),
    }
}

/// Checks kstatus and Argo CD on the live object of connection NAME, whose Ready reason is
/// REASON; returns what was wrong, if anything.
fn verdicts(w: &World, eco: &Ecosystem, name: &str, reason: &str) -> Option<String> {
    let obj = w.live(name);
    let (want_kstatus, want_health) = expected(reason);
    let k = eco.kstatus(&obj);
    let h = eco.argocd_health(&obj);
    println!("{reason:>20}: kstatus {k:?}; Argo CD {h:?}");
    let mut problems = Vec::new();
    if k.status != want_kstatus {
        problems.push(format!("kstatus {k:?}, want {want_kstatus}"));
    }
    if h.status != want_health {
        problems.push(format!("Argo CD {h:?}, want {want_health}"));
    }
    if reason != "Synced" && !h.message.starts_with(reason) {
        problems.push(format!(
            "Argo CD message {:?} does not lead with {reason}",
            h.message
        ));
    }
    if want_kstatus == "Failed" && k.message.is_empty() {
        problems.push("kstatus Failed without a message".into());
    }
    (!problems.is_empty()).then(|| format!("{name} ({reason}): {}", problems.join("; ")))
}

fn check_all(problems: impl IntoIterator<Item = Option<String>>) {
    let problems: Vec<String> = problems.into_iter().flatten().collect();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// `kubectl wait --for=condition=COND` on one connection: (succeeded, output).
fn kubectl_wait(w: &World, name: &str, condition: &str, timeout: &str) -> (bool, String) {
    let out = w.env.kubectl(&[
        "wait",
        "-n",
        &w.ns,
        &format!("vaultconnection/{name}"),
        &format!("--for=condition={condition}"),
        &format!("--timeout={timeout}"),
    ]);
    (out.success, format!("{}{}", out.stdout, out.stderr))
}

#[tokio::test]
async fn synced_is_current_and_healthy_and_every_problem_with_the_inputs_is_failed_and_degraded() {
    let Some(w) = World::new("eco-reasons").await else {
        return;
    };
    let Some(eco) = Ecosystem::find() else {
        return;
    };
    // A parameter someone else owns, where `not-ours` would write.
    common::ssm::create(&w.ssm, &w.param("not-ours"), "someone else's", &[]).await;
    let _op = w.operator().await;
    w.one_password("synced", "ops_synced").await;
    w.one_password("not-ours", "ops_taken").await;
    // 2000 four-byte characters: a description within its length limit whose document is over
    // the 8192 bytes of an Advanced parameter.
    let long = "\u{1F511}".repeat(2000);
    w.apply(Credentials::secret("huge").token(&format!("ops_{}", "x".repeat(1000))))
        .await;
    w.apply(Connection::onepassword("huge").description(&long))
        .await;
    for file in ["no-secret", "unlabelled", "no-key", "bad-token"] {
        w.apply_file(&format!("tests/fixtures/bad/{file}.yaml"));
    }
    let cases = [
        ("synced", "Synced"),
        ("not-ours", "ParameterNotOwned"),
        ("huge", "ValueTooLarge"),
        ("no-secret", "SecretNotFound"),
        ("unlabelled", "SecretNotLabeled"),
        ("no-key", "MissingKey"),
        ("bad-token", "InvalidCredentials"),
    ];
    for (name, reason) in cases {
        w.wait_reason(name, reason).await;
    }
    check_all(cases.map(|(name, reason)| verdicts(&w, &eco, name, reason)));
}

#[tokio::test]
async fn a_connection_over_its_tier_limit_is_failed_and_degraded() {
    let Some(w) = World::new("eco-tier").await else {
        return;
    };
    let Some(eco) = Ecosystem::find() else {
        return;
    };
    let _op = w
        .operator_with(
            Options::new()
                .env("VCO_TIER_LIMITS", "free=1,team=10")
                .env("VCO_DEFAULT_TIER", "free"),
        )
        .await;
    w.one_password("first", "ops_first").await;
    w.wait_reason("first", "Synced").await;
    w.one_password("second", "ops_second").await;
    w.wait_reason("second", "TierLimitExceeded").await;
    check_all([
        verdicts(&w, &eco, "first", "Synced"),
        verdicts(&w, &eco, "second", "TierLimitExceeded"),
    ]);
}

/// One namespace and operator per SSM failure, with one valid connection each.
async fn ssm_failure(
    env: &TestEnv,
    eco: &Ecosystem,
    endpoint: String,
    reason: &str,
) -> Option<String> {
    let w = World::on(env, &format!("eco-{}", reason.to_lowercase())).await;
    let _op = w
        .operator_with(
            Options::new()
                .env("AWS_ENDPOINT_URL_SSM", endpoint)
                .env("VCO_SSM_TIMEOUT", "1s"),
        )
        .await;
    w.one_password("conn", "ops_valid").await;
    w.wait_reason("conn", reason).await;
    verdicts(&w, eco, "conn", reason)
}

#[tokio::test]
async fn ssm_failures_the_operator_retries_are_in_progress_and_progressing() {
    let Some(env) = TestEnv::live() else {
        return;
    };
    let Some(eco) = Ecosystem::find() else {
        return;
    };
    check_all([
        ssm_failure(&env, &eco, nowhere(), "SyncFailed").await,
        ssm_failure(
            &env,
            &eco,
            answering("ThrottlingException").await,
            "Throttled",
        )
        .await,
    ]);
}

#[tokio::test]
async fn ssm_failures_that_need_a_person_are_failed_and_degraded() {
    let Some(env) = TestEnv::live() else {
        return;
    };
    let Some(eco) = Ecosystem::find() else {
        return;
    };
    check_all([
        ssm_failure(
            &env,
            &eco,
            answering("AccessDeniedException").await,
            "AccessDenied",
        )
        .await,
        ssm_failure(
            &env,
            &eco,
            answering("KMSInvalidStateException").await,
            "KmsKeyError",
        )
        .await,
        ssm_failure(
            &env,
            &eco,
            answering("ExpiredTokenException").await,
            "AwsCredentialsError",
        )
        .await,
    ]);
}

#[tokio::test]
async fn a_spec_change_the_operator_has_not_seen_yet_is_in_progress_and_progressing() {
    let Some(w) = World::new("eco-generation").await else {
        return;
    };
    let Some(eco) = Ecosystem::find() else {
        return;
    };
    let mut op = w.operator().await;
    w.one_password("conn", "ops_valid").await;
    w.wait_reason("conn", "Synced").await;
    check_all([verdicts(&w, &eco, "conn", "Synced")]);

    // With the operator stopped, a spec change raises the generation past the observed one.
    op.kill();
    w.patch(
        "conn",
        json!({"spec": {"description": "changed while nobody watched"}}),
    )
    .await;
    let obj = w.live("conn");
    assert!(
        obj["metadata"]["generation"].as_i64() > obj["status"]["observedGeneration"].as_i64(),
        "the change is not observed yet: {obj}"
    );
    let k = eco.kstatus(&obj);
    let h = eco.argocd_health(&obj);
    assert_eq!(
        (k.status.as_str(), h.status.as_str()),
        ("InProgress", "Progressing"),
        "kstatus {k:?}, Argo CD {h:?}"
    );
    assert!(
        k.message.contains("latest observed generation"),
        "kstatus says why: {k:?}"
    );

    // Once the operator is back it observes the change and the connection is Current again.
    let _op = w.operator().await;
    let api = w.vcs();
    eventually(30, "the new generation to be observed", || async {
        let vc = api.get("conn").await.ok()?;
        (vc.status?.observed_generation == vc.metadata.generation).then_some(())
    })
    .await;
    let obj = w.live("conn");
    assert_eq!(
        (eco.kstatus(&obj).status, eco.argocd_health(&obj).status),
        ("Current".to_owned(), "Healthy".to_owned())
    );
}

#[tokio::test]
async fn kubectl_wait_sees_ready_on_a_synced_connection_and_stalled_on_a_broken_one() {
    let Some(w) = World::new("eco-wait").await else {
        return;
    };
    let _op = w.operator().await;
    w.one_password("good", "ops_good").await;
    w.apply(Connection::onepassword("broken").secret("absent"))
        .await;
    let (ok, out) = kubectl_wait(&w, "good", "Ready", "30s");
    assert!(ok, "kubectl wait --for=condition=Ready: {out}");
    assert!(out.contains("condition met"), "{out}");
    let (ok, out) = kubectl_wait(&w, "broken", "Stalled", "30s");
    assert!(ok, "kubectl wait --for=condition=Stalled: {out}");
    assert!(out.contains("condition met"), "{out}");
    // And the other way round: neither condition is claimed where it does not hold.
    let (ok, out) = kubectl_wait(&w, "good", "Stalled", "2s");
    assert!(!ok, "a synced connection is not Stalled: {out}");
    let (ok, out) = kubectl_wait(&w, "broken", "Ready", "2s");
    assert!(!ok, "a connection without its Secret is not Ready: {out}");
}
