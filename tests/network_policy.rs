//! The chart's NetworkPolicy as a real enforcer applies it: kube-network-policies (SIG Network's
//! implementation, nftables + NFQUEUE) on the test node, on top of the bridge CNI. Connections are
//! made from inside the pods' network namespaces: the operator's (its image has no shell) and bare
//! `pause` pods'.
//!
//! What the enforcer sees: traffic the host forwards — between pods, and from pods to the node's
//! link-local services (the Pod Identity agent 169.254.170.23 and IMDS 169.254.169.254, in a
//! network namespace of their own: hack/testenv/eks.sh). Traffic to the host's own addresses (the
//! API server and moto listen on the bridge address) never reaches its postrouting hook, as for
//! host-network endpoints in any cluster it runs in; the operator reaching them is shown by a
//! connection becoming Ready under the policy, and the port rules are shown on the link-local
//! addresses (a reset there means the packet was let through; silence, that it was dropped).
//!
//! Needs the node and the image (`hack/testenv.sh up --node`, `hack/image.sh --load`).

mod common;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use common::eks::{AGENT, IMDS};
use common::netns::{Reach, bare_pod, http_get, pid_and_ip, probe};
use common::node::{Node, all_ready, delete_namespace, install, pods, values};
use common::ssm::version;
use common::{Connection, Credentials, World, eventually, unique};

/// The namespace the chart's default `metricsFrom` names.
const MONITORING: &str = "monitoring";

/// Creates the `monitoring` namespace unless it exists; whether this call created it.
async fn monitoring_namespace(client: &kube::Client) -> bool {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(MONITORING).await.expect("get").is_some() {
        return false;
    }
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": MONITORING}})).expect("a namespace");
    namespaces.create(&PostParams::default(), &ns).await.is_ok()
}

#[tokio::test]
async fn with_the_charts_defaults_the_operator_reaches_dns_the_api_server_aws_and_the_agent_only() {
    let Some(w) = World::new("team-netpol").await else {
        return;
    };
    let Some(node) = Node::get(&w.env) else {
        return;
    };
    // A kernel without nftables' queue cannot run the enforcer (hack/testenv/eks.sh probes it
    // and says so). That is the machine's kernel, not a part the environment can install: the
    // test says why in one line and stops; tests/chart_network.rs still checks the rules.
    let unsupported = w.env.kubeconfig.with_file_name("netpol-unsupported");
    if let Ok(why) = std::fs::read_to_string(&unsupported) {
        let line = format!(
            "NOT RUN: NetworkPolicies cannot be enforced on this node's kernel: {}\n",
            why.trim()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        return;
    }
    let ops = w.namespace("vco-netpol").await;
    let other = w.namespace("netpol-other").await;
    // The chart's default policy (values() changes only image, endpoints, keys and namespaces).
    let (release, _) = install(
        &w.env,
        &ops,
        &values(&w.env, &node, &w.ns, &w.prefix, 1),
        &[],
    );
    let policy = release.manifest();
    assert_eq!(
        policy.of_kind("NetworkPolicy").len(),
        1,
        "the default policy"
    );

    // The API server (Lease, watches, status) and SSM on the host: the operator works under it.
    w.apply(Credentials::secret("creds").token("ops_netpol"))
        .await;
    w.apply(Connection::onepassword("conn").secret("creds"))
        .await;
    eventually(
        60,
        "the connection to be Ready under the policy",
        || async { all_ready(&w.env, &w.ns).then_some(()) },
    )
    .await;
    assert_eq!(version(&w.ssm, &w.param("conn")).await, Some(1));

    let operator = pods(&w.client, &ops, &release.name).await.remove(0);
    let (op, op_ip) = pid_and_ip(&node, &operator);
    let (target_ip, _) = bare_pod(&w.client, &node, &other, "target", json!({})).await;
    let (_, control) = bare_pod(&w.client, &node, &other, "control", json!({})).await;

    // The enforcer has learnt the pod once IMDS is dropped for it.
    eventually(
        90,
        "the operator's egress to IMDS to be dropped",
        || async { (probe(op, &format!("{IMDS}:80")) == Reach::Dropped).then_some(()) },
    )
    .await;
    for (to, expected, why) in [
        (
            format!("{AGENT}:80"),
            Reach::Connected,
            "the Pod Identity agent",
        ),
        (
            format!("{IMDS}:443"),
            Reach::Refused,
            "HTTPS (AWS) to anywhere",
        ),
        (format!("{IMDS}:53"), Reach::Refused, "DNS to anywhere"),
        (
            format!("{AGENT}:8080"),
            Reach::Dropped,
            "another port of the agent's address",
        ),
        (format!("{target_ip}:8080"), Reach::Dropped, "another pod"),
        (
            format!("{target_ip}:443"),
            Reach::Refused,
            "another pod, on an allowed port",
        ),
    ] {
        assert_eq!(probe(op, &to), expected, "from the operator to {to}: {why}");
    }
    // The same destinations from a pod no policy selects: the routes are there, so the drops
    // above are the policy's.
    assert_eq!(probe(control, &format!("{IMDS}:80")), Reach::Connected);
    assert_eq!(probe(control, &format!("{AGENT}:8080")), Reach::Refused);
    assert_eq!(probe(control, &format!("{target_ip}:8080")), Reach::Refused);

    // The metrics port answers Prometheus's namespace, and no other.
    let created_monitoring = monitoring_namespace(&w.client).await;
    let prom = unique("prometheus");
    let (_, from_monitoring) = bare_pod(&w.client, &node, MONITORING, &prom, json!({})).await;
    let metrics = format!("{op_ip}:8080");
    assert_eq!(
        http_get(from_monitoring, &metrics, "/metrics").as_deref(),
        Some("HTTP/1.1 200 OK"),
        "Prometheus scrapes"
    );
    assert_eq!(
        probe(control, &metrics),
        Reach::Dropped,
        "another namespace"
    );

    // Name another peer: it is let in, and the default one no longer.
    let peers = format!(
        r#"networkPolicy.metricsFrom=[{{"namespaceSelector":{{"matchLabels":{{"kubernetes.io/metadata.name":"{other}"}}}},"podSelector":{{"matchLabels":{{"role":"scraper"}}}}}}]"#
    );
    w.env
        .helm(&[
            "upgrade",
            &release.name,
            common::chart::CHART,
            "-n",
            &ops,
            "--reuse-values",
            "--set-json",
            &peers,
        ])
        .expect_success();
    let (_, scraper) = bare_pod(
        &w.client,
        &node,
        &other,
        "scraper",
        json!({"role": "scraper"}),
    )
    .await;
    eventually(30, "the new peer to be let in", || async {
        (probe(scraper, &metrics) == Reach::Connected).then_some(())
    })
    .await;
    assert_eq!(
        probe(from_monitoring, &metrics),
        Reach::Dropped,
        "no longer named"
    );
    assert_eq!(
        probe(control, &metrics),
        Reach::Dropped,
        "the same namespace, not the pod"
    );

    delete_namespace(&w.client, &w.ns).await;
    drop(release);
    delete_namespace(&w.client, &ops).await;
    delete_namespace(&w.client, &other).await;
    if created_monitoring {
        delete_namespace(&w.client, MONITORING).await;
    } else {
        let _ = w
            .env
            .kubectl(&["delete", "pod", "-n", MONITORING, &prom, "--wait=false"]);
    }
}
