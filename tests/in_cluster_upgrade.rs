//! The chart's lifecycle on the test environment's real node: `helm upgrade` rolls the pods
//! without losing or repeating a write, and `helm uninstall` with `crds.keep` leaves the CRD and
//! every connection in place. Needs the node and the image, like tests/in_cluster.rs.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::chart::{CHART, CRD};
use common::node::*;
use common::ssm::version;
use common::{Connection, Credentials, World, eventually, unique};

#[tokio::test]
async fn helm_upgrade_rolls_the_pods_without_losing_or_repeating_a_write() {
    const N: usize = 4;
    let Some(w) = World::new("team-upgrade").await else {
        return;
    };
    let Some(node) = Node::get(&w.env) else {
        return;
    };
    let (env, client, team, prefix) = (&w.env, &w.client, w.ns.clone(), w.prefix.clone());
    let ops = w.namespace("vco-upgrade").await;
    let values = values(env, &node, &team, &prefix, 2);
    let (release, _) = install(env, &ops, &values, &[]);
    let before: BTreeSet<String> = pods(client, &ops, &release.name)
        .await
        .iter()
        .map(name)
        .collect();
    for i in 0..N {
        let creds = format!("creds-{i}");
        w.apply(Credentials::secret(&creds).token(&format!("ops_v1_{i}")))
            .await;
        w.apply(Connection::onepassword(&format!("conn-{i}")).secret(&creds))
            .await;
    }
    eventually(60, "every connection to be Ready", || async {
        all_ready(env, &team).then_some(())
    })
    .await;

    // Changed values roll the Deployment; rotations arrive while the pods are replaced.
    let upgrade = {
        let env = env.clone();
        let release = release.name.clone();
        let ops = ops.clone();
        std::thread::spawn(move || {
            env.helm(&[
                "upgrade",
                &release,
                CHART,
                "-n",
                &ops,
                "--reuse-values",
                "--set",
                "operator.logLevel=debug",
                "--wait",
                "--timeout",
                "180s",
            ])
        })
    };
    for i in 0..N {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        w.rotate(
            &format!("creds-{i}"),
            "access_token",
            &format!("ops_v2_{i}"),
        )
        .await;
    }
    let upgraded = tokio::task::spawn_blocking(move || upgrade.join().expect("helm thread"))
        .await
        .expect("join");
    upgraded.expect_success();

    let after: BTreeSet<String> = pods(client, &ops, &release.name)
        .await
        .iter()
        .map(name)
        .collect();
    assert!(
        before.is_disjoint(&after),
        "every pod was replaced: {before:?} -> {after:?}"
    );
    let ssm = &w.ssm;
    for i in 0..N {
        let param = w.param(&format!("conn-{i}"));
        eventually(60, &format!("the rotation of conn-{i} to land"), || async {
            (version(ssm, &param).await == Some(2)).then_some(())
        })
        .await;
    }
    // Settle past a Lease duration: nobody writes again once the new leader has caught up.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for i in 0..N {
        let param = w.param(&format!("conn-{i}"));
        let history = ssm
            .get_parameter_history()
            .name(&param)
            .send()
            .await
            .expect("parameter history");
        assert_eq!(
            history.parameters().len(),
            2,
            "conn-{i}: exactly the first write and the rotation"
        );
        let got = ssm
            .get_parameter()
            .name(&param)
            .with_decryption(true)
            .send()
            .await
            .expect("get parameter");
        let value = got.parameter.and_then(|p| p.value).unwrap_or_default();
        assert!(
            value.contains(&format!("ops_v2_{i}")),
            "conn-{i} holds the rotated credentials"
        );
    }
    delete_namespace(client, &team).await;
    drop(release);
    delete_namespace(client, &ops).await;
}

#[tokio::test]
async fn helm_uninstall_keeps_the_crd_and_every_connection_when_crds_keep_is_set() {
    let Some(w) = World::new("team-uninstall").await else {
        return;
    };
    let Some(node) = Node::get(&w.env) else {
        return;
    };
    let (env, client, team, prefix) = (&w.env, &w.client, w.ns.clone(), w.prefix.clone());
    let ops = w.namespace("vco-uninstall").await;
    let values = values(env, &node, &team, &prefix, 1);
    // The release takes the CRD over (as Helm adopts an object carrying its ownership marks),
    // so that uninstalling it decides the CRD's fate: crds.install=true, crds.keep=true.
    let (release, _) = {
        let release_name = unique("vco");
        for (kind, mark) in [
            (
                "annotate",
                format!("meta.helm.sh/release-name={release_name}"),
            ),
            ("annotate", format!("meta.helm.sh/release-namespace={ops}")),
            ("label", "app.kubernetes.io/managed-by=Helm".to_owned()),
        ] {
            env.kubectl(&[kind, "crd", CRD, "--overwrite", &mark])
                .expect_success();
        }
        let started = Instant::now();
        env.helm(&[
            "install",
            &release_name,
            CHART,
            "-n",
            &ops,
            "-f",
            values.path(),
            "--set",
            "crds.install=true",
            "--set",
            "crds.keep=true",
            "--wait",
            "--timeout",
            "180s",
        ])
        .expect_success();
        (release_name, started.elapsed())
    };
    w.apply(Credentials::secret("creds").token("ops_uninstall"))
        .await;
    w.apply(Connection::onepassword("conn").secret("creds"))
        .await;
    eventually(60, "the connection to be Ready", || async {
        all_ready(env, &team).then_some(())
    })
    .await;

    env.helm(&[
        "uninstall",
        &release,
        "-n",
        &ops,
        "--wait",
        "--timeout",
        "120s",
    ])
    .expect_success();
    eventually(60, "the operator's pods to be gone", || async {
        pods(client, &ops, &release).await.is_empty().then_some(())
    })
    .await;
    let crd = env
        .kubectl(&["get", "crd", CRD, "-o", "json"])
        .expect_success();
    let crd: Value = serde_json::from_str(&crd).expect("CRD JSON");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "the CRD survived uninstall because of crds.keep"
    );
    assert_eq!(
        version(&w.ssm, &w.param("conn")).await,
        Some(1),
        "the connection and its parameter stay"
    );
    env.kubectl(&["get", "vaultconnection", "conn", "-n", &team])
        .expect_success();

    // No operator runs any more, so its finalizer is removed by hand before the namespace goes.
    env.kubectl(&[
        "patch",
        "vaultconnection",
        "conn",
        "-n",
        &team,
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .expect_success();
    delete_namespace(client, &team).await;
    delete_namespace(client, &ops).await;
}
