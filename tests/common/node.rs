//! The test environment's real node (`hack/testenv.sh up --node`) and the operator image
//! `hack/image.sh --load` put into it, and the chart installed onto it: its pods, who holds the
//! Lease, whether the connections are Ready, and namespaces deleted the way the chart needs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::chart::{Release, ValuesFile};
use super::env::{TestEnv, skip};
use super::{CLUSTER, eventually, repo};

/// The node of the test environment and the image loaded into it.
pub struct Node {
    /// The containerd socket of the node (namespace k8s.io holds the kubelet's images).
    pub containerd: PathBuf,
    /// The image reference `hack/image.sh` built.
    pub image: String,
}

const HOW: &str = "the test node and the image (hack/testenv.sh up --node; hack/image.sh --load)";

impl Node {
    /// The node of ENV and the image loaded into it, or `None` after one line saying what is
    /// missing (a failure with `VCO_REQUIRE_TESTENV=1`).
    pub fn get(env: &TestEnv) -> Option<Node> {
        let Some(node) = &env.node else {
            return skip(HOW);
        };
        let Ok(image) = std::fs::read_to_string(repo().join("target/image/ref")) else {
            return skip(HOW);
        };
        let node = Node {
            containerd: node.containerd.clone(),
            image: image.trim().to_owned(),
        };
        let listed = node.ctr(&["images", "ls", "-q"]);
        assert!(
            listed.lines().any(|l| l == node.image),
            "{} is not in the node's containerd: {HOW}",
            node.image
        );
        Some(node)
    }

    /// The node of ENV without an image of the tests' own (for a test that has the node pull
    /// one), or `None` after one line saying it is missing.
    pub fn without_image(env: &TestEnv) -> Option<Node> {
        let Some(node) = &env.node else {
            return skip("the test node (hack/testenv.sh up --node)");
        };
        Some(Node {
            containerd: node.containerd.clone(),
            image: String::new(),
        })
    }

    /// `ctr -n k8s.io ARGS...` against the node's containerd; its standard output.
    pub fn ctr(&self, args: &[&str]) -> String {
        let (ok, out, err) = super::run(
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
    pub fn pid_of(&self, container_id: &str) -> u32 {
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
pub fn values(env: &TestEnv, node: &Node, team: &str, prefix: &str, replicas: u32) -> ValuesFile {
    values_for(&node.image, &env.ssm_endpoint, team, prefix, replicas)
}

/// Helm values that run IMAGE (from the node) with SSM at ENDPOINT and the emulator's
/// credentials, watching TEAM only, writing under PREFIX.
pub fn values_for(
    image: &str,
    endpoint: &str,
    team: &str,
    prefix: &str,
    replicas: u32,
) -> ValuesFile {
    let (repository, tag) = image.rsplit_once(':').expect("image ref has a tag");
    let mut values = operator_values(endpoint, team, prefix, replicas);
    values["image"] = json!({"repository": repository, "tag": tag, "pullPolicy": "Never"});
    ValuesFile::new(&serde_yaml::to_string(&values).expect("values YAML"))
}

/// Helm values (without `image`) that run the operator with SSM at ENDPOINT and the emulator's
/// credentials, watching TEAM only, writing under PREFIX.
pub fn operator_values(endpoint: &str, team: &str, prefix: &str, replicas: u32) -> Value {
    json!({
        "replicaCount": replicas,
        "operator": {
            "ssmPrefix": prefix,
            "clusterName": CLUSTER,
            "watchNamespaces": [team],
            "ssmWriteRate": 20,
            "leaseDuration": "6s",
        },
        "aws": {"region": "us-east-1"},
        "extraEnv": [
            {"name": "AWS_ENDPOINT_URL_SSM", "value": endpoint},
            {"name": "AWS_ACCESS_KEY_ID", "value": "testing"},
            {"name": "AWS_SECRET_ACCESS_KEY", "value": "testing"},
        ],
    })
}

/// `helm install --wait` of the chart; returns the release and how long until its pods were Ready.
pub fn install<'a>(
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
pub async fn pods(client: &Client, ns: &str, release: &str) -> Vec<Pod> {
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

pub fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Running, Ready (the kubelet's readiness probe answered) and never restarted (liveness).
pub fn serving(pod: &Pod) -> bool {
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
pub async fn leader(client: &Client, ns: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("vault-connection-operator")
        .await
        .ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

pub fn pod_logs(env: &TestEnv, ns: &str, pod: &str) -> String {
    env.kubectl(&["logs", "-n", ns, pod]).expect_success()
}

/// Whether every VaultConnection in NS reports Ready=True (and there is at least one).
pub fn all_ready(env: &TestEnv, ns: &str) -> bool {
    let out = env
        .kubectl(&["get", "vaultconnections", "-n", ns, "-o", "json"])
        .expect_success();
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

/// Deletes namespace NS and waits until it is gone (kube-controller-manager empties it first,
/// and the operator finalizes its connections: with `operator.watchNamespaces` its cluster-wide
/// rights on connections outlive the namespace's Role).
pub async fn delete_namespace(client: &Client, ns: &str) {
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
