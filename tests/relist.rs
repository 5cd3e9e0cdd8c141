//! A watch that lost its place lists again, and the list is merged into the operator's caches
//! in place: counted, and costing no SSM call and no reconcile. Forced for real:
//! the API server is stopped, etcd's revision moves on behind its back, and the restarted API
//! server answers the resumed watches 410 Gone.

mod common;

use std::time::Duration;

use common::{Options, PrivateEnv, World, eventually};

#[tokio::test]
async fn a_relist_after_410_gone_is_merged_in_place_and_costs_no_ssm_call() {
    let Some(private) = PrivateEnv::up("relist") else {
        return;
    };
    let w = World::on(&private.env, "relist").await;
    let opts = Options::new()
        .env("VCO_DRIFT_CHECK_INTERVAL", "1h")
        .env("VCO_DEFAULT_TIER", "enterprise")
        .env("VCO_SSM_WRITE_RATE", "100");
    let op = w.operator_with(opts).await;
    for i in 0..3 {
        w.one_password(&format!("c{i}"), &format!("ops_relist{i}"))
            .await;
    }
    for i in 0..3 {
        w.wait_reason(&format!("c{i}"), "Synced").await;
    }
    let relists = || async {
        op.metric("vault_connection_operator_cache_relists_total", "")
            .await
    };
    assert_eq!(relists().await, 0.0, "no relist before the API server goes");
    // Whatever the creates woke has run before the count is taken.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reconciles = || async {
        op.metric("vault_connection_operator_reconciles_total", "")
            .await
    };
    let (gets, puts, before) = (
        op.ssm_calls("GetParameter").await,
        op.ssm_calls("PutParameter").await,
        reconciles().await,
    );

    private.component("stop", "kube-apiserver");
    // Etcd's revision moves well past what the watches saw: their place is gone.
    for i in 0..20 {
        private.etcd_put(&format!("/relist-test/{i}"), "x");
    }
    private.component("start", "kube-apiserver");
    eventually(120, "every cache to list again", || async {
        (relists().await >= 3.0).then_some(())
    })
    .await;
    // Settle: whatever the relist woke has run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        op.ssm_calls("GetParameter").await,
        gets,
        "the relist decrypted nothing: every connection was known"
    );
    assert_eq!(
        op.ssm_calls("PutParameter").await,
        puts,
        "and wrote nothing"
    );
    assert_eq!(
        reconciles().await,
        before,
        "and woke no reconcile: every object was listed at the version already cached"
    );

    // The merged caches serve as before: a rotation lands, a new connection syncs.
    w.rotate("c0", "access_token", "ops_relist_rotated").await;
    eventually(60, "the rotation to land in SSM", || async {
        let (value, _) = w.read("c0").await?;
        value.contains("ops_relist_rotated").then_some(())
    })
    .await;
    w.one_password("c3", "ops_relist3").await;
    w.wait_reason("c3", "Synced").await;
}
