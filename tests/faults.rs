//! Faults with the operator running and connections in flight: SSM outages (with and without
//! losing the emulator's state), throttling and 5xx answers, control-plane restarts, and the
//! operator killed in the middle of a batch of writes. Each prints what it measured.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vault_connection_operator::status::ready_reason;

use common::fake_ssm::{Fault, SsmProxy};
use common::{Connection, Credentials, Options, PrivateEnv, World, cond, eventually};

/// Connections `c0`… `c{n-1}`, each with its labelled Secret holding `ops_{tag}{i}`.
async fn connections(w: &World, n: usize, tag: &str) {
    for i in 0..n {
        let name = format!("c{i}");
        w.apply(Credentials::secret(&name).token(&format!("ops_{tag}{i}")))
            .await;
        w.apply(Connection::onepassword(&name)).await;
    }
}

/// Rotates `c{i}` to `ops_{tag}{i}`.
async fn rotate(w: &World, i: usize, tag: &str) {
    w.rotate(&format!("c{i}"), "access_token", &format!("ops_{tag}{i}"))
        .await;
}

/// (access token, version) of every parameter of the namespace, by connection name.
async fn parameters(w: &World) -> BTreeMap<String, (String, i64)> {
    let path = common::ssm::namespace_path(&w.prefix, &w.ns);
    common::ssm::tokens_under(&w.ssm, &path).await
}

/// Waits until every connection `c0..c{n-1}` holds `expected(i)` in SSM and reports Ready.
async fn converged(
    w: &World,
    n: usize,
    secs: u64,
    expected: impl Fn(usize) -> String,
) -> BTreeMap<String, (String, i64)> {
    let vcs = w.vcs();
    eventually(
        secs,
        "every connection to hold its latest credentials and be Ready",
        || async {
            let params = parameters(w).await;
            let all_stored = (0..n).all(|i| {
                params
                    .get(&format!("c{i}"))
                    .is_some_and(|(t, _)| *t == expected(i))
            });
            if !all_stored {
                return None;
            }
            let list = vcs.list(&Default::default()).await.ok()?;
            let ready = list
                .items
                .iter()
                .filter(|vc| ready_reason(vc) == Some("Synced"))
                .count();
            (ready == n).then_some(params)
        },
    )
    .await
}

#[tokio::test]
async fn an_ssm_outage_with_and_without_state_loss_converges_and_status_tells_the_truth() {
    let Some(private) = PrivateEnv::up("ssm-outage") else {
        return;
    };
    let w = World::on(&private.env, "outage").await;
    let _op = w
        .operator_with(
            Options::new()
                .env("VCO_DRIFT_CHECK_INTERVAL", "3s")
                .env("VCO_SSM_TIMEOUT", "1s"),
        )
        .await;
    let n = 5;
    connections(&w, n, "v1-").await;
    converged(&w, n, 30, |i| format!("ops_v1-{i}")).await;

    // Outage without state loss: the emulator is frozen; two Secrets rotate meanwhile.
    private.component("pause", "moto");
    let down = Instant::now();
    rotate(&w, 0, "v2-").await;
    rotate(&w, 1, "v2-").await;
    let vc = w.wait_reason("c0", "SyncFailed").await;
    let (_, _, message) = cond(&vc, "Ready");
    assert!(
        message.contains("Timeout"),
        "status names the failure: {message}"
    );
    private.component("resume", "moto");
    // The two rotated connections hold v2 credentials, the others still v1.
    let latest = |i: usize| {
        if i < 2 {
            format!("ops_v2-{i}")
        } else {
            format!("ops_v1-{i}")
        }
    };
    let params = converged(&w, n, 60, latest).await;
    println!(
        "outage (frozen emulator) recovered {:?} after it began",
        down.elapsed()
    );
    for (name, (_, version)) in &params {
        let expected = if name == "c0" || name == "c1" { 2 } else { 1 };
        assert_eq!(*version, expected, "{name}: one version per real change");
    }

    // Outage with state loss: the emulator restarts empty; the drift check recreates everything.
    let restarted = Instant::now();
    private.component("restart", "moto");
    let params = converged(&w, n, 60, latest).await;
    println!("emulator state loss repaired in {:?}", restarted.elapsed());
    assert!(
        params.values().all(|(_, v)| *v == 1),
        "recreated once each: {params:?}"
    );
}

#[tokio::test]
async fn throttling_too_many_updates_and_5xx_are_retried_with_backoff_and_no_hot_loop() {
    let Some(w) = World::new("throttle").await else {
        return;
    };
    let (proxy, endpoint) = SsmProxy::start(w.env.ssm_endpoint.clone()).await;
    // Three connections; every PutParameter attempt of the SDK's first round is throttled (the
    // SDK itself tries 3 times), then TooManyUpdates (retried by the operator), and the first
    // reads (the read-back of a write, or a look at a parameter) fail with 500.
    proxy.inject("GetParameters", Fault::ServerError, 3);
    proxy.inject("PutParameter", Fault::Throttling, 9);
    proxy.inject("PutParameter", Fault::TooManyUpdates, 4);
    let started = Instant::now();
    let op = w
        .operator_with(Options::new().env("AWS_ENDPOINT_URL_SSM", endpoint))
        .await;
    let n = 3;
    connections(&w, n, "t-").await;
    converged(&w, n, 90, |i| format!("ops_t-{i}")).await;
    let took = started.elapsed();

    let puts = proxy.count("PutParameter");
    let gets = proxy.count("GetParameters");
    println!(
        "throttling: converged in {took:?}; PutParameter {puts} calls (13 faults injected, 3 needed), \
         GetParameters {gets} (3 faults), peak {} PutParameter/s",
        proxy.peak_per_second("PutParameter")
    );
    assert!(
        puts >= 13 + n,
        "every injected fault was met and then the writes succeeded"
    );
    assert!(gets >= 3 + n, "every injected read fault was met: {gets}");
    assert!(
        puts <= 13 + n + 6,
        "no write storm: {puts} PutParameter calls"
    );
    // At most every concurrent reconcile (4) using all its SDK attempts (3) within one second;
    // retrying without backoff would make hundreds.
    assert!(
        proxy.peak_per_second("PutParameter") <= 4 * 3,
        "backoff spreads retries (no hot loop)"
    );
    // The throttled round reached status as a transient reason, then recovered.
    let events = w.all_events().await;
    // AWS's message text never reaches users: errors are classified by their code alone.
    let everything = serde_json::to_string(&events).expect("JSON");
    assert!(
        !everything.contains("injected by the test"),
        "AWS's message text reached an event"
    );
    let reasons: Vec<String> = events.into_iter().filter_map(|e| e.reason).collect();
    assert!(
        reasons.iter().any(|r| r == "Throttled"),
        "a Throttled event was published: {reasons:?}"
    );
    let metrics = op.metrics_text().await;
    assert!(
        metrics.contains(r#"vault_connection_operator_reconcile_errors_total{reason="Throttled"}"#),
        "failed reconciles are counted by reason:\n{metrics}"
    );
    // Once converged, nothing more is written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(proxy.count("PutParameter"), puts);
}

#[tokio::test]
async fn watches_resume_after_the_control_plane_restarts_without_missing_a_rotation() {
    let Some(private) = PrivateEnv::up("apiserver") else {
        return;
    };
    let w = World::on(&private.env, "restart").await;
    let _op = w.operator().await;
    connections(&w, 2, "a-").await;
    converged(&w, 2, 30, |i| format!("ops_a-{i}")).await;

    // Rotate, and take the control plane down at once: the event may never be delivered.
    rotate(&w, 0, "b-").await;
    let began = Instant::now();
    private.component("stop", "kube-apiserver");
    private.component("restart", "etcd");
    // While the API server is down, a write fails (and is not silently queued somewhere).
    assert!(
        w.secrets().get("c0").await.is_err(),
        "the API server is really down"
    );
    private.component("start", "kube-apiserver");
    let w = World {
        client: w.env.kube().await,
        ..w
    };
    converged(&w, 2, 60, |i| {
        if i == 0 {
            "ops_b-0".into()
        } else {
            "ops_a-1".into()
        }
    })
    .await;
    println!(
        "rotation made just before the restart reached SSM {:?} after the control plane went down",
        began.elapsed()
    );

    // And the resumed watch delivers the next rotation.
    let rotated = Instant::now();
    rotate(&w, 1, "c-").await;
    let params = converged(&w, 2, 30, |i| {
        if i == 0 {
            "ops_b-0".into()
        } else {
            "ops_c-1".into()
        }
    })
    .await;
    println!(
        "first rotation after the restart reached SSM in {:?}",
        rotated.elapsed()
    );
    assert_eq!(params["c0"].1, 2);
    assert_eq!(params["c1"].1, 2);
}

#[tokio::test]
async fn sigkill_in_the_middle_of_a_batch_loses_nothing_and_adds_no_versions() {
    let Some(w) = World::new("sigkill").await else {
        return;
    };
    // A slow write rate keeps writes in flight when the operator dies.
    let opts = Options::new()
        .env("VCO_SSM_WRITE_RATE", "5")
        .env("VCO_DEFAULT_TIER", "enterprise"); // more than the team tier's 10
    let n = 30;
    let mut op = w.operator_with(opts.clone()).await;
    // One `kubectl apply` for the whole batch, so the writes are in flight together.
    let objects: Vec<common::Object> = (0..n)
        .flat_map(|i| {
            let name = format!("c{i}");
            [
                Credentials::secret(&name)
                    .token(&format!("ops_one-{i}"))
                    .into(),
                Connection::onepassword(&name).into(),
            ]
        })
        .collect();
    w.apply_yaml(&common::fixtures::yaml(&objects));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    op.kill();
    let mid = parameters(&w).await.len();
    let op2 = w.operator_with(opts.clone()).await;
    let params = converged(&w, n, 60, |i| format!("ops_one-{i}")).await;
    println!("create batch: killed with {mid}/{n} written; all {n} Ready after restart");
    assert!(mid < n, "the kill really interrupted the batch ({mid}/{n})");
    assert!(
        params.values().all(|(_, v)| *v == 1),
        "one version each: {params:?}"
    );
    drop(op2);

    // The same in the middle of a rotation batch.
    let mut op3 = w.operator_with(opts.clone()).await;
    for i in 0..n {
        rotate(&w, i, "two-").await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    op3.kill();
    let rotated = parameters(&w)
        .await
        .values()
        .filter(|(_, v)| *v >= 2)
        .count();
    assert!(
        rotated < n,
        "the kill really interrupted the rotation batch ({rotated}/{n})"
    );
    let _op4 = w.operator_with(opts).await;
    let params = converged(&w, n, 60, |i| format!("ops_two-{i}")).await;
    let extra = params.values().filter(|(_, v)| *v > 2).count();
    println!(
        "rotation batch: killed with {rotated}/{n} rotated; {extra} parameter(s) with an extra version"
    );
    assert!(
        params.values().all(|(_, v)| *v == 2 || *v == 3),
        "{params:?}"
    );
    assert!(
        extra <= 4,
        "at most one extra version per write in flight (concurrency 4): {extra}"
    );
}
