//! The chart's networking as rendered: the metrics Service and optional ServiceMonitor, the
//! NetworkPolicy that admits only scrapes, probes and the egress the operator needs, and the
//! provider egress that verification opens. Needs only the environment's helm, no cluster.

mod common;

use serde_json::{Value, json};

use common::chart::{FULLNAME, Helm, Rendered};

/// The egress rule to the EKS Pod Identity agent (IPv4 and IPv6 addresses, port 80).
fn pod_identity_agent_rule() -> Value {
    json!({
        "ports": [{"port": 80, "protocol": "TCP"}],
        "to": [
            {"ipBlock": {"cidr": "169.254.170.23/32"}},
            {"ipBlock": {"cidr": "fd00:ec2::23/128"}}
        ]
    })
}

/// Every egress peer CIDR of the chart's main NetworkPolicy.
fn egress_cidrs(r: &Rendered) -> Vec<String> {
    r.find("NetworkPolicy", FULLNAME)["spec"]["egress"]
        .as_array()
        .expect("egress rules")
        .iter()
        .flat_map(|rule| rule["to"].as_array().cloned().unwrap_or_default())
        .filter_map(|peer| peer["ipBlock"]["cidr"].as_str().map(str::to_owned))
        .collect()
}

/// The verification NetworkPolicy, if rendered.
fn verification_policy(r: &Rendered) -> Option<Value> {
    r.get("NetworkPolicy", &format!("{FULLNAME}-verification"))
        .cloned()
}

#[test]
fn the_metrics_service_and_optional_service_monitor_use_the_metrics_port() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let r = helm.render(&[]);
    let service = r.find_in("Service", &format!("{FULLNAME}-metrics"), "ops");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
    );
    assert!(
        r.of_kind("ServiceMonitor").is_empty(),
        "no ServiceMonitor by default"
    );
    assert_eq!(
        r.of_kind("NetworkPolicy").len(),
        1,
        "a NetworkPolicy by default"
    );

    // The ServiceMonitor CRD is not in the test environment: check the rendering only.
    let with_monitor = helm.render(&["--set", "metrics.serviceMonitor.enabled=true"]);
    let monitor = with_monitor.find_in("ServiceMonitor", FULLNAME, "ops");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
}

#[test]
fn the_network_policy_is_on_by_default_and_admits_only_scrapes_probes_and_needed_egress() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let r = helm.render(&[]);
    let policy = r.find_in("NetworkPolicy", FULLNAME, "ops");
    let spec = &policy["spec"];
    assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        spec["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "rel"
    );
    assert_eq!(
        spec["ingress"],
        json!([{
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"port": "metrics", "protocol": "TCP"}]
        }]),
        "by default only Prometheus in the monitoring namespace reaches the metrics/health port"
    );
    let egress_ports: Vec<(Value, Value)> = spec["egress"]
        .as_array()
        .expect("egress rules")
        .iter()
        .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
        .map(|p| (p["port"].clone(), p["protocol"].clone()))
        .collect();
    assert_eq!(
        egress_ports,
        vec![
            (json!(53), json!("UDP")),
            (json!(53), json!("TCP")),
            (json!(443), json!("TCP")),
            (json!(6443), json!("TCP")),
            (json!(80), json!("TCP")),
        ],
        "egress: DNS, the API server and HTTPS (AWS), and the Pod Identity agent only"
    );
    assert_eq!(
        spec["egress"][2],
        pod_identity_agent_rule(),
        "port 80 only to the EKS Pod Identity agent's two addresses"
    );

    // Node CIDRs for the kubelet's probes, on a CNI that does not exempt them.
    let r = helm.render_values(
        r#"
networkPolicy:
  metricsFrom:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: observability
  probesFrom:
    - ipBlock:
        cidr: 10.0.0.0/16
"#,
    );
    let policy = r.find_in("NetworkPolicy", FULLNAME, "ops");
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{
            "from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}},
                {"ipBlock": {"cidr": "10.0.0.0/16"}}
            ],
            "ports": [{"port": "metrics", "protocol": "TCP"}]
        }])
    );

    let closed = helm.render(&["--set-json", "networkPolicy.metricsFrom=[]"]);
    let policy = closed.find("NetworkPolicy", FULLNAME);
    assert_eq!(
        policy["spec"]["ingress"],
        json!([]),
        "no peers configured: no ingress at all"
    );

    let off = helm.render(&["--set", "networkPolicy.enabled=false"]);
    assert!(
        off.of_kind("NetworkPolicy").is_empty(),
        "it can be turned off"
    );
}

#[test]
fn provider_egress_is_opened_only_while_verification_and_the_network_policy_are_on() {
    let Some(helm) = Helm::find() else {
        return;
    };
    assert!(
        verification_policy(&helm.render(&["--set", "networkPolicy.enabled=true"])).is_none(),
        "verification off: no provider egress"
    );
    assert!(
        verification_policy(&helm.render(&[
            "--set",
            "networkPolicy.enabled=false",
            "--set",
            "operator.verification.enabled=true"
        ]))
        .is_none(),
        "no NetworkPolicy at all: nothing to open"
    );
    let r = helm.render_values(
        r#"
networkPolicy:
  enabled: true
operator:
  verification:
    enabled: true
    infisicalUrl: https://infisical.internal.example:8443
    egressTo:
      - ipBlock: {cidr: 203.0.113.0/24}
"#,
    );
    let policy = verification_policy(&r).expect("a verification policy");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Egress"]));
    assert_eq!(
        policy["spec"]["egress"],
        json!([{
            "ports": [{"port": 443, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
        }])
    );
    let main = r.find("NetworkPolicy", FULLNAME);
    assert_eq!(
        policy["spec"]["podSelector"], main["spec"]["podSelector"],
        "both policies select the operator pods"
    );
}

#[test]
fn the_pod_identity_agent_is_reachable_and_imds_is_neither_reachable_nor_used_by_default() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let r = helm.render(&[]);
    assert_eq!(
        r.env("AWS_EC2_METADATA_DISABLED").as_deref(),
        Some("true"),
        "no fallback to the node's instance role by default"
    );
    let cidrs = egress_cidrs(&r);
    assert!(cidrs.contains(&"169.254.170.23/32".to_owned()), "{cidrs:?}");
    assert!(cidrs.contains(&"fd00:ec2::23/128".to_owned()), "{cidrs:?}");
    assert!(
        !cidrs.contains(&"169.254.169.254/32".to_owned()),
        "IMDS is not opened by default: {cidrs:?}"
    );

    // The documented way back to the node's role: the SDK may ask IMDS, and the policy lets it.
    let fallback = helm.render(&["--set", "aws.imdsFallback=true"]);
    assert_eq!(fallback.env("AWS_EC2_METADATA_DISABLED"), None);
    let rules = fallback.find("NetworkPolicy", FULLNAME)["spec"]["egress"].clone();
    assert!(
        rules.as_array().expect("rules").contains(&json!({
            "ports": [{"port": 80, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]
        })),
        "{rules}"
    );

    // Off the agent's rule goes, and nothing else opens port 80.
    let without = helm.render(&["--set", "networkPolicy.podIdentityAgent=false"]);
    assert!(
        egress_cidrs(&without).is_empty(),
        "{:?}",
        egress_cidrs(&without)
    );

    let schema = helm.run(&[
        "template",
        "rel",
        common::chart::CHART,
        "--set",
        "aws.imdsFallback=yes",
    ]);
    assert!(!schema.success, "the schema wants a boolean");
}
