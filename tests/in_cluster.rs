//! The operator as users run it: the image built by `hack/image.sh`, installed with `helm
//! install` onto the test environment's real node (`hack/testenv.sh up --node`), started by the
//! kubelet under the chart's security context, talking to the API server through in-cluster
//! config and the chart's own RBAC, and to the SSM emulator on the node's bridge.
//!
//! Needs the node and the image: `hack/testenv.sh up --node`, `hack/image.sh --load` (both done
//! by `hack/test.sh`). Figures (install to Ready, leader takeover) are printed, not asserted.

mod chart_support;
mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_ssm::error::ProvideErrorMetadata;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use chart_support::{CHART, CRD, Release, ValuesFile, helm, kubectl};
use common::{TestEnv, eventually, install_crd, namespace, repo, unique};

/// The node of the test environment and the image loaded into it.
struct Node {
    /// The containerd socket of the node (namespace k8s.io holds the kubelet's images).
    containerd: PathBuf,
    /// The image reference `hack/image.sh` built.
    image: String,
}

const HOW: &str = "needs the test node and the image: run `hack/testenv.sh up --node` and \
                   `hack/image.sh --load` (or `hack/test.sh`)";

impl Node {
    fn get() -> Node {
        let containerd = TestEnv::get()
            .node
            .unwrap_or_else(|| panic!("no test node: {HOW}"))
            .containerd;
        let image = std::fs::read_to_string(repo().join("target/image/ref"))
            .unwrap_or_else(|e| panic!("no image ({e}): {HOW}"))
            .trim()
            .to_owned();
        let node = Node { containerd, image };
        let listed = node.ctr(&["images", "ls", "-q"]);
        assert!(
            listed.lines().any(|l| l == node.image),
            "{} is not in the node's containerd: {HOW}",
            node.image
        );
        node
    }

    /// `ctr -n k8s.io ARGS...` against the node's containerd; its standard output.
    fn ctr(&self, args: &[&str]) -> String {
        let (ok, out, err) = common::run(
            std::process::Command::new("ctr")
                .arg("--address")
                .arg(&self.containerd)
                .args(["-n", "k8s.io"])
                .args(args),
        );
        assert!(ok, "ctr {args:?}: {err}");
        out
    }

    /// The host pid of a running container, from its CRI id (`containerd://ID`).
    fn pid_of(&self, container_id: &str) -> u32 {
        let id = container_id
            .strip_prefix("containerd://")
            .unwrap_or(container_id);
        self.ctr(&["tasks", "ls"])
            .lines()
            .find_map(|l| {
                let mut cols = l.split_whitespace();
                (cols.next()? == id).then(|| cols.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no task for container {id}"))
    }
}

/// Helm values that run the image from the node with its SSM emulator and credentials, watching
/// TEAM only, writing under PREFIX.
fn values(env: &TestEnv, node: &Node, team: &str, prefix: &str, replicas: u32) -> ValuesFile {
    let (repository, tag) = node.image.rsplit_once(':').expect("image ref has a tag");
    let values = json!({
        "replicaCount": replicas,
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "operator": {
            "ssmPrefix": prefix,
            "clusterName": "default",
            "watchNamespaces": [team],
            "ssmWriteRate": 20,
            "leaseDuration": "6s",
        },
        "aws": {"region": "us-east-1"},
        "extraEnv": [
            {"name": "AWS_ENDPOINT_URL_SSM", "value": env.ssm_endpoint},
            {"name": "AWS_ACCESS_KEY_ID", "value": "testing"},
            {"name": "AWS_SECRET_ACCESS_KEY", "value": "testing"},
            {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
        ],
    });
    ValuesFile::new(&serde_yaml::to_string(&values).expect("values YAML"))
}

/// `helm install --wait` of the chart; returns the release and how long until its pods were Ready.
fn install<'a>(
    env: &'a TestEnv,
    ns: &str,
    values: &ValuesFile,
    extra: &[&str],
) -> (Release<'a>, Duration) {
    let started = Instant::now();
    let mut args = vec!["-f", values.path(), "--wait", "--timeout", "180s"];
    args.extend_from_slice(extra);
    let release = Release::install(env, ns, &args);
    (release, started.elapsed())
}

/// The release's pods (not yet terminating).
async fn pods(client: &Client, ns: &str, release: &str) -> Vec<Pod> {
    let selector = format!("app.kubernetes.io/instance={release}");
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Running, Ready (the kubelet's readiness probe answered) and never restarted (liveness).
fn serving(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let restarts: i32 = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .sum();
    status.phase.as_deref() == Some("Running") && ready && restarts == 0
}

/// The pod holding the operator's Lease in NS.
async fn leader(client: &Client, ns: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("vault-connection-operator")
        .await
        .ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

fn logs(env: &TestEnv, ns: &str, pod: &str) -> String {
    kubectl(env, &["logs", "-n", ns, pod]).expect_success()
}

/// Whether every VaultConnection in NS reports Ready=True (and there is at least one).
fn all_ready(env: &TestEnv, ns: &str) -> bool {
    let out = kubectl(env, &["get", "vaultconnections", "-n", ns, "-o", "json"]).expect_success();
    let list: Value = serde_json::from_str(&out).expect("kubectl JSON");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    !items.is_empty()
        && items.iter().all(|vc| {
            vc["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Version of SSM parameter NAME, None while it does not exist.
async fn version(ssm: &aws_sdk_ssm::Client, name: &str) -> Option<i64> {
    match ssm.get_parameter().name(name).send().await {
        Ok(out) => out.parameter.map(|p| p.version),
        Err(e) if e.code() == Some("ParameterNotFound") => None,
        Err(e) => panic!("get {name}: {e:?}"),
    }
}

/// Sets KEY of Secret NAME in NS to VALUE (a rotation).
async fn rotate(client: &Client, ns: &str, name: &str, key: &str, value: &str) {
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {key: value}})),
        )
        .await
        .expect("rotate secret");
}

/// Deletes namespace NS and waits until it is gone (kube-controller-manager empties it first).
///
/// With `operator.watchNamespaces` the operator's rights in a namespace are a Role in that
/// namespace, which namespace deletion removes as early as the connections: the operator can
/// then no longer remove its finalizers and the namespace stays Terminating. So connections are
/// deleted (and finalized) first, while the Role still exists.
async fn delete_namespace(client: &Client, ns: &str) {
    let connections: Api<vault_connection_operator::api::VaultConnection> =
        Api::namespaced(client.clone(), ns);
    connections
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete connections");
    eventually(
        60,
        &format!("the connections in {ns} to be finalized"),
        || async {
            connections
                .list(&ListParams::default())
                .await
                .expect("list connections")
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    eventually(120, &format!("namespace {ns} to be deleted"), || async {
        namespaces
            .get_opt(ns)
            .await
            .expect("get namespace")
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn two_replicas_elect_a_leader_that_serves_every_provider_and_hands_over_when_deleted() {
    let env = TestEnv::get();
    let node = Node::get();
    let client = env.kube().await;
    install_crd(&client).await;
    let ops = namespace(&client, "vco-incluster").await;
    let team = namespace(&client, "team-incluster").await;
    let prefix = format!("/{}", unique("incluster"));
    let values = values(&env, &node, &team, &prefix, 2);
    let (release, took) = install(&env, &ops, &values, &[]);
    println!("figure: helm install --wait to 2 Ready pods: {took:.1?}");

    let running = pods(&client, &ops, &release.name).await;
    assert_eq!(running.len(), 2, "two replicas");
    assert!(
        running.iter().all(serving),
        "both pods Running, Ready, not restarted"
    );
    let first = eventually(30, "one pod to hold the Lease", || async {
        leader(&client, &ops).await
    })
    .await;
    let names: BTreeSet<String> = running.iter().map(name).collect();
    assert!(names.contains(&first), "{first} is one of {names:?}");

    // One connection per provider, from the examples users start with.
    let examples = repo().join("examples");
    kubectl(
        &env,
        &[
            "apply",
            "-n",
            &team,
            "-f",
            examples.to_str().expect("UTF-8"),
        ],
    )
    .expect_success();
    eventually(60, "every example connection to be Ready", || async {
        all_ready(&env, &team).then_some(())
    })
    .await;
    let ssm = env.ssm().await;
    let param = |vc: &str| format!("{prefix}/default/{team}/{vc}");
    for vc in [
        "onepassword-shared",
        "doppler-production",
        "infisical-staging",
    ] {
        assert_eq!(
            version(&ssm, &param(vc)).await,
            Some(1),
            "{vc} written once"
        );
    }
    let leader_logs = logs(&env, &ops, &first);
    assert!(leader_logs.contains("became leader"), "{leader_logs}");
    assert!(
        !leader_logs.to_lowercase().contains("forbidden"),
        "the chart's RBAC sufficed: {leader_logs}"
    );
    let standby = names.iter().find(|n| **n != first).expect("a standby");
    assert!(
        !logs(&env, &ops, standby).contains("became leader"),
        "only one leader"
    );

    // A rotation lands.
    rotate(
        &client,
        &team,
        "doppler-credentials",
        "token",
        "dp.st.prd.ROTATED1",
    )
    .await;
    eventually(30, "the rotation to land", || async {
        (version(&ssm, &param("doppler-production")).await == Some(2)).then_some(())
    })
    .await;

    // The leader's pod goes; the other replica takes the Lease over and serves the next rotation.
    let deleted_at = Instant::now();
    Api::<Pod>::namespaced(client.clone(), &ops)
        .delete(&first, &DeleteParams::default())
        .await
        .expect("delete the leader's pod");
    let next = eventually(60, "another pod to take the Lease", || async {
        leader(&client, &ops).await.filter(|l| *l != first)
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
    rotate(
        &client,
        &team,
        "doppler-credentials",
        "token",
        "dp.st.prd.ROTATED2",
    )
    .await;
    eventually(
        60,
        "the next rotation, served by the new leader",
        || async { (version(&ssm, &param("doppler-production")).await == Some(3)).then_some(()) },
    )
    .await;
    let served = deleted_at.elapsed();
    assert!(
        logs(&env, &ops, &next).contains("became leader"),
        "{next} leads now"
    );
    println!(
        "figure: leader pod deleted -> Lease taken over {takeover:.1?}, next rotation in SSM {served:.1?}"
    );

    // Deleting the team's namespace runs every finalizer: Delete-policy parameters go,
    // Retain-policy ones stay, and the namespace is really gone.
    delete_namespace(&client, &team).await;
    assert_eq!(version(&ssm, &param("doppler-production")).await, None);
    assert_eq!(version(&ssm, &param("onepassword-shared")).await, None);
    assert_eq!(
        version(&ssm, &param("infisical-staging")).await,
        Some(1),
        "deletionPolicy: Retain"
    );
    drop(release);
    delete_namespace(&client, &ops).await;
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
    let env = TestEnv::get();
    let node = Node::get();
    let client = env.kube().await;
    install_crd(&client).await;
    let ops = namespace(&client, "vco-secctx").await;
    let team = namespace(&client, "team-secctx").await;
    let prefix = format!("/{}", unique("secctx"));
    let values = values(&env, &node, &team, &prefix, 1);
    let (release, _) = install(&env, &ops, &values, &[]);
    let pod = pods(&client, &ops, &release.name)
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
    env.apply(
        &team,
        r#"apiVersion: v1
kind: Secret
metadata: {name: creds, labels: {vaultconnections.io/credentials: "true"}}
stringData: {access_token: "ops_secctx"}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: conn}
spec: {vaultType: onepassword, credentialsSecretRef: {name: creds}}
"#,
    );
    eventually(60, "the connection to be Ready", || async {
        all_ready(&env, &team).then_some(())
    })
    .await;
    let ssm = env.ssm().await;
    assert_eq!(
        version(&ssm, &format!("{prefix}/default/{team}/conn")).await,
        Some(1)
    );
    let pod = Api::<Pod>::namespaced(client.clone(), &ops)
        .get(&name(&pod))
        .await
        .expect("get pod");
    assert!(serving(&pod), "still Ready and never restarted");
    delete_namespace(&client, &team).await;
    drop(release);
    delete_namespace(&client, &ops).await;
}

#[tokio::test]
async fn helm_upgrade_rolls_the_pods_without_losing_or_repeating_a_write() {
    const N: usize = 4;
    let env = TestEnv::get();
    let node = Node::get();
    let client = env.kube().await;
    install_crd(&client).await;
    let ops = namespace(&client, "vco-upgrade").await;
    let team = namespace(&client, "team-upgrade").await;
    let prefix = format!("/{}", unique("upgrade"));
    let values = values(&env, &node, &team, &prefix, 2);
    let (release, _) = install(&env, &ops, &values, &[]);
    let before: BTreeSet<String> = pods(&client, &ops, &release.name)
        .await
        .iter()
        .map(name)
        .collect();
    for i in 0..N {
        env.apply(
            &team,
            &format!(
                r#"apiVersion: v1
kind: Secret
metadata: {{name: creds-{i}, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{access_token: "ops_v1_{i}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: conn-{i}}}
spec: {{vaultType: onepassword, credentialsSecretRef: {{name: creds-{i}}}}}
"#
            ),
        );
    }
    eventually(60, "every connection to be Ready", || async {
        all_ready(&env, &team).then_some(())
    })
    .await;

    // Changed values roll the Deployment; rotations arrive while the pods are replaced.
    let upgrade = {
        let env = env.clone();
        let release = release.name.clone();
        let ops = ops.clone();
        std::thread::spawn(move || {
            helm(
                &env,
                &[
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
                ],
            )
        })
    };
    for i in 0..N {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        rotate(
            &client,
            &team,
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

    let after: BTreeSet<String> = pods(&client, &ops, &release.name)
        .await
        .iter()
        .map(name)
        .collect();
    assert!(
        before.is_disjoint(&after),
        "every pod was replaced: {before:?} -> {after:?}"
    );
    let ssm = env.ssm().await;
    for i in 0..N {
        let param = format!("{prefix}/default/{team}/conn-{i}");
        eventually(60, &format!("the rotation of conn-{i} to land"), || async {
            (version(&ssm, &param).await == Some(2)).then_some(())
        })
        .await;
    }
    // Settle past a Lease duration: nobody writes again once the new leader has caught up.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for i in 0..N {
        let param = format!("{prefix}/default/{team}/conn-{i}");
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
    delete_namespace(&client, &team).await;
    drop(release);
    delete_namespace(&client, &ops).await;
}

#[tokio::test]
async fn helm_uninstall_keeps_the_crd_and_every_connection_when_crds_keep_is_set() {
    let env = TestEnv::get();
    let node = Node::get();
    let client = env.kube().await;
    install_crd(&client).await;
    let ops = namespace(&client, "vco-uninstall").await;
    let team = namespace(&client, "team-uninstall").await;
    let prefix = format!("/{}", unique("uninstall"));
    let values = values(&env, &node, &team, &prefix, 1);
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
            kubectl(&env, &[kind, "crd", CRD, "--overwrite", &mark]).expect_success();
        }
        let started = Instant::now();
        helm(
            &env,
            &[
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
            ],
        )
        .expect_success();
        (release_name, started.elapsed())
    };
    env.apply(
        &team,
        r#"apiVersion: v1
kind: Secret
metadata: {name: creds, labels: {vaultconnections.io/credentials: "true"}}
stringData: {access_token: "ops_uninstall"}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: conn}
spec: {vaultType: onepassword, credentialsSecretRef: {name: creds}}
"#,
    );
    eventually(60, "the connection to be Ready", || async {
        all_ready(&env, &team).then_some(())
    })
    .await;

    helm(
        &env,
        &[
            "uninstall",
            &release,
            "-n",
            &ops,
            "--wait",
            "--timeout",
            "120s",
        ],
    )
    .expect_success();
    eventually(60, "the operator's pods to be gone", || async {
        pods(&client, &ops, &release).await.is_empty().then_some(())
    })
    .await;
    let crd = kubectl(&env, &["get", "crd", CRD, "-o", "json"]).expect_success();
    let crd: Value = serde_json::from_str(&crd).expect("CRD JSON");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "the CRD survived uninstall because of crds.keep"
    );
    let ssm = env.ssm().await;
    let param = format!("{prefix}/default/{team}/conn");
    assert_eq!(
        version(&ssm, &param).await,
        Some(1),
        "the connection and its parameter stay"
    );
    kubectl(&env, &["get", "vaultconnection", "conn", "-n", &team]).expect_success();

    // No operator runs any more, so its finalizer is removed by hand before the namespace goes.
    kubectl(
        &env,
        &[
            "patch",
            "vaultconnection",
            "conn",
            "-n",
            &team,
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    )
    .expect_success();
    delete_namespace(&client, &team).await;
    delete_namespace(&client, &ops).await;
}
