//! Parameters that are not ours: one someone else wrote, one a twin cluster (same name, another
//! identity) owns, and one written before cluster ids existed. The operator never overwrites or
//! deletes them, and adopts the last only when told to.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

use common::{CLUSTER, Connection, Credentials, Options, World, cond, document};

#[tokio::test]
async fn a_parameter_that_is_not_ours_is_never_overwritten() {
    let Some(w) = World::new("unowned").await else {
        return;
    };
    let taken = w.param("taken");
    common::ssm::create(
        &w.ssm,
        &taken,
        "someone else's",
        &[("owner", "another-team")],
    )
    .await;
    let _op = w.operator().await;
    w.one_password("taken", "ops_x").await;
    let vc = w.wait_reason("taken", "ParameterNotOwned").await;
    assert!(
        cond(&vc, "Ready")
            .2
            .contains("will not read, overwrite or delete")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.read("taken").await, Some(("someone else's".into(), 1)));

    // Deleting the connection does not delete someone else's parameter either.
    w.delete_and_wait("taken").await;
    assert_eq!(w.read("taken").await, Some(("someone else's".into(), 1)));
}

#[tokio::test]
async fn a_cluster_with_our_name_but_another_identity_never_writes_or_deletes_our_parameter() {
    let Some(w) = World::new("twin").await else {
        return;
    };
    // "prod" writes the parameter and keeps it when its connection goes (Retain).
    let prod = w
        .operator_with(Options::new().env("VCO_CLUSTER_ID", "id-prod"))
        .await;
    w.apply(Credentials::secret("db").token("ops_prod")).await;
    w.apply(Connection::onepassword("db").retain()).await;
    w.wait_reason("db", "Synced").await;
    w.delete_and_wait("db").await;
    drop(prod);
    let theirs = w.read("db").await.expect("prod's parameter");
    assert_eq!(
        w.tags("db").await["vaultconnections.io/cluster-id"],
        "id-prod"
    );

    // "staging" has the same cluster name, namespace and connection name, another identity.
    let _staging = w
        .operator_with(Options::new().env("VCO_CLUSTER_ID", "id-staging"))
        .await;
    w.one_password("db", "ops_staging").await;
    let vc = w.wait_reason("db", "ParameterNotOwned").await;
    assert!(cond(&vc, "Ready").2.contains("cluster id"));
    w.rotate("db", "access_token", "ops_staging_rotated").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(w.read("db").await, Some(theirs.clone()), "never written");
    assert_eq!(
        w.tags("db").await["vaultconnections.io/cluster-id"],
        "id-prod"
    );

    // Deleting staging's connection (policy Delete) leaves prod's parameter in place.
    w.delete_and_wait("db").await;
    assert_eq!(w.read("db").await, Some(theirs), "never deleted");
}

#[tokio::test]
async fn a_parameter_from_before_cluster_ids_is_adopted_only_when_the_operator_is_told_to() {
    let Some(w) = World::new("legacy").await else {
        return;
    };
    let legacy_tags = [
        ("managed-by", "vault-connection-operator"),
        ("vaultconnections.io/cluster", CLUSTER),
        ("vaultconnections.io/namespace", w.ns.as_str()),
        ("vaultconnections.io/name", "old"),
    ];
    common::ssm::create(
        &w.ssm,
        &w.param("old"),
        "{\"written\":\"by an older operator\"}",
        &legacy_tags,
    )
    .await;
    let op = w.operator().await;
    w.one_password("old", "ops_new").await;
    w.wait_reason("old", "ParameterNotOwned").await;
    assert_eq!(
        w.read("old").await.expect("the legacy parameter").1,
        1,
        "not adopted silently"
    );
    drop(op);

    let _op = w
        .operator_with(Options::new().env("VCO_ADOPT_LEGACY_PARAMETERS", "true"))
        .await;
    w.wait_reason("old", "Synced").await;
    let (value, version) = w.read("old").await.expect("the adopted parameter");
    assert_eq!(
        (document(&value)["access_token"].as_str(), version),
        (Some("ops_new"), 2)
    );
    let kube_system = Api::<Namespace>::all(w.client.clone())
        .get("kube-system")
        .await
        .expect("kube-system");
    assert_eq!(
        w.tags("old").await.get("vaultconnections.io/cluster-id"),
        kube_system.metadata.uid.as_ref(),
        "adoption tags the parameter with this cluster's identity"
    );
}
