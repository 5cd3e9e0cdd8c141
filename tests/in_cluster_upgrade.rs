//! The chart's lifecycle on the test environment's real node: `helm upgrade` rolls the pods
//! without losing or repeating a write, and `helm uninstall` with `crds.keep` leaves the CRD and
//! every connection in place. Needs the node and the image, like tests/in_cluster.rs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::chart::{CHART, CRD};
use common::fake_ssm::SsmProxy;
use common::node::*;
use common::ssm::version;
use common::{Connection, Credentials, World, eventually, repo, unique};

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

/// The operator pods that called SSM through PROXY, each with the times of its first and last
/// call (pods name themselves in the user agent: `app/<pod>`).
fn callers(proxy: &SsmProxy) -> BTreeMap<String, (Instant, Instant)> {
    let mut by_pod: BTreeMap<String, (Instant, Instant)> = BTreeMap::new();
    for call in proxy.calls() {
        let Some(pod) = call
            .user_agent
            .split_whitespace()
            .find_map(|part| part.strip_prefix("app/"))
        else {
            continue;
        };
        let span = by_pod.entry(pod.to_owned()).or_insert((call.at, call.at));
        span.0 = span.0.min(call.at);
        span.1 = span.1.max(call.at);
    }
    by_pod
}

#[tokio::test]
async fn helm_upgrade_with_one_replica_never_runs_two_operators_at_once() {
    const N: usize = 3;
    let Some(w) = World::new("team-recreate").await else {
        return;
    };
    let Some(node) = Node::get(&w.env) else {
        return;
    };
    let host = w.env.node.as_ref().expect("a node").host_ip.clone();
    let (proxy, endpoint) = SsmProxy::start_on(&host, w.env.ssm_endpoint.clone()).await;
    let (env, team) = (&w.env, w.ns.clone());
    let ops = w.namespace("vco-recreate").await;
    let values = values_for(&node.image, &endpoint, &team, &w.prefix, 1);
    let (release, _) = install(env, &ops, &values, &[]);
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

    env.helm(&[
        "upgrade",
        &release.name,
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
    .expect_success();
    for i in 0..N {
        w.rotate(
            &format!("creds-{i}"),
            "access_token",
            &format!("ops_v2_{i}"),
        )
        .await;
    }
    for i in 0..N {
        let param = w.param(&format!("conn-{i}"));
        eventually(60, &format!("the rotation of conn-{i} to land"), || async {
            (version(&w.ssm, &param).await == Some(2)).then_some(())
        })
        .await;
    }
    let spans = callers(&proxy);
    println!("SSM callers: {spans:?}");
    assert!(spans.len() >= 2, "the old pod and the new one: {spans:?}");
    let mut ordered: Vec<(Instant, Instant)> = spans.values().copied().collect();
    ordered.sort();
    for pair in ordered.windows(2) {
        assert!(
            pair[0].1 < pair[1].0,
            "two operators called SSM at once: {spans:?}"
        );
    }
    delete_namespace(&w.client, &team).await;
    drop(release);
    delete_namespace(&w.client, &ops).await;
}

/// The previous release as `hack/test.sh` prepares it: its source tree under `target/previous`
/// (the commit named in `hack/previous-release`) and its image in the node.
struct Previous {
    chart: String,
    image: String,
}

impl Previous {
    fn get() -> Option<Previous> {
        let root = repo().join("target/previous");
        let Ok(image) = std::fs::read_to_string(root.join("target/image/ref")) else {
            return common::env::skip("the previous release's image (hack/test.sh builds it)");
        };
        Some(Previous {
            chart: root
                .join("charts/vault-connection-operator")
                .display()
                .to_string(),
            image: image.trim().to_owned(),
        })
    }
}

#[tokio::test]
async fn upgrading_from_the_previous_release_writes_nothing_and_fills_the_new_status_fields() {
    const N: usize = 3;
    let Some(w) = World::new("team-previous").await else {
        return;
    };
    let Some(node) = Node::get(&w.env) else {
        return;
    };
    let Some(previous) = Previous::get() else {
        return;
    };
    let (env, team) = (&w.env, w.ns.clone());
    let ops = w.namespace("vco-previous").await;
    let old = values_for(&previous.image, &env.ssm_endpoint, &team, &w.prefix, 1);
    let release = unique("vco");
    env.helm(&[
        "install",
        &release,
        &previous.chart,
        "-n",
        &ops,
        "-f",
        old.path(),
        "--set",
        "crds.install=false",
        "--wait",
        "--timeout",
        "180s",
    ])
    .expect_success();
    for i in 0..N {
        let creds = format!("creds-{i}");
        w.apply(Credentials::secret(&creds).token(&format!("ops_{i}")))
            .await;
        w.apply(Connection::onepassword(&format!("conn-{i}")).secret(&creds))
            .await;
    }
    eventually(60, "every connection to be Ready", || async {
        all_ready(env, &team).then_some(())
    })
    .await;
    let versions = || async {
        let mut out = Vec::new();
        for i in 0..N {
            out.push(version(&w.ssm, &w.param(&format!("conn-{i}"))).await);
        }
        out
    };
    let before = versions().await;
    assert!(before.iter().all(|v| *v == Some(1)), "{before:?}");

    // Upgraded to this tree's chart and image, while a watcher checks Ready never drops.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let regressed = {
        let (env, team, watching) = (env.clone(), team.clone(), watching.clone());
        std::thread::spawn(move || {
            let mut regressed = false;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                regressed |= !all_ready(&env, &team);
                std::thread::sleep(Duration::from_millis(500));
            }
            regressed
        })
    };
    let new = values_for(&node.image, &env.ssm_endpoint, &team, &w.prefix, 1);
    env.helm(&[
        "upgrade",
        &release,
        CHART,
        "-n",
        &ops,
        "-f",
        new.path(),
        "--set",
        "crds.install=false",
        "--wait",
        "--timeout",
        "180s",
    ])
    .expect_success();
    // The first sweep completes each record (modification time), and each connection is
    // checked once under the recorded policy (one Secret read): no SSM write for either.
    for i in 0..N {
        let name = format!("conn-{i}");
        eventually(60, &format!("{name}'s new status fields"), || async {
            let vc = w.vcs().get(&name).await.ok()?;
            let p = vc.status?.parameter?;
            (p.last_modified.is_some() && p.policy.is_some()).then_some(())
        })
        .await;
    }
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let regressed = tokio::task::spawn_blocking(move || regressed.join().expect("watcher"))
        .await
        .expect("join");
    assert!(!regressed, "a connection was not Ready during the upgrade");
    assert_eq!(versions().await, before, "no SSM write");
    for i in 0..N {
        let history = w
            .ssm
            .get_parameter_history()
            .name(w.param(&format!("conn-{i}")))
            .send()
            .await
            .expect("parameter history");
        assert_eq!(history.parameters().len(), 1, "conn-{i}: one version only");
    }
    env.helm(&["uninstall", &release, "-n", &ops, "--wait"])
        .expect_success();
    for i in 0..N {
        env.kubectl(&[
            "patch",
            "vaultconnection",
            &format!("conn-{i}"),
            "-n",
            &team,
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ])
        .expect_success();
    }
    delete_namespace(&w.client, &team).await;
    delete_namespace(&w.client, &ops).await;
}
