//! The operator's cache holds only what it reads: connections padded with large annotations
//! (a namespace admin can add up to 256 KiB to each) do not push it toward its memory limit.

mod common;

use futures::{StreamExt, stream};
use kube::api::PostParams;

use common::{Connection, PrivateEnv, World, eventually};

/// Connections created, and the annotation bytes on each.
const CONNECTIONS: usize = 400;
const PADDING: usize = 200 * 1024;
/// Well within the chart's memory limit (256 MiB). Measured here: about 128 MiB with the slim
/// cache, 176 MiB when whole objects were cached (the padding alone is 80 MB); the rest is the
/// transient cost of receiving padded objects on the watches.
const RSS_BOUND_KIB: u64 = 150 * 1024;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn padded_connections_do_not_inflate_the_operators_memory() {
    // A private environment: 80 MB of padding would slow every other test's API server.
    let Some(private) = PrivateEnv::up("padded") else {
        return;
    };
    let w = World::on(&private.env, "padded").await;
    let api = w.vcs();
    let padding = "x".repeat(PADDING);
    let created = stream::iter(0..CONNECTIONS)
        .map(|i| {
            let (api, padding) = (api.clone(), padding.clone());
            async move {
                let vc = Connection::onepassword(&format!("c{i}"))
                    .secret("absent")
                    .annotation("padding", &padding);
                api.create(&PostParams::default(), &vc.0).await.is_ok()
            }
        })
        .buffer_unordered(8)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    assert_eq!(created, CONNECTIONS);

    let op = w.operator().await;
    eventually(120, "every connection to be reconciled", || async {
        let text = op.metrics_text().await;
        let done: f64 = text
            .lines()
            .filter(|l| {
                l.starts_with("vault_connection_operator_connections{")
                    && l.contains("SecretNotFound")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (done as usize == CONNECTIONS).then_some(())
    })
    .await;
    let rss = rss_kib(op.pid());
    println!(
        "operator RSS with {CONNECTIONS} connections of {} KiB annotations each: {} MiB (bound {} MiB)",
        PADDING / 1024,
        rss / 1024,
        RSS_BOUND_KIB / 1024
    );
    assert!(
        rss < RSS_BOUND_KIB,
        "RSS {rss} KiB: the cache keeps what the reconciler never reads"
    );
}
