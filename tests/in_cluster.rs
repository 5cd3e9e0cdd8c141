//! The operator as users run it: the image built by `hack/image.sh`, installed with `helm
//! install` onto the test environment's real node (`hack/testenv.sh up --node`), started by the
//! kubelet under the chart's security context, talking to the API server through in-cluster
//! config and the chart's own RBAC, and to the SSM emulator on the node's bridge. (Upgrades and
//! uninstalls: tests/in_cluster_upgrade.rs.)
//!
//! Needs the node and the image: `hack/testenv.sh up --node`, `hack/image.sh --load` (both done
//! by `hack/test.sh`). Figures (install to Ready, leader takeover) are printed, not asserted.

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;

use common::node::*;
use common::ssm::version;
use common::{Connection, Credentials, World, eventually, repo};

#[tokio::test]
async fn two_replicas_elect_a_leader_that_serves_every_provider_and_hands_over_when_deleted() {
    let Some(w) = World::new("team-incluster").await else {
        return;
    };
    let Some(node) = Node::get(&w.env) else {
        return;
    };
    let (env, client, team, prefix) = (&w.env, &w.client, w.ns.clone(), w.prefix.clone());
    let ops = w.namespace("vco-incluster").await;
    let values = values(env, &node, &team, &prefix, 2);
    let (release, took) = install(env, &ops, &values, &[]);
    println!("figure: helm install --wait to 2 Ready pods: {took:.1?}");

    let running = pods(client, &ops, &release.name).await;
    assert_eq!(running.len(), 2, "two replicas");
    assert!(
        running.iter().all(serving),
        "both pods Running, Ready, not restarted"
    );
    let first = eventually(30, "one pod to hold the Lease", || async {
        leader(client, &ops).await
    })
    .await;
    let names: BTreeSet<String> = running.iter().map(name).collect();
    assert!(names.contains(&first), "{first} is one of {names:?}");

    // One connection per provider, from the examples users start with.
    let examples = repo().join("examples");
    env.kubectl(&[
        "apply",
        "-n",
        &team,
        "-f",
        examples.to_str().expect("UTF-8"),
    ])
    .expect_success();
    eventually(60, "every example connection to be Ready", || async {
        all_ready(env, &team).then_some(())
    })
    .await;
    let ssm = &w.ssm;
    let param = |vc: &str| w.param(vc);
    for vc in [
        "onepassword-shared",
        "doppler-production",
        "infisical-staging",
    ] {
        assert_eq!(version(ssm, &param(vc)).await, Some(1), "{vc} written once");
    }
    let leader_logs = pod_logs(env, &ops, &first);
    assert!(leader_logs.contains("became leader"), "{leader_logs}");
    assert!(
        !leader_logs.to_lowercase().contains("forbidden"),
        "the chart's RBAC sufficed: {leader_logs}"
    );
    let standby = names.iter().find(|n| **n != first).expect("a standby");
    assert!(
        !pod_logs(env, &ops, standby).contains("became leader"),
        "only one leader"
    );

    // A rotation lands.
    w.rotate("doppler-credentials", "token", "dp.st.prd.ROTATED1")
        .await;
    eventually(30, "the rotation to land", || async {
        (version(ssm, &param("doppler-production")).await == Some(2)).then_some(())
    })
    .await;

    // The leader's pod goes; the other replica takes the Lease over and serves the next rotation.
    let deleted_at = Instant::now();
    Api::<Pod>::namespaced(client.clone(), &ops)
        .delete(&first, &DeleteParams::default())
        .await
        .expect("delete the leader's pod");
    let next = eventually(60, "another pod to take the Lease", || async {
        leader(client, &ops).await.filter(|l| *l != first)
    })
    .await;
    let takeover = deleted_at.elapsed();
    // The deleted leader releases the Lease on SIGTERM, so whichever replica asks first gets it:
    // usually the standby, sometimes the replacement pod the Deployment starts at once.
    assert_ne!(next, first, "a live replica holds the Lease");
    let by = if &next == standby {
        "the standby"
    } else {
        "the replacement pod"
    };
    println!("figure: the Lease went to {by}");
    w.rotate("doppler-credentials", "token", "dp.st.prd.ROTATED2")
        .await;
    eventually(
        60,
        "the next rotation, served by the new leader",
        || async { (version(ssm, &param("doppler-production")).await == Some(3)).then_some(()) },
    )
    .await;
    let served = deleted_at.elapsed();
    assert!(
        pod_logs(env, &ops, &next).contains("became leader"),
        "{next} leads now"
    );
    println!(
        "figure: leader pod deleted -> Lease taken over {takeover:.1?}, next rotation in SSM {served:.1?}"
    );

    // Deleting the team's namespace runs every finalizer: Delete-policy parameters go,
    // Retain-policy ones stay, and the namespace is really gone.
    delete_namespace(client, &team).await;
    assert_eq!(version(ssm, &param("doppler-production")).await, None);
    assert_eq!(version(ssm, &param("onepassword-shared")).await, None);
    assert_eq!(
        version(ssm, &param("infisical-staging")).await,
        Some(1),
        "deletionPolicy: Retain"
    );
    drop(release);
    delete_namespace(client, &ops).await;
}

/// One line of /proc/PID/status, e.g. `CapEff`.
fn proc_status(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn the_runtime_enforces_the_charts_security_context_and_the_operator_works_under_it() {
    let Some(w) = World::new("team-secctx").await else {
        return;
    };
    let Some(node) = Node::get(&w.env) else {
        return;
    };
    let (env, client, team, prefix) = (&w.env, &w.client, w.ns.clone(), w.prefix.clone());
    let ops = w.namespace("vco-secctx").await;
    let values = values(env, &node, &team, &prefix, 1);
    let (release, _) = install(env, &ops, &values, &[]);
    let pod = pods(client, &ops, &release.name)
        .await
        .pop()
        .expect("a pod");
    let container = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())
        .expect("a running container");
    let pid = node.pid_of(&container);

    // What the kernel says about the operator's process.
    assert_eq!(proc_status(pid, "Uid"), "65532 65532 65532 65532");
    assert_eq!(proc_status(pid, "Gid"), "65532 65532 65532 65532");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(pid, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert_eq!(proc_status(pid, "Seccomp"), "2", "RuntimeDefault filter");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .expect("a root mount");
    let options = root.split_whitespace().nth(5).expect("mount options");
    assert!(
        options.split(',').any(|o| o == "ro"),
        "read-only root: {root}"
    );

    // And the operator works under it: a connection becomes Ready and lands in SSM.
    w.apply(Credentials::secret("creds").token("ops_secctx"))
        .await;
    w.apply(Connection::onepassword("conn").secret("creds"))
        .await;
    eventually(60, "the connection to be Ready", || async {
        all_ready(env, &team).then_some(())
    })
    .await;
    assert_eq!(version(&w.ssm, &w.param("conn")).await, Some(1));
    let pod = Api::<Pod>::namespaced(client.clone(), &ops)
        .get(&name(&pod))
        .await
        .expect("get pod");
    assert!(serving(&pod), "still Ready and never restarted");
    delete_namespace(client, &team).await;
    drop(release);
    delete_namespace(client, &ops).await;
}
