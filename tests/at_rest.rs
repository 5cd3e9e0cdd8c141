//! A fleet at rest costs almost nothing: no Kubernetes read, no decrypting SSM read, no write —
//! only the batched, non-decrypting version sweep — and a restart reads no Secret. Counted by a
//! private API server's own request metrics and the operator's SSM call counters.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Operator, Options, PrivateEnv, World, eventually};

const N: usize = 30;

/// The API server's request counts by (verb, resource), from its own metrics.
async fn requests(client: &kube::Client) -> BTreeMap<(String, String), f64> {
    let text = client
        .request_text(
            hyper::Request::get("/metrics")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("apiserver metrics");
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let label = |name: &str| {
            rest.split(&format!("{name}=\""))
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_owned)
        };
        let (Some(verb), Some(resource)) = (label("verb"), label("resource")) else {
            continue;
        };
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *counts.entry((verb, resource)).or_default() += value;
    }
    counts
}

/// Requests of `verbs` on the operator's resources between two snapshots.
fn delta(
    after: &BTreeMap<(String, String), f64>,
    before: &BTreeMap<(String, String), f64>,
    verbs: &[&str],
) -> BTreeMap<String, f64> {
    let ours = ["secrets", "namespaces", "vaultconnections", "events"];
    after
        .iter()
        .filter(|((verb, resource), _)| {
            verbs.contains(&verb.as_str()) && ours.contains(&resource.as_str())
        })
        .map(|((verb, resource), v)| {
            let was = before
                .get(&(verb.clone(), resource.clone()))
                .copied()
                .unwrap_or(0.0);
            (format!("{verb} {resource}"), v - was)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

async fn checked(op: &Operator) -> f64 {
    op.metric("vault_connection_operator_drift_checked_total", "")
        .await
}

#[tokio::test]
async fn at_rest_and_after_a_restart_nothing_is_read_but_parameter_versions() {
    // A private API server: its request counts are this test's alone.
    let Some(private) = PrivateEnv::up("at-rest") else {
        return;
    };
    let w = World::on(&private.env, "rest").await;
    let client = &w.client;
    let opts = Options::new()
        .env("VCO_DRIFT_CHECK_INTERVAL", "2s")
        .env("VCO_DEFAULT_TIER", "enterprise")
        .env("VCO_SSM_WRITE_RATE", "100");
    let mut op = w.operator_with(opts.clone()).await;
    for i in 0..N {
        w.one_password(&format!("c{i}"), &format!("ops_rest{i}"))
            .await;
    }
    eventually(60, "every connection to be checked by a sweep", || async {
        (checked(&op).await >= N as f64).then_some(())
    })
    .await;

    // At rest: three sweeps, and nothing else.
    let (api0, gets0, batches0) = (
        requests(client).await,
        op.ssm_calls("GetParameter").await,
        op.ssm_calls("GetParameters").await,
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    let api1 = requests(client).await;
    let reads = delta(&api1, &api0, &["GET", "LIST"]);
    let writes = delta(
        &api1,
        &api0,
        &["POST", "PUT", "PATCH", "DELETE", "CREATE", "UPDATE"],
    );
    assert!(reads.is_empty(), "no Kubernetes read at rest: {reads:?}");
    assert!(writes.is_empty(), "no Kubernetes write at rest: {writes:?}");
    assert_eq!(
        op.ssm_calls("GetParameter").await,
        gets0,
        "no decrypting read at rest"
    );
    let sweeps = op.ssm_calls("GetParameters").await - batches0;
    // Three or four sweeps of N / 10 calls each fit in 7 s at a 2 s interval (fewer if the
    // machine is slow; never more than one per interval).
    assert!(
        (N as u64 / 10..=4 * N as u64 / 10).contains(&sweeps),
        "one batched call per ten connections per sweep: {sweeps} in 7 s"
    );

    // A restart: one batched version check per ten connections; no Secret read, no write.
    op.kill();
    let api2 = requests(client).await;
    let op = w.operator_with(opts).await;
    eventually(
        30,
        "the restarted operator to check every connection",
        || async { (checked(&op).await >= N as f64).then_some(()) },
    )
    .await;
    let api3 = requests(client).await;
    let reads = delta(&api3, &api2, &["GET", "LIST"]);
    let writes = delta(
        &api3,
        &api2,
        &["POST", "PUT", "PATCH", "DELETE", "CREATE", "UPDATE"],
    );
    assert!(writes.is_empty(), "a restart writes nothing: {writes:?}");
    // The Secret watch's initial list (one page); a Secret read per connection would be N more.
    let secret_lists = reads.get("LIST secrets").copied().unwrap_or(0.0);
    assert!(
        secret_lists <= 2.0,
        "only the Secret watch's list: {reads:?}"
    );
    assert!(!reads.contains_key("GET secrets"), "{reads:?}");
    assert_eq!(op.ssm_calls("GetParameter").await, 0, "no decrypting read");
    assert_eq!(op.ssm_calls("PutParameter").await, 0, "no write");
}

#[tokio::test]
async fn the_echo_of_the_operators_own_status_write_wakes_nobody() {
    let Some(w) = World::new("echo").await else {
        return;
    };
    let op = w
        .operator_with(Options::new().env("VCO_DRIFT_CHECK_INTERVAL", "1h"))
        .await;
    w.one_password("c", "ops_echo").await;
    w.wait_reason("c", "Synced").await;
    // Whatever the write woke has had time to run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        op.reconciles("Synced").await,
        1.0,
        "one reconcile wrote status; its echo reconciled nothing"
    );

    // Someone else's status write is news: reconciled once, and put right.
    let patch = serde_json::json!({ "status": { "observedGeneration": 99 } });
    w.vcs()
        .patch_status(
            "c",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("status patch");
    eventually(30, "the operator to put status right", || async {
        let vc = w.vcs().get("c").await.ok()?;
        (vc.status?.observed_generation != Some(99)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        op.reconciles("Synced").await,
        2.0,
        "the foreign write woke one reconcile; the echo of its repair none"
    );
}
