//! One namespace's burst cannot hold another's rotation: the SSM budgets and the workers are
//! shared round-robin between namespaces. Measured on the real API server and moto, with a
//! write budget slow enough (one call a second) that a queue is plain to see.

mod common;

use common::{Options, World, condition, eventually};

/// How many of `w`'s connections are Ready and Synced.
async fn synced(w: &World) -> usize {
    let list = w.vcs().list(&Default::default()).await.expect("list");
    list.items
        .iter()
        .filter(|vc| condition(vc, "Ready").is_some_and(|c| c.reason == "Synced"))
        .count()
}

#[tokio::test]
async fn a_quiet_namespace_is_served_within_a_turn_of_a_noisy_ones_burst() {
    const NOISY: usize = 30;
    let Some(noisy) = World::new("noisy").await else {
        return;
    };
    let quiet = World::on(&noisy.env, "quiet").await;
    let _op = noisy
        .operator_with(
            Options::new()
                .env("VCO_NAMESPACES", format!("{},{}", noisy.ns, quiet.ns))
                .env("VCO_SSM_WRITE_RATE", "1")
                .env("VCO_CONCURRENCY", "20")
                .env("VCO_DEFAULT_TIER", "enterprise")
                .env("VCO_DRIFT_CHECK_INTERVAL", "1h"),
        )
        .await;
    for i in 0..NOISY {
        noisy
            .one_password(&format!("n{i}"), &format!("ops_noisy{i}"))
            .await;
    }
    // The burst is under way: its queue holds every worker and the write budget.
    eventually(60, "the noisy burst to start landing", || async {
        (synced(&noisy).await >= 2).then_some(())
    })
    .await;
    let before = synced(&noisy).await;
    quiet.one_password("q", "ops_quiet").await;
    quiet.wait_reason("q", "Synced").await;
    let overtaken = synced(&noisy).await - before;
    eprintln!(
        "quiet served after {overtaken} of {} queued noisy connections",
        NOISY - before
    );
    // First come, first served, the quiet connection waits for the whole queue ahead of it
    // (measured: all 28 of 28). In turns it waits about one turn per step it takes: a worker
    // for the finalizer, a worker for the sync, its reads, one write slot (measured: 3 and 5).
    assert!(
        overtaken <= 8,
        "{overtaken} of the noisy namespace's connections landed while the quiet one waited \
         (of the {} still queued when it asked)",
        NOISY - before
    );
}
