//! Faults with the operator running and connections in flight: SSM outages (with and without
//! losing the emulator's state), throttling and 5xx answers, control-plane restarts, and the
//! operator killed in the middle of a batch of writes. Each prints what it measured.

mod common;
mod ssm_proxy;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use vault_connection_operator::api::VaultConnection;
use vault_connection_operator::status::ready_reason;

use ssm_proxy::{Fault, SsmProxy};

use common::{
    Operator, OperatorOptions, PrivateEnv, TestEnv, eventually, install_crd, namespace,
    one_password_connections, unique,
};

async fn rotate(client: &kube::Client, ns: &str, i: usize, tag: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({"stringData": {"access_token": format!("ops_{tag}{i}")}});
    secrets
        .patch(
            &format!("c{i}"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("rotate");
}

/// (value, version) of every parameter under `prefix`, by connection name.
async fn parameters(ssm: &aws_sdk_ssm::Client, prefix: &str) -> BTreeMap<String, (String, i64)> {
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let page = match ssm
            .get_parameters_by_path()
            .path(prefix)
            .recursive(true)
            .with_decryption(true)
            .set_next_token(token.take())
            .send()
            .await
        {
            Ok(page) => page,
            Err(_) => return out, // emulator down: nothing readable
        };
        for p in page.parameters.unwrap_or_default() {
            let name = p.name.unwrap_or_default();
            let short = name.rsplit('/').next().unwrap_or_default().to_owned();
            let token =
                serde_json::from_str::<serde_json::Value>(p.value.as_deref().unwrap_or("{}"))
                    .ok()
                    .and_then(|v| v["access_token"].as_str().map(str::to_owned))
                    .unwrap_or_default();
            out.insert(short, (token, p.version));
        }
        token = page.next_token;
        if token.is_none() {
            return out;
        }
    }
}

/// Waits until every connection `c0..c{n-1}` holds `expected(i)` in SSM and reports Ready.
async fn converged(
    env: &TestEnv,
    client: &kube::Client,
    ns: &str,
    prefix: &str,
    n: usize,
    secs: u64,
    expected: impl Fn(usize) -> String,
) -> BTreeMap<String, (String, i64)> {
    let ssm = env.ssm().await;
    let vcs: Api<VaultConnection> = Api::namespaced(client.clone(), ns);
    eventually(
        secs,
        "every connection to hold its latest credentials and be Ready",
        || async {
            let params = parameters(&ssm, prefix).await;
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
    let private = PrivateEnv::up("ssm-outage");
    let env = &private.env;
    let client = env.kube().await;
    install_crd(&client).await;
    let ns = namespace(&client, "outage").await;
    let prefix = format!("/{}", unique("outage"));
    let opts = OperatorOptions {
        env: vec![
            ("VCO_DRIFT_CHECK_INTERVAL".into(), "3s".into()),
            ("VCO_SSM_TIMEOUT".into(), "1s".into()),
        ],
    };
    let _op = Operator::start(env, &ns, &prefix, &opts).await;
    let n = 5;
    env.apply(&ns, &one_password_connections(n, "v1-"));
    converged(env, &client, &ns, &prefix, n, 30, |i| format!("ops_v1-{i}")).await;

    // Outage without state loss: the emulator is frozen; two Secrets rotate meanwhile.
    private.component("pause", "moto");
    let down = Instant::now();
    rotate(&client, &ns, 0, "v2-").await;
    rotate(&client, &ns, 1, "v2-").await;
    let vcs: Api<VaultConnection> = Api::namespaced(client.clone(), &ns);
    let vc = eventually(30, "status to report the failed sync", || async {
        let vc = vcs.get("c0").await.ok()?;
        (ready_reason(&vc) == Some("SyncFailed")).then_some(vc)
    })
    .await;
    let message = vc
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
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
    let params = converged(env, &client, &ns, &prefix, n, 60, latest).await;
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
    let params = converged(env, &client, &ns, &prefix, n, 60, latest).await;
    println!("emulator state loss repaired in {:?}", restarted.elapsed());
    assert!(
        params.values().all(|(_, v)| *v == 1),
        "recreated once each: {params:?}"
    );
}

#[tokio::test]
async fn throttling_too_many_updates_and_5xx_are_retried_with_backoff_and_no_hot_loop() {
    let env = TestEnv::get();
    let client = env.kube().await;
    install_crd(&client).await;
    let ns = namespace(&client, "throttle").await;
    let prefix = format!("/{}", unique("throttle"));
    let (proxy, endpoint) = SsmProxy::start(env.ssm_endpoint.clone()).await;
    // Three connections; every PutParameter attempt of the SDK's first round is throttled (the
    // SDK itself tries 3 times), then TooManyUpdates (retried by the operator), and the first
    // reads (the look at a parameter, or the read-back after a write) fail with 500.
    proxy.inject("GetParameters", Fault::ServerError, 3);
    proxy.inject("PutParameter", Fault::Throttling, 9);
    proxy.inject("PutParameter", Fault::TooManyUpdates, 4);
    let opts = OperatorOptions {
        env: vec![("AWS_ENDPOINT_URL_SSM".into(), endpoint)],
    };
    let started = Instant::now();
    let op = Operator::start(&env, &ns, &prefix, &opts).await;
    let n = 3;
    env.apply(&ns, &one_password_connections(n, "t-"));
    converged(&env, &client, &ns, &prefix, n, 90, |i| format!("ops_t-{i}")).await;
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
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    // AWS's message text never reaches users: errors are classified by their code alone.
    let everything =
        serde_json::to_string(&events.list(&Default::default()).await.unwrap()).unwrap();
    assert!(
        !everything.contains("injected by the test"),
        "AWS's message text reached an event"
    );
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
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
    let private = PrivateEnv::up("apiserver");
    let env = &private.env;
    let client = env.kube().await;
    install_crd(&client).await;
    let ns = namespace(&client, "restart").await;
    let prefix = format!("/{}", unique("restart"));
    let _op = Operator::start(env, &ns, &prefix, &OperatorOptions::default()).await;
    env.apply(&ns, &one_password_connections(2, "a-"));
    converged(env, &client, &ns, &prefix, 2, 30, |i| format!("ops_a-{i}")).await;

    // Rotate, and take the control plane down at once: the event may never be delivered.
    rotate(&client, &ns, 0, "b-").await;
    let began = Instant::now();
    private.component("stop", "kube-apiserver");
    private.component("restart", "etcd");
    rotate_blocked(&client, &ns).await;
    private.component("start", "kube-apiserver");
    let client = env.kube().await;
    converged(env, &client, &ns, &prefix, 2, 60, |i| {
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
    rotate(&client, &ns, 1, "c-").await;
    let params = converged(env, &client, &ns, &prefix, 2, 30, |i| {
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

/// While the API server is down, a write fails (and is not silently queued somewhere).
async fn rotate_blocked(client: &kube::Client, ns: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    assert!(
        secrets.get("c0").await.is_err(),
        "the API server is really down"
    );
}

#[tokio::test]
async fn sigkill_in_the_middle_of_a_batch_loses_nothing_and_adds_no_versions() {
    let env = TestEnv::get();
    let client = env.kube().await;
    install_crd(&client).await;
    let ns = namespace(&client, "sigkill").await;
    let prefix = format!("/{}", unique("sigkill"));
    // A slow write rate keeps writes in flight when the operator dies.
    let opts = OperatorOptions {
        env: vec![
            ("VCO_SSM_WRITE_RATE".into(), "5".into()),
            ("VCO_DEFAULT_TIER".into(), "enterprise".into()), // more than the team tier's 10
        ],
    };
    let n = 30;
    let mut op = Operator::start(&env, &ns, &prefix, &opts).await;
    env.apply(&ns, &one_password_connections(n, "one-"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    op.kill();
    let mid = parameters(&env.ssm().await, &prefix).await.len();
    let op2 = Operator::start(&env, &ns, &prefix, &opts).await;
    let params = converged(&env, &client, &ns, &prefix, n, 60, |i| {
        format!("ops_one-{i}")
    })
    .await;
    println!("create batch: killed with {mid}/{n} written; all {n} Ready after restart");
    assert!(mid < n, "the kill really interrupted the batch ({mid}/{n})");
    assert!(
        params.values().all(|(_, v)| *v == 1),
        "one version each: {params:?}"
    );
    drop(op2);

    // The same in the middle of a rotation batch.
    let mut op3 = Operator::start(&env, &ns, &prefix, &opts).await;
    for i in 0..n {
        rotate(&client, &ns, i, "two-").await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    op3.kill();
    let rotated = parameters(&env.ssm().await, &prefix)
        .await
        .values()
        .filter(|(_, v)| *v >= 2)
        .count();
    assert!(
        rotated < n,
        "the kill really interrupted the rotation batch ({rotated}/{n})"
    );
    let _op4 = Operator::start(&env, &ns, &prefix, &opts).await;
    let params = converged(&env, &client, &ns, &prefix, n, 60, |i| {
        format!("ops_two-{i}")
    })
    .await;
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
