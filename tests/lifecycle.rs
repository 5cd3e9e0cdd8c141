//! The events around a running operator, where operators of this kind lose data or hang
//! clusters: a watched namespace deleted with the chart's own RBAC, the CRD deleted, a burst of
//! deletions, a lost Lease in the middle of writes, and the escape hatches a cluster admin has.

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use vault_connection_operator::api::{CRD_NAME, SKIP_CLEANUP_ANNOTATION};

use common::chart::{Release, operator_as_installed};
use common::fake_ssm::SsmProxy;
use common::world::install_crd;
use common::{Connection, Credentials, Options, PrivateEnv, Scratch, World, eventually, unique};

/// NAME with its Secret, kept (`Retain`) or not when deleted.
async fn connection(w: &World, name: &str, retain: bool) {
    w.apply(Credentials::secret(name).token(&format!("ops_{name}")))
        .await;
    let c = Connection::onepassword(name);
    w.apply(if retain { c.retain() } else { c }).await;
}

#[tokio::test]
async fn a_watched_namespace_is_deleted_within_a_minute_with_the_charts_own_rights() {
    let Some(w) = World::new("lc-watched").await else {
        return;
    };
    let ops = w.namespace("lc-ops").await;
    let release = Release::install(
        &w.env,
        &ops,
        &[
            "--set",
            &format!("operator.watchNamespaces={{{}}}", w.ns),
            "--set",
            &format!("operator.ssmPrefix={}", w.prefix),
            "--set",
            "operator.clusterName=default",
        ],
    );
    let scratch = Scratch::new("lc-sa");
    let op = operator_as_installed(
        &w,
        &release,
        &scratch,
        Options::new().env("VCO_LEASE_DURATION", "4s"),
    )
    .await;
    eventually(20, "the operator to lead", || async {
        op.leads().then_some(())
    })
    .await;
    connection(&w, "gone", false).await;
    connection(&w, "kept", true).await;
    w.wait_reason("gone", "Synced").await;
    w.wait_reason("kept", "Synced").await;

    // Deleting the namespace removes the operator's Role in it at once; its connections still
    // wait on the finalizer, which the cluster-wide rights let the operator remove.
    let started = Instant::now();
    let namespaces: Api<Namespace> = Api::all(w.client.clone());
    namespaces
        .delete(&w.ns, &DeleteParams::default())
        .await
        .expect("delete the namespace");
    eventually(60, "the namespace to be gone", || async {
        namespaces
            .get_opt(&w.ns)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    println!("namespace deleted in {:?}", started.elapsed());
    assert_eq!(w.read("gone").await, None, "Delete: the parameter went");
    assert!(
        w.read("kept").await.is_some(),
        "Retain: the parameter stays"
    );
}

#[tokio::test]
async fn deleting_the_crd_keeps_every_parameter_and_the_connections_come_back_without_a_write() {
    // The CRD is the cluster's: delete it only in an environment of this test's own.
    let Some(private) = PrivateEnv::up("crd-delete") else {
        return;
    };
    let w = World::on(&private.env, "lc-crd").await;
    let (proxy, endpoint) = SsmProxy::start(w.env.ssm_endpoint.clone()).await;
    let _op = w
        .operator_with(Options::new().env("AWS_ENDPOINT_URL_SSM", endpoint))
        .await;
    for name in ["a", "b", "c"] {
        connection(&w, name, false).await;
    }
    for name in ["a", "b", "c"] {
        w.wait_reason(name, "Synced").await;
    }
    let before: Vec<_> = futures::future::join_all(["a", "b", "c"].map(|n| w.read(n))).await;

    let crds: Api<CustomResourceDefinition> = Api::all(w.client.clone());
    crds.delete(CRD_NAME, &DeleteParams::default())
        .await
        .expect("delete the CRD");
    eventually(60, "the CRD and its connections to be gone", || async {
        crds.get_opt(CRD_NAME).await.ok()?.is_none().then_some(())
    })
    .await;
    let after: Vec<_> = futures::future::join_all(["a", "b", "c"].map(|n| w.read(n))).await;
    assert_eq!(after, before, "every parameter survives, unchanged");
    assert!(after.iter().all(Option::is_some));

    // Installed again, with the same connections: each takes its parameter back, no new version.
    let puts = proxy.count("PutParameter");
    install_crd(&w.client).await;
    for name in ["a", "b", "c"] {
        w.apply(Connection::onepassword(name)).await;
    }
    for name in ["a", "b", "c"] {
        w.wait_reason(name, "Synced").await;
    }
    let again: Vec<_> = futures::future::join_all(["a", "b", "c"].map(|n| w.read(n))).await;
    assert_eq!(again, before, "the same versions");
    assert_eq!(proxy.count("PutParameter"), puts, "no SSM write");
}

#[tokio::test]
async fn a_burst_of_deletions_above_the_budget_waits_and_finishes_when_the_budget_allows() {
    let Some(w) = World::new("lc-burst").await else {
        return;
    };
    let mut op = w
        .operator_with(
            Options::new()
                .env("VCO_MAX_DELETIONS", "2")
                .env("VCO_DELETION_WINDOW", "1h"),
        )
        .await;
    let names = ["d0", "d1", "d2", "d3", "d4"];
    for name in names {
        connection(&w, name, false).await;
    }
    for name in names {
        w.wait_reason(name, "Synced").await;
    }
    for name in names {
        w.delete(name).await;
    }
    eventually(20, "three deletions to be held", || async {
        let held = op.gauge("vault_connection_operator_deletions_held").await;
        (held == Some(3.0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut stored = 0;
    for name in names {
        stored += usize::from(w.read(name).await.is_some());
    }
    assert_eq!(
        stored, 3,
        "exactly the budget's two parameters were deleted"
    );
    let remaining = w
        .vcs()
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .len();
    assert_eq!(remaining, 3, "the held connections keep their finalizer");

    // A cluster admin who means it raises the budget: the rest goes.
    op.kill();
    let _op = w.operator().await;
    for name in names {
        w.wait_gone(name).await;
        assert_eq!(w.read(name).await, None, "{name}");
    }
}

#[tokio::test]
async fn the_skip_cleanup_annotation_keeps_the_parameter_and_lets_the_connection_go() {
    let Some(w) = World::new("lc-skip").await else {
        return;
    };
    let _op = w.operator().await;
    connection(&w, "stuck", false).await;
    w.wait_reason("stuck", "Synced").await;
    w.patch(
        "stuck",
        json!({"metadata": {"annotations": {SKIP_CLEANUP_ANNOTATION: "true"}}}),
    )
    .await;
    w.delete_and_wait("stuck").await;
    assert!(w.read("stuck").await.is_some(), "left in place");
    let events = w.events("stuck").await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "CleanupSkipped"
                && note.contains(SKIP_CLEANUP_ANNOTATION)),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_replica_that_loses_the_lease_in_the_middle_of_writes_starts_no_further_write() {
    let Some(w) = World::new("lc-lease").await else {
        return;
    };
    let (proxy, endpoint) = SsmProxy::start(w.env.ssm_endpoint.clone()).await;
    let lease = unique("lease");
    let mut op = w
        .operator_with(
            Options::new()
                .env("AWS_ENDPOINT_URL_SSM", endpoint)
                .env("VCO_LEASE_DURATION", "15s")
                .leader_election(&w.ns, &lease),
        )
        .await;
    eventually(20, "the operator to lead", || async {
        op.leads().then_some(())
    })
    .await;
    let names: Vec<String> = (0..8).map(|i| format!("l{i}")).collect();
    for name in &names {
        connection(&w, name, false).await;
    }
    for name in &names {
        w.wait_reason(name, "Synced").await;
    }

    // Every write now takes 4 s; rotate everything, so the workers are all in the middle of one.
    proxy.delay("PutParameter", Duration::from_secs(4));
    for name in &names {
        w.rotate(name, "access_token", &format!("ops_{name}_2"))
            .await;
    }
    eventually(10, "writes in flight", || async {
        (proxy.count("PutParameter") > names.len()).then_some(())
    })
    .await;
    // Another replica takes the Lease over (as after an expiry the old leader did not see).
    let leases: Api<Lease> = Api::namespaced(w.client.clone(), &w.ns);
    let takeover = json!({"spec": {
        "holderIdentity": "another-replica",
        "leaseDurationSeconds": 60,
        "renewTime": MicroTime(jiff::Timestamp::now()),
        "acquireTime": MicroTime(jiff::Timestamp::now()),
    }});
    leases
        .patch(&lease, &PatchParams::default(), &Patch::Merge(&takeover))
        .await
        .expect("take the Lease over");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_loss = proxy.count("PutParameter");
    // The writes in flight come back; no reconcile starts another.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        proxy.count("PutParameter"),
        at_loss,
        "a replica without the Lease started a write"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Some(success) = op.exited() {
            break success;
        }
        assert!(Instant::now() < deadline, "the operator did not exit");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!exited, "it exits non-zero, to rejoin as a standby");
    assert!(
        op.logs().contains("lost leadership"),
        "the log says why it stopped"
    );
}
