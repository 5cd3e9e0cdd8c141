//! Load: 1,000 connections created at once, with SSM writes held to a client-side rate. No
//! failure reaches users, all end Ready, and SSM sees exactly the minimum of calls.

mod common;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{ListParams, PostParams};
use vault_connection_operator::status::ready_reason;

use common::{Connection, Credentials, Options, World, eventually};

const N: usize = 1000;
const WRITE_RATE: u32 = 50;

#[tokio::test]
async fn a_thousand_connections_at_once_all_become_ready_with_minimal_ssm_calls() {
    let Some(w) = World::new("load").await else {
        return;
    };
    let op = w
        .operator_with(
            Options::new()
                .env("VCO_SSM_WRITE_RATE", WRITE_RATE.to_string())
                // Reads (one GetParameter per create) must not be the bottleneck here.
                .env("VCO_SSM_READ_RATE", (2 * WRITE_RATE).to_string())
                .env("VCO_DEFAULT_TIER", "enterprise")
                .env("VCO_LOG_LEVEL", "info"),
        )
        .await;

    let (secrets, vcs) = (w.secrets(), w.vcs());
    let started = Instant::now();
    futures::stream::iter(0..N)
        .map(|i| {
            let (secrets, vcs) = (secrets.clone(), vcs.clone());
            async move {
                let secret = Credentials::secret(&format!("s{i}")).token(&format!("ops_load{i}"));
                secrets.create(&PostParams::default(), &secret.0).await?;
                let vc = Connection::onepassword(&format!("c{i}")).secret(&format!("s{i}"));
                vcs.create(&PostParams::default(), &vc.0).await.map(drop)
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("create the connections");
    let created = started.elapsed();

    let ready = eventually(600, "all connections to be Ready", || async {
        let list = vcs.list(&ListParams::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|vc| ready_reason(vc) == Some("Synced"))
            .count();
        (ready == N).then_some(started.elapsed())
    })
    .await;
    let floor = Duration::from_secs_f64(N as f64 / f64::from(WRITE_RATE));
    println!(
        "load: {N} connections created in {created:?}, all Ready after {ready:?} \
         (write-rate floor {floor:?} at {WRITE_RATE}/s)"
    );
    assert!(
        ready >= floor.mul_f64(0.9),
        "the client-side write rate was honoured"
    );

    // Exactly the minimum: one read (not found) and one write per connection, nothing failed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = op.metrics_text().await;
    let calls: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("vault_connection_operator_ssm_calls_total{"))
        .collect();
    println!("load: SSM calls {calls:?}");
    assert_eq!(op.ssm_calls("PutParameter").await, N as u64, "{calls:?}");
    let gets = op.ssm_calls("GetParameter").await;
    assert!(
        gets <= N as u64 + N as u64 / 50,
        "GetParameter {gets} for {N} creates"
    );
    assert!(
        calls
            .iter()
            .all(|l| l.contains("outcome=\"success\"") || l.contains("outcome=\"not_found\"")),
        "{calls:?}"
    );
    assert!(
        !metrics.contains("vault_connection_operator_reconcile_errors_total{"),
        "no reconcile failed"
    );
    let warnings: Vec<String> = w
        .all_events()
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        warnings.is_empty(),
        "no failure surfaced to users: {warnings:?}"
    );
}
