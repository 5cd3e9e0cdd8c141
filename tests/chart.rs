//! The Helm chart (charts/vault-connection-operator) as users meet it: `helm lint` and the values
//! schema, what the templates render from the values (the flag contract with the operator), the
//! manifests accepted by a real API server, `helm install`, and the RBAC it grants, checked by
//! asking the API server with impersonation.
//!
//! kube-controller-manager runs in the test environment and fills the aggregated built-in
//! ClusterRoles (`admin`, `edit`, `view`): the RBAC tests bind people to those, as a cluster's
//! administrators do, and a separate test checks the selectors that pick the chart's roles up.

mod chart_support;
mod common;

use serde_json::{Value, json};

use chart_support::*;
use common::{TestEnv, namespace};

// ---- lint and schema ------------------------------------------------------------------------

#[test]
fn helm_lint_accepts_the_default_values() {
    let env = TestEnv::get();
    helm(&env, &["lint", CHART, "--strict"]).expect_success();
}

#[test]
fn helm_lint_rejects_a_replica_count_that_is_not_a_number() {
    let env = TestEnv::get();
    let values = ValuesFile::new("replicaCount: \"two\"\n");
    let err = helm(&env, &["lint", CHART, "-f", values.path()]).expect_failure();
    assert!(
        err.contains("/replicaCount"),
        "the error names the field: {err}"
    );
}

#[test]
fn helm_lint_rejects_a_default_tier_that_has_no_limit() {
    let env = TestEnv::get();
    let values = ValuesFile::new("operator:\n  defaultTier: gold\n");
    let err = helm(&env, &["lint", CHART, "-f", values.path()]).expect_failure();
    assert!(
        err.contains("operator.defaultTier")
            && err.contains("gold")
            && err.contains("is not a key of operator.tierLimits"),
        "the error names the value and where tiers are defined: {err}"
    );
}

#[test]
fn the_values_schema_rejects_wrong_types_unknown_keys_and_malformed_flags() {
    let env = TestEnv::get();
    let cases = [
        ("replicas: 2\n", "additional properties 'replicas'"),
        (
            "operator:\n  ssmPrefixx: /x\n",
            "additional properties 'ssmPrefixx'",
        ),
        (
            "operator:\n  tierLimits: {free: lots}\n",
            "/operator/tierLimits/free",
        ),
        (
            "operator:\n  tierLimits: {free: -1}\n",
            "/operator/tierLimits/free",
        ),
        (
            "operator:\n  tierLimits: {\"bad,tier\": 1}\n",
            "invalid propertyName 'bad,tier'",
        ),
        (
            "operator:\n  defaultTier: \"bad=tier\"\n",
            "/operator/defaultTier",
        ),
        ("operator:\n  logLevel: verbose\n", "/operator/logLevel"),
        ("operator:\n  logFormat: xml\n", "/operator/logFormat"),
        (
            "operator:\n  driftCheckInterval: 5 minutes\n",
            "/operator/driftCheckInterval",
        ),
        ("operator:\n  concurrency: 0\n", "/operator/concurrency"),
        ("operator:\n  ssmWriteRate: 0\n", "/operator/ssmWriteRate"),
        (
            "operator:\n  ssmPrefix: no-leading-slash\n",
            "/operator/ssmPrefix",
        ),
        (
            "operator:\n  watchNamespaces: [Team_A]\n",
            "/operator/watchNamespaces/0",
        ),
        (
            "operator:\n  watchNamespaces: team-a\n",
            "/operator/watchNamespaces",
        ),
        (
            "leaderElection:\n  enabled: \"auto\"\n",
            "/leaderElection/enabled",
        ),
        ("aws:\n  region: Frankfurt\n", "/aws/region"),
        ("extraEnv:\n  - value: x\n", "/extraEnv/0"),
        (
            "podAnnotations:\n  prometheus.io/port: 8080\n",
            "/podAnnotations/prometheus.io~1port",
        ),
        // ---- alerts and dashboard
        (
            "prometheusRule:\n  enabled: \"yes\"\n",
            "/prometheusRule/enabled",
        ),
        (
            "prometheusRule:\n  severityy: page\n",
            "additional properties 'severityy'",
        ),
        (
            "prometheusRule:\n  notReadyFor: 15 minutes\n",
            "/prometheusRule/notReadyFor",
        ),
        (
            "prometheusRule:\n  disabled: [VaultConnectionNotReadyy]\n",
            "/prometheusRule/disabled/0",
        ),
        (
            "prometheusRule:\n  alertLabels: {team: 1}\n",
            "/prometheusRule/alertLabels/team",
        ),
        (
            "prometheusRule:\n  alertLabels: {team-name: a}\n",
            "invalid propertyName 'team-name'",
        ),
        ("prometheusRule:\n  job: 'a\"b'\n", "/prometheusRule/job"),
        (
            "dashboard:\n  labels: {grafana_dashboard: 1}\n",
            "/dashboard/labels/grafana_dashboard",
        ),
        (
            "dashboard:\n  namespace: Monitoring\n",
            "/dashboard/namespace",
        ),
    ];
    let mut wrong = Vec::new();
    for (values, expected) in cases {
        let file = ValuesFile::new(values);
        let out = helm(&env, &["lint", CHART, "-f", file.path()]);
        let text = format!("{}{}", out.stderr, out.stdout);
        if out.success || !text.contains(expected) {
            wrong.push(format!(
                "values {values:?}: expected a failure mentioning {expected:?}, got: {text}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---- what the templates render ----------------------------------------------------------------

#[test]
fn every_operator_flag_is_passed_as_an_environment_variable_with_its_default() {
    let env = TestEnv::get();
    let objects = template(&env, "rel", "ops", &[]);
    let container = operator_container(find(
        &objects,
        "Deployment",
        "rel-vault-connection-operator",
        Some("ops"),
    ));
    let expected = [
        ("VCO_SSM_PREFIX", "/vault-connections"),
        ("VCO_CLUSTER_NAME", ""),
        ("VCO_ADOPT_LEGACY_PARAMETERS", "false"),
        ("VCO_CONCURRENCY", "4"),
        ("VCO_DRIFT_CHECK_INTERVAL", "5m"),
        ("VCO_SSM_WRITE_RATE", "3"),
        ("VCO_SSM_READ_RATE", "20"),
        ("VCO_SSM_TIMEOUT", "10s"),
        ("VCO_TIER_LIMITS", "enterprise=unlimited,free=1,team=10"),
        ("VCO_DEFAULT_TIER", "team"),
        ("VCO_LOG_FORMAT", "json"),
        ("VCO_LOG_LEVEL", "info"),
        ("VCO_LEADER_ELECTION", "true"),
        ("VCO_LEASE_NAME", "vault-connection-operator"),
        ("VCO_LEASE_DURATION", "15s"),
        ("VCO_METRICS_ADDR", "0.0.0.0:8080"),
    ];
    for (name, value) in expected {
        assert_eq!(env_value(container, name).as_deref(), Some(value), "{name}");
    }
    for unset in ["VCO_NAMESPACES", "VCO_DEFAULT_KMS_KEY_ID", "AWS_REGION"] {
        assert_eq!(
            env_value(container, unset),
            None,
            "{unset} is omitted while its value is empty"
        );
    }
    let env_vars = container["env"].as_array().expect("env");
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env_vars
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{name} is set"));
        assert_eq!(
            var["valueFrom"]["fieldRef"]["fieldPath"], field,
            "{name} comes from the downward API"
        );
    }
}

#[test]
fn non_default_values_reach_the_operator_flags() {
    let env = TestEnv::get();
    let values = ValuesFile::new(
        r#"
replicaCount: 1
operator:
  ssmPrefix: /platform/vault
  clusterName: prod-eu
  defaultKmsKeyId: alias/vault-connections
  watchNamespaces: [team-b, team-a]
  concurrency: 16
  driftCheckInterval: 1h30m
  ssmWriteRate: 0.5
  ssmReadRate: 7.5
  ssmTimeout: 3s
  tierLimits: {gold: 1000000, bronze: 0, silver: unlimited, free: null, team: null, enterprise: null}
  defaultTier: bronze
  logFormat: text
  logLevel: debug
  leaseName: vco-leader
  leaseDuration: 30s
aws:
  region: eu-central-1
extraEnv:
  - name: AWS_ENDPOINT_URL_SSM
    value: http://ssm.example:4566
"#,
    );
    let objects = template(&env, "rel", "ops", &["-f", values.path()]);
    let container = operator_container(find(
        &objects,
        "Deployment",
        "rel-vault-connection-operator",
        None,
    ));
    let expected = [
        ("VCO_SSM_PREFIX", "/platform/vault"),
        ("VCO_CLUSTER_NAME", "prod-eu"),
        ("VCO_DEFAULT_KMS_KEY_ID", "alias/vault-connections"),
        ("VCO_NAMESPACES", "team-b,team-a"),
        ("VCO_CONCURRENCY", "16"),
        ("VCO_DRIFT_CHECK_INTERVAL", "1h30m"),
        ("VCO_SSM_WRITE_RATE", "0.5"),
        ("VCO_SSM_READ_RATE", "7.5"),
        ("VCO_SSM_TIMEOUT", "3s"),
        ("VCO_TIER_LIMITS", "bronze=0,gold=1000000,silver=unlimited"),
        ("VCO_DEFAULT_TIER", "bronze"),
        ("VCO_LOG_FORMAT", "text"),
        ("VCO_LOG_LEVEL", "debug"),
        ("VCO_LEADER_ELECTION", "false"),
        ("VCO_LEASE_NAME", "vco-leader"),
        ("VCO_LEASE_DURATION", "30s"),
        ("AWS_REGION", "eu-central-1"),
        ("AWS_ENDPOINT_URL_SSM", "http://ssm.example:4566"),
    ];
    for (name, value) in expected {
        assert_eq!(env_value(container, name).as_deref(), Some(value), "{name}");
    }
}

#[test]
fn leader_election_is_on_exactly_when_more_than_one_replica_runs_unless_forced() {
    let env = TestEnv::get();
    let cases: [(&[&str], &str, bool); 4] = [
        (&[], "true", true),
        (&["--set", "replicaCount=1"], "false", false),
        (
            &[
                "--set",
                "replicaCount=1",
                "--set",
                "leaderElection.enabled=true",
            ],
            "true",
            true,
        ),
        (
            &[
                "--set",
                "replicaCount=3",
                "--set",
                "leaderElection.enabled=true",
            ],
            "true",
            true,
        ),
    ];
    for (args, flag, lease_role) in cases {
        let objects = template(&env, "rel", "ops", args);
        let container = operator_container(find(
            &objects,
            "Deployment",
            "rel-vault-connection-operator",
            None,
        ));
        assert_eq!(
            env_value(container, "VCO_LEADER_ELECTION").as_deref(),
            Some(flag),
            "{args:?}"
        );
        let roles = of_kind(&objects, "Role");
        let has_lease_role = roles
            .iter()
            .any(|r| r["metadata"]["name"] == "rel-vault-connection-operator-leader-election");
        assert_eq!(has_lease_role, lease_role, "lease Role with {args:?}");
    }

    let err = helm(
        &env,
        &[
            "template",
            "rel",
            CHART,
            "--set",
            "replicaCount=2",
            "--set",
            "leaderElection.enabled=false",
        ],
    )
    .expect_failure();
    assert!(
        err.contains("leaderElection.enabled is false"),
        "two replicas without leader election are refused: {err}"
    );
}

#[test]
fn the_operator_pod_is_hardened() {
    let env = TestEnv::get();
    let objects = template(&env, "rel", "ops", &[]);
    let deployment = find(
        &objects,
        "Deployment",
        "rel-vault-connection-operator",
        Some("ops"),
    );
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["serviceAccountName"], "rel-vault-connection-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );

    let container = operator_container(deployment);
    assert_eq!(
        container["image"], "ghcr.io/vault-connection-operator/vault-connection-operator:0.1.0",
        "the tag defaults to the chart's appVersion"
    );
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(container["args"], json!(["run"]));
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");

    assert_eq!(
        container["ports"],
        json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
    assert!(
        container["resources"]["requests"]["memory"].is_string(),
        "requests are set"
    );
    assert!(
        container["resources"]["limits"]["memory"].is_string(),
        "limits are set"
    );

    let sa = find(
        &objects,
        "ServiceAccount",
        "rel-vault-connection-operator",
        Some("ops"),
    );
    assert_eq!(
        sa["automountServiceAccountToken"], false,
        "only the operator pod mounts a token"
    );
}

#[test]
fn the_service_account_carries_annotations_for_irsa() {
    let env = TestEnv::get();
    let role = "arn:aws:iam::123456789012:role/vco";
    let objects = template(
        &env,
        "rel",
        "ops",
        &[
            "--set-string",
            &format!("serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={role}"),
        ],
    );
    let sa = find(
        &objects,
        "ServiceAccount",
        "rel-vault-connection-operator",
        None,
    );
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        role
    );

    let objects = template(
        &env,
        "rel",
        "ops",
        &[
            "--set",
            "serviceAccount.create=false",
            "--set",
            "serviceAccount.name=existing",
        ],
    );
    assert!(
        of_kind(&objects, "ServiceAccount").is_empty(),
        "no ServiceAccount when create=false"
    );
    let deployment = find(
        &objects,
        "Deployment",
        "rel-vault-connection-operator",
        None,
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "existing"
    );
    let binding = find(
        &objects,
        "ClusterRoleBinding",
        "rel-vault-connection-operator",
        None,
    );
    assert_eq!(
        binding["subjects"][0]["name"], "existing",
        "RBAC binds the existing ServiceAccount"
    );
}

/// What the operator may do in a namespace it watches, as (group, resource, verb, name) tuples.
fn operator_namespaced_grants() -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    let mut add = |group: &str, resource: &str, verbs: &[&str]| {
        for verb in verbs {
            out.push((
                group.to_owned(),
                resource.to_owned(),
                (*verb).to_owned(),
                String::new(),
            ));
        }
    };
    add(
        "vaultconnections.io",
        "vaultconnections",
        &["get", "list", "watch", "patch", "update"],
    );
    add(
        "vaultconnections.io",
        "vaultconnections/status",
        &["get", "patch", "update"],
    );
    add(
        "vaultconnections.io",
        "vaultconnections/finalizers",
        &["update"],
    );
    add("", "secrets", &["get", "list", "watch"]);
    add("events.k8s.io", "events", &["create", "patch"]);
    out.sort();
    out
}

fn namespace_grants() -> Vec<(String, String, String, String)> {
    ["get", "list", "watch"]
        .iter()
        .map(|v| {
            (
                String::new(),
                "namespaces".to_owned(),
                (*v).to_owned(),
                String::new(),
            )
        })
        .collect()
}

#[test]
fn by_default_the_operator_gets_one_least_privilege_cluster_role() {
    let env = TestEnv::get();
    let objects = template(&env, "rel", "ops", &[]);
    let role = find(
        &objects,
        "ClusterRole",
        "rel-vault-connection-operator",
        None,
    );
    let mut want = operator_namespaced_grants();
    want.extend(namespace_grants());
    want.sort();
    assert_eq!(grants(role), want);

    let lease = find(
        &objects,
        "Role",
        "rel-vault-connection-operator-leader-election",
        Some("ops"),
    );
    let lease_grants: Vec<(String, String, String, String)> = [
        ("create", ""),
        ("get", "vault-connection-operator"),
        ("patch", "vault-connection-operator"),
        ("update", "vault-connection-operator"),
    ]
    .iter()
    .map(|(v, n)| {
        (
            "coordination.k8s.io".to_owned(),
            "leases".to_owned(),
            (*v).to_owned(),
            (*n).to_owned(),
        )
    })
    .collect();
    assert_eq!(grants(lease), lease_grants);
    assert!(
        of_kind(&objects, "Role").len() == 1 && of_kind(&objects, "RoleBinding").len() == 1,
        "only the leader-election Role is namespaced: {:?}",
        summary(&objects)
    );
}

#[test]
fn watching_namespaces_grants_roles_only_in_those_namespaces() {
    let env = TestEnv::get();
    let objects = template(
        &env,
        "rel",
        "ops",
        &["--set", "operator.watchNamespaces={team-a,team-b}"],
    );
    for ns in ["team-a", "team-b"] {
        let role = find(&objects, "Role", "rel-vault-connection-operator", Some(ns));
        assert_eq!(grants(role), operator_namespaced_grants(), "Role in {ns}");
        let binding = find(
            &objects,
            "RoleBinding",
            "rel-vault-connection-operator",
            Some(ns),
        );
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "rel-vault-connection-operator", "namespace": "ops"}])
        );
    }
    let cluster_roles: Vec<&Value> = of_kind(&objects, "ClusterRole")
        .into_iter()
        .filter(|r| {
            !r["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .ends_with("-admin")
        })
        .filter(|r| {
            !r["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .ends_with("-view")
        })
        .collect();
    assert_eq!(
        cluster_roles.len(),
        1,
        "one operator ClusterRole: {:?}",
        summary(&objects)
    );
    assert_eq!(
        cluster_roles[0]["metadata"]["name"],
        "rel-vault-connection-operator-namespaces"
    );
    assert_eq!(
        grants(cluster_roles[0]),
        namespace_grants(),
        "cluster-wide, only namespaces are readable"
    );
}

#[test]
fn user_roles_give_admins_full_rights_and_everyone_else_read_only() {
    let env = TestEnv::get();
    let objects = template(&env, "rel", "ops", &[]);
    let admin = find(
        &objects,
        "ClusterRole",
        "rel-vault-connection-operator-admin",
        None,
    );
    let labels = &admin["metadata"]["labels"];
    assert_eq!(
        labels["rbac.authorization.k8s.io/aggregate-to-admin"],
        "true"
    );
    assert!(
        labels
            .get("rbac.authorization.k8s.io/aggregate-to-edit")
            .is_none(),
        "editors must not get write rights"
    );
    assert!(
        labels
            .get("rbac.authorization.k8s.io/aggregate-to-view")
            .is_none()
    );

    let view = find(
        &objects,
        "ClusterRole",
        "rel-vault-connection-operator-view",
        None,
    );
    let labels = &view["metadata"]["labels"];
    assert_eq!(
        labels["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert_eq!(
        labels["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    let verbs: std::collections::BTreeSet<String> = grants(view).into_iter().map(|g| g.2).collect();
    assert_eq!(
        verbs,
        ["get", "list", "watch"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

#[test]
fn the_pdb_exists_only_with_more_than_one_replica() {
    let env = TestEnv::get();
    let objects = template(&env, "rel", "ops", &[]);
    let pdb = find(
        &objects,
        "PodDisruptionBudget",
        "rel-vault-connection-operator",
        Some("ops"),
    );
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let deployment = find(
        &objects,
        "Deployment",
        "rel-vault-connection-operator",
        None,
    );
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    let single = template(&env, "rel", "ops", &["--set", "replicaCount=1"]);
    assert!(
        of_kind(&single, "PodDisruptionBudget").is_empty(),
        "one replica: no PDB (it would block drains)"
    );
}

#[test]
fn the_metrics_service_and_optional_service_monitor_use_the_metrics_port() {
    let env = TestEnv::get();
    let objects = template(&env, "rel", "ops", &[]);
    let service = find(
        &objects,
        "Service",
        "rel-vault-connection-operator-metrics",
        Some("ops"),
    );
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
    );
    assert!(
        of_kind(&objects, "ServiceMonitor").is_empty(),
        "no ServiceMonitor by default"
    );
    assert_eq!(
        of_kind(&objects, "NetworkPolicy").len(),
        1,
        "a NetworkPolicy by default"
    );

    // The ServiceMonitor CRD is not in the test environment: check the rendering only.
    let objects = template(
        &env,
        "rel",
        "ops",
        &["--set", "metrics.serviceMonitor.enabled=true"],
    );
    let monitor = find(
        &objects,
        "ServiceMonitor",
        "rel-vault-connection-operator",
        Some("ops"),
    );
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
}

#[test]
fn the_network_policy_is_on_by_default_and_admits_only_scrapes_probes_and_needed_egress() {
    let env = TestEnv::get();
    let objects = template(&env, "rel", "ops", &[]);
    let policy = find(
        &objects,
        "NetworkPolicy",
        "rel-vault-connection-operator",
        Some("ops"),
    );
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
        ],
        "egress: DNS, the API server and HTTPS (AWS) only"
    );

    // Node CIDRs for the kubelet's probes, on a CNI that does not exempt them.
    let values = ValuesFile::new(
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
    let objects = template(&env, "rel", "ops", &["-f", values.path()]);
    let policy = find(
        &objects,
        "NetworkPolicy",
        "rel-vault-connection-operator",
        Some("ops"),
    );
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

    let closed = template(
        &env,
        "rel",
        "ops",
        &["--set-json", "networkPolicy.metricsFrom=[]"],
    );
    let policy = find(
        &closed,
        "NetworkPolicy",
        "rel-vault-connection-operator",
        None,
    );
    assert_eq!(
        policy["spec"]["ingress"],
        json!([]),
        "no peers configured: no ingress at all"
    );

    let off = template(
        &env,
        "rel",
        "ops",
        &["--set", "networkPolicy.enabled=false"],
    );
    assert!(
        of_kind(&off, "NetworkPolicy").is_empty(),
        "it can be turned off"
    );
}

#[test]
fn the_policy_values_reach_the_operator_flags_and_bad_keys_are_rejected() {
    let env = TestEnv::get();
    let deployment = |objects: &[Value]| {
        operator_container(find(
            objects,
            "Deployment",
            "rel-vault-connection-operator",
            Some("ops"),
        ))
        .clone()
    };
    let defaults = deployment(&template(&env, "rel", "ops", &[]));
    assert_eq!(
        env_value(&defaults, "VCO_ALLOW_DOPPLER_PERSONAL_TOKENS").as_deref(),
        Some("false")
    );
    assert_eq!(
        env_value(&defaults, "VCO_ALLOWED_KMS_KEYS"),
        None,
        "no list: only the default key"
    );

    let values = ValuesFile::new(
        r#"
policy:
  allowedKmsKeys: [alias/team-a, "arn:aws:kms:eu-west-1:123456789012:key/0b7b2d4e"]
  allowDopplerPersonalTokens: true
"#,
    );
    let set = deployment(&template(&env, "rel", "ops", &["-f", values.path()]));
    assert_eq!(
        env_value(&set, "VCO_ALLOWED_KMS_KEYS").as_deref(),
        Some("alias/team-a,arn:aws:kms:eu-west-1:123456789012:key/0b7b2d4e")
    );
    assert_eq!(
        env_value(&set, "VCO_ALLOW_DOPPLER_PERSONAL_TOKENS").as_deref(),
        Some("true")
    );

    for (bad, expected) in [
        (
            "policy:\n  allowedKmsKeys: [\"a,b\"]\n",
            "/policy/allowedKmsKeys/0",
        ),
        (
            "policy:\n  allowedKmsKeys: [\"alias/a b\"]\n",
            "/policy/allowedKmsKeys/0",
        ),
        (
            "policy:\n  allowDopplerPersonalTokens: \"yes\"\n",
            "/policy/allowDopplerPersonalTokens",
        ),
        (
            "policy:\n  allowKms: []\n",
            "additional properties 'allowKms'",
        ),
    ] {
        let file = ValuesFile::new(bad);
        let out = helm(&env, &["lint", CHART, "-f", file.path()]);
        let text = format!("{}{}", out.stderr, out.stdout);
        assert!(
            !out.success && text.contains(expected),
            "values {bad:?}: expected a failure mentioning {expected:?}, got: {text}"
        );
    }
}

// ---- credential verification (operator.verification) -----------------------------------------

#[test]
fn verification_is_off_by_default_and_its_values_reach_the_operator_flags() {
    let env = TestEnv::get();
    let objects = template(&env, "rel", "ops", &[]);
    let deployment = find(
        &objects,
        "Deployment",
        "rel-vault-connection-operator",
        None,
    );
    let container = operator_container(deployment);
    for (name, value) in [
        ("VCO_VERIFY_CREDENTIALS", "false"),
        ("VCO_VERIFY_DOPPLER_URL", "https://api.doppler.com"),
        ("VCO_VERIFY_INFISICAL_URL", "https://app.infisical.com"),
        ("VCO_VERIFY_TIMEOUT", "10s"),
        ("VCO_VERIFY_RETRY_INTERVAL", "15m"),
    ] {
        assert_eq!(env_value(container, name).as_deref(), Some(value), "{name}");
    }
    assert_eq!(
        env_value(container, "VCO_VERIFY_ALLOW_INSECURE_LOOPBACK"),
        None,
        "the insecure test flag is never set by the chart"
    );
    let values = ValuesFile::new(
        r#"
operator:
  verification:
    enabled: true
    infisicalUrl: https://eu.infisical.com
    timeout: 5s
    retryInterval: 30m
"#,
    );
    let objects = template(&env, "rel", "ops", &["-f", values.path()]);
    let deployment = find(
        &objects,
        "Deployment",
        "rel-vault-connection-operator",
        None,
    );
    let container = operator_container(deployment);
    for (name, value) in [
        ("VCO_VERIFY_CREDENTIALS", "true"),
        ("VCO_VERIFY_INFISICAL_URL", "https://eu.infisical.com"),
        ("VCO_VERIFY_TIMEOUT", "5s"),
        ("VCO_VERIFY_RETRY_INTERVAL", "30m"),
    ] {
        assert_eq!(env_value(container, name).as_deref(), Some(value), "{name}");
    }
}

#[test]
fn the_values_schema_refuses_a_plain_http_provider_url() {
    let env = TestEnv::get();
    for url in [
        "http://api.doppler.com",
        "https://user:pw@api.doppler.com",
        "api.doppler.com",
    ] {
        let values = ValuesFile::new(&format!(
            "operator:\n  verification:\n    dopplerUrl: \"{url}\"\n"
        ));
        let err = helm(&env, &["lint", CHART, "-f", values.path()]).expect_failure();
        assert!(err.contains("dopplerUrl"), "{url}: {err}");
    }
}

#[test]
fn provider_egress_is_opened_only_while_verification_and_the_network_policy_are_on() {
    let env = TestEnv::get();
    let verification_policy = |extra: &[&str]| {
        template(&env, "rel", "ops", extra).into_iter().find(|o| {
            o["kind"] == "NetworkPolicy"
                && o["metadata"]["name"] == "rel-vault-connection-operator-verification"
        })
    };
    assert!(
        verification_policy(&["--set", "networkPolicy.enabled=true"]).is_none(),
        "verification off: no provider egress"
    );
    assert!(
        verification_policy(&[
            "--set",
            "networkPolicy.enabled=false",
            "--set",
            "operator.verification.enabled=true"
        ])
        .is_none(),
        "no NetworkPolicy at all: nothing to open"
    );
    let values = ValuesFile::new(
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
    let policy = verification_policy(&["-f", values.path()]).expect("a verification policy");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Egress"]));
    assert_eq!(
        policy["spec"]["egress"],
        json!([{
            "ports": [{"port": 443, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
        }])
    );
    let main = template(&env, "rel", "ops", &["-f", values.path()]);
    let main = find(
        &main,
        "NetworkPolicy",
        "rel-vault-connection-operator",
        None,
    );
    assert_eq!(
        policy["spec"]["podSelector"], main["spec"]["podSelector"],
        "both policies select the operator pods"
    );
}

#[test]
fn the_crd_comes_from_files_and_is_kept_on_uninstall() {
    let env = TestEnv::get();
    let file = std::fs::read_to_string(format!("{CHART}/files/crd.yaml")).expect("files/crd.yaml");
    let generated = &parse_documents(&file)[0];

    let objects = template(&env, "rel", "ops", &[]);
    let crd = find(&objects, "CustomResourceDefinition", CRD, None);
    assert_eq!(
        crd["spec"], generated["spec"],
        "the chart's CRD is files/crd.yaml"
    );
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );

    let objects = template(&env, "rel", "ops", &["--set", "crds.keep=false"]);
    let crd = find(&objects, "CustomResourceDefinition", CRD, None);
    assert!(
        crd["metadata"]["annotations"]
            .get("helm.sh/resource-policy")
            .is_none()
    );

    let objects = template(&env, "rel", "ops", &["--set", "crds.install=false"]);
    assert!(of_kind(&objects, "CustomResourceDefinition").is_empty());
}

#[test]
fn notes_tell_the_user_what_to_do_next() {
    let env = TestEnv::get();
    let out = helm(
        &env,
        &[
            "install",
            "rel",
            CHART,
            "--namespace",
            "ops",
            "--dry-run=client",
            // with a CRD in the cluster, helm checks its ownership even in a client dry run
            "--set",
            "crds.install=false",
        ],
    )
    .expect_success();
    let notes = out.split("NOTES:").nth(1).expect("helm prints NOTES");
    for step in [
        "vaultconnections.io/credentials=true",
        "kind: VaultConnection",
        "get vc",
    ] {
        assert!(notes.contains(step), "NOTES mention {step:?}:\n{notes}");
    }
}

// ---- against the API server -------------------------------------------------------------------

/// `helm template ... | kubectl apply --dry-run=server -f -`, failing with kubectl's complaint.
fn apply_dry_run(env: &TestEnv, release: &str, ns: &str, extra: &[&str]) -> String {
    let manifests = template_text(env, release, ns, extra);
    run(
        env,
        "kubectl",
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&manifests),
    )
    .expect_success()
}

#[tokio::test]
async fn default_manifests_are_accepted_by_the_api_server() {
    let env = TestEnv::get();
    let client = env.kube().await;
    let ns = namespace(&client, "chart-dry").await;
    let out = apply_dry_run(&env, "dry", &ns, &[]);
    for kind in [
        "deployment.apps",
        "clusterrole.rbac",
        "poddisruptionbudget.policy",
        "service/",
        "customresourcedefinition",
    ] {
        assert!(out.contains(kind), "{kind} was applied: {out}");
    }
}

#[tokio::test]
async fn non_default_manifests_are_accepted_by_the_api_server() {
    let env = TestEnv::get();
    let client = env.kube().await;
    let ns = namespace(&client, "chart-dry").await;
    let team_a = namespace(&client, "chart-dry-a").await;
    let team_b = namespace(&client, "chart-dry-b").await;
    let watch = format!("operator.watchNamespaces={{{team_a},{team_b}}}");
    let out = apply_dry_run(
        &env,
        "dry",
        &ns,
        &[
            "--set",
            &watch,
            "--set",
            "replicaCount=1",
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "metrics.serviceMonitor.enabled=false",
            "--set",
            "crds.install=false",
            "--set",
            "aws.region=eu-west-1",
        ],
    );
    assert!(
        out.contains("networkpolicy.networking.k8s.io/dry-vault-connection-operator"),
        "{out}"
    );
    assert!(
        out.contains("role.rbac.authorization.k8s.io/dry-vault-connection-operator created"),
        "{out}"
    );
}

#[tokio::test]
async fn helm_install_creates_every_object() {
    let env = TestEnv::get();
    let client = env.kube().await;
    let ns = namespace(&client, "chart-install").await;
    let release = Release::install(&env, &ns, &[]);
    let full = release.fullname();

    for (kind, name) in [
        ("deployment", full.clone()),
        ("serviceaccount", full.clone()),
        ("service", format!("{full}-metrics")),
        ("poddisruptionbudget", full.clone()),
        ("role", format!("{full}-leader-election")),
        ("rolebinding", format!("{full}-leader-election")),
    ] {
        let object = get_object(&env, kind, &name, Some(&ns));
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/instance"],
            release.name.as_str(),
            "{kind} {name}"
        );
    }
    for (kind, name) in [
        ("clusterrole", full.clone()),
        ("clusterrolebinding", full.clone()),
        ("clusterrole", format!("{full}-admin")),
        ("clusterrole", format!("{full}-view")),
    ] {
        let object = get_object(&env, kind, &name, None);
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/instance"],
            release.name.as_str(),
            "{kind} {name}"
        );
    }
    let crd = get_object(&env, "crd", CRD, None);
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        json!(["vc", "vaultconn"])
    );
    if release.installed_crd {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }

    let status = helm(
        &env,
        &["status", &release.name, "--namespace", &ns, "-o", "json"],
    )
    .expect_success();
    let status: Value = serde_json::from_str(&status).expect("helm status JSON");
    assert_eq!(status["info"]["status"], "deployed");
}

/// Binds USER in NAMESPACE to CLUSTER_ROLE with a RoleBinding (as a namespace admin would).
fn bind(env: &TestEnv, namespace: &str, user: &str, cluster_role: &str) {
    let name = format!("{user}-{cluster_role}");
    kubectl(
        env,
        &[
            "create",
            "rolebinding",
            &name,
            "--namespace",
            namespace,
            "--clusterrole",
            cluster_role,
            "--user",
            user,
        ],
    )
    .expect_success();
}

fn vc_access<'a>(verbs: &[&'a str], ns: &'a str, allowed: bool) -> Vec<Access<'a>> {
    verbs
        .iter()
        .map(|&verb| Access {
            verb,
            resource: "vaultconnections.vaultconnections.io",
            subresource: None,
            namespace: Some(ns),
            allowed,
        })
        .collect()
}

#[tokio::test]
async fn namespace_admins_manage_connections_while_editors_and_viewers_only_read() {
    let env = TestEnv::get();
    let client = env.kube().await;
    let ops = namespace(&client, "chart-rbac-ops").await;
    let team = namespace(&client, "chart-rbac-team").await;
    let _release = Release::install(&env, &ops, &[]);

    // People get the built-in roles, which kube-controller-manager fills by aggregation.
    wait_for_aggregation(&env);
    bind(&env, &team, "alice", "admin");
    bind(&env, &team, "bob", "view");
    bind(&env, &team, "carol", "edit");

    let mut alice = vc_access(
        &[
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ],
        &team,
        true,
    );
    alice.push(Access {
        verb: "get",
        resource: "vaultconnections.vaultconnections.io",
        subresource: Some("status"),
        namespace: Some(team.as_str()),
        allowed: true,
    });
    alice.push(Access {
        verb: "patch",
        resource: "vaultconnections.vaultconnections.io",
        subresource: Some("status"),
        namespace: Some(team.as_str()),
        allowed: false,
    });
    alice.extend(vc_access(&["list", "create"], &ops, false));
    assert_access(&env, "alice", &alice);

    for reader in ["bob", "carol"] {
        let mut table = vc_access(&["get", "list", "watch"], &team, true);
        table.extend(vc_access(
            &["create", "update", "patch", "delete", "deletecollection"],
            &team,
            false,
        ));
        table.push(Access {
            verb: "patch",
            resource: "vaultconnections.vaultconnections.io",
            subresource: Some("status"),
            namespace: Some(team.as_str()),
            allowed: false,
        });
        table.extend(vc_access(&["list"], &ops, false));
        assert_access(&env, reader, &table);
    }
    assert_access(
        &env,
        "mallory",
        &vc_access(&["get", "list", "create"], &team, false),
    );
}

#[tokio::test]
async fn the_built_in_roles_aggregate_the_chart_roles_as_designed() {
    let env = TestEnv::get();
    let client = env.kube().await;
    let ops = namespace(&client, "chart-aggregate").await;
    let release = Release::install(&env, &ops, &[]);
    let full = release.fullname();
    let admin_role = get_object(&env, "clusterrole", &format!("{full}-admin"), None);
    let view_role = get_object(&env, "clusterrole", &format!("{full}-view"), None);

    let selects = |built_in: &str, role: &Value| -> bool {
        let object = get_object(&env, "clusterrole", built_in, None);
        let selectors = object["aggregationRule"]["clusterRoleSelectors"]
            .as_array()
            .unwrap_or_else(|| panic!("built-in {built_in} is aggregated"))
            .clone();
        selectors
            .iter()
            .any(|s| selector_matches(s, &role["metadata"]["labels"]))
    };
    assert!(
        selects("admin", &admin_role),
        "admin aggregates {full}-admin"
    );
    assert!(
        !selects("edit", &admin_role),
        "edit must not aggregate {full}-admin (write rights)"
    );
    assert!(
        !selects("view", &admin_role),
        "view must not aggregate {full}-admin"
    );
    assert!(selects("edit", &view_role), "edit aggregates {full}-view");
    assert!(selects("view", &view_role), "view aggregates {full}-view");
}

#[tokio::test]
async fn the_operator_service_account_can_do_exactly_what_the_operator_needs() {
    let env = TestEnv::get();
    let client = env.kube().await;
    let ops = namespace(&client, "chart-sa-ops").await;
    let team = namespace(&client, "chart-sa-team").await;
    let release = Release::install(&env, &ops, &[]);
    let sa = format!("system:serviceaccount:{ops}:{}", release.fullname());

    let vc = "vaultconnections.vaultconnections.io";
    let lease = "leases.coordination.k8s.io/vault-connection-operator";
    let t = Some(team.as_str());
    let o = Some(ops.as_str());
    let a = |verb, resource, subresource, namespace, allowed| Access {
        verb,
        resource,
        subresource,
        namespace,
        allowed,
    };
    let table = [
        a("get", vc, None, t, true),
        a("list", vc, None, t, true),
        a("watch", vc, None, t, true),
        a("patch", vc, None, t, true),
        a("update", vc, None, t, true),
        a("get", vc, Some("status"), t, true),
        a("patch", vc, Some("status"), t, true),
        a("update", vc, Some("status"), t, true),
        a("update", vc, Some("finalizers"), t, true),
        a("get", "secrets", None, t, true),
        a("list", "secrets", None, t, true),
        a("watch", "secrets", None, t, true),
        a("create", "events.events.k8s.io", None, t, true),
        a("patch", "events.events.k8s.io", None, t, true),
        a("get", "namespaces", None, None, true),
        a("list", "namespaces", None, None, true),
        a("watch", "namespaces", None, None, true),
        a("create", "leases.coordination.k8s.io", None, o, true),
        a("get", lease, None, o, true),
        a("update", lease, None, o, true),
        a("patch", lease, None, o, true),
        // and nothing more
        a("create", vc, None, t, false),
        a("delete", vc, None, t, false),
        a("deletecollection", vc, None, t, false),
        a("create", "secrets", None, t, false),
        a("update", "secrets", None, t, false),
        a("patch", "secrets", None, t, false),
        a("delete", "secrets", None, t, false),
        a("create", "events", None, t, false),
        a("get", "configmaps", None, t, false),
        a("create", "pods", None, t, false),
        a("list", "deployments.apps", None, t, false),
        a("update", "namespaces", None, None, false),
        a("delete", lease, None, o, false),
        a(
            "get",
            "leases.coordination.k8s.io/someone-else",
            None,
            o,
            false,
        ),
        a(
            "update",
            "leases.coordination.k8s.io/someone-else",
            None,
            o,
            false,
        ),
        a("get", lease, None, t, false),
        a(
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            None,
            t,
            false,
        ),
        a(
            "create",
            "clusterroles.rbac.authorization.k8s.io",
            None,
            None,
            false,
        ),
        a(
            "escalate",
            "clusterroles.rbac.authorization.k8s.io",
            None,
            None,
            false,
        ),
        a("impersonate", "users", None, None, false),
        a("create", "serviceaccounts", Some("token"), o, false),
    ];
    assert_access(&env, &sa, &table);
}

#[tokio::test]
async fn watching_namespaces_confines_the_operator_to_them() {
    let env = TestEnv::get();
    let client = env.kube().await;
    let ops = namespace(&client, "chart-ns-ops").await;
    let watched = namespace(&client, "chart-ns-watched").await;
    let other = namespace(&client, "chart-ns-other").await;
    let watch = format!("operator.watchNamespaces={{{watched}}}");
    let release = Release::install(&env, &ops, &["--set", &watch]);
    let sa = format!("system:serviceaccount:{ops}:{}", release.fullname());

    let vc = "vaultconnections.vaultconnections.io";
    let w = Some(watched.as_str());
    let x = Some(other.as_str());
    let a = |verb, resource, subresource, namespace, allowed| Access {
        verb,
        resource,
        subresource,
        namespace,
        allowed,
    };
    assert_access(
        &env,
        &sa,
        &[
            a("list", vc, None, w, true),
            a("patch", vc, Some("status"), w, true),
            a("list", "secrets", None, w, true),
            a("create", "events.events.k8s.io", None, w, true),
            a("list", "namespaces", None, None, true),
            a("list", vc, None, x, false),
            a("patch", vc, Some("status"), x, false),
            a("list", "secrets", None, x, false),
            a("get", "secrets", None, x, false),
            a("create", "events.events.k8s.io", None, x, false),
            a("list", vc, None, None, false),
            a("list", "secrets", None, None, false),
        ],
    );
}
