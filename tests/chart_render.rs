//! What the chart's templates render from its values: the operator's flags (the contract with
//! the operator), the hardened pod, the ServiceAccount, the PDB and the CRD. Needs only the
//! environment's helm (`hack/testenv.sh install`), no cluster. (Networking:
//! tests/chart_network.rs; roles: tests/chart_rbac.rs; the schema: tests/chart_schema.rs; the
//! NOTES, which helm renders only with a cluster to ask: tests/chart_install.rs.)

mod common;

use serde_json::json;

use common::chart::{CHART, CRD, FULLNAME, Helm, parse_documents};

#[test]
fn every_operator_flag_is_passed_as_an_environment_variable_with_its_default() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let r = helm.render(&[]);
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
        assert_eq!(r.env(name).as_deref(), Some(value), "{name}");
    }
    for unset in ["VCO_NAMESPACES", "VCO_DEFAULT_KMS_KEY_ID", "AWS_REGION"] {
        assert_eq!(
            r.env(unset),
            None,
            "{unset} is omitted while its value is empty"
        );
    }
    let env_vars = r.container()["env"].as_array().expect("env");
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
    let Some(helm) = Helm::find() else {
        return;
    };
    let r = helm.render_values(
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
        assert_eq!(r.env(name).as_deref(), Some(value), "{name}");
    }
}

#[test]
fn leader_election_is_on_exactly_when_more_than_one_replica_runs_unless_forced() {
    let Some(helm) = Helm::find() else {
        return;
    };
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
        let r = helm.render(args);
        assert_eq!(
            r.env("VCO_LEADER_ELECTION").as_deref(),
            Some(flag),
            "{args:?}"
        );
        let has_lease_role = r
            .of_kind("Role")
            .iter()
            .any(|r| r["metadata"]["name"] == format!("{FULLNAME}-leader-election"));
        assert_eq!(has_lease_role, lease_role, "lease Role with {args:?}");
    }

    let err = helm
        .run(&[
            "template",
            "rel",
            CHART,
            "--set",
            "replicaCount=2",
            "--set",
            "leaderElection.enabled=false",
        ])
        .expect_failure();
    assert!(
        err.contains("leaderElection.enabled is false"),
        "two replicas without leader election are refused: {err}"
    );
}

#[test]
fn the_operator_pod_is_hardened() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let r = helm.render(&[]);
    let deployment = r.deployment();
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["serviceAccountName"], FULLNAME);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );

    let container = r.container();
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

    let sa = r.find_in("ServiceAccount", FULLNAME, "ops");
    assert_eq!(
        sa["automountServiceAccountToken"], false,
        "only the operator pod mounts a token"
    );
}

#[test]
fn the_service_account_carries_annotations_for_irsa() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let role = "arn:aws:iam::123456789012:role/vco";
    let r = helm.render(&[
        "--set-string",
        &format!("serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={role}"),
    ]);
    let sa = r.find("ServiceAccount", FULLNAME);
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        role
    );

    let r = helm.render(&[
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=existing",
    ]);
    assert!(
        r.of_kind("ServiceAccount").is_empty(),
        "no ServiceAccount when create=false"
    );
    assert_eq!(
        r.deployment()["spec"]["template"]["spec"]["serviceAccountName"],
        "existing"
    );
    let binding = r.find("ClusterRoleBinding", FULLNAME);
    assert_eq!(
        binding["subjects"][0]["name"], "existing",
        "RBAC binds the existing ServiceAccount"
    );
}

#[test]
fn the_pdb_exists_only_with_more_than_one_replica() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let r = helm.render(&[]);
    let pdb = r.find_in("PodDisruptionBudget", FULLNAME, "ops");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        r.deployment()["spec"]["selector"]["matchLabels"]
    );

    let single = helm.render(&["--set", "replicaCount=1"]);
    assert!(
        single.of_kind("PodDisruptionBudget").is_empty(),
        "one replica: no PDB (it would block drains)"
    );
}

#[test]
fn the_policy_values_reach_the_operator_flags() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let defaults = helm.render(&[]);
    assert_eq!(
        defaults.env("VCO_ALLOW_DOPPLER_PERSONAL_TOKENS").as_deref(),
        Some("false")
    );
    assert_eq!(
        defaults.env("VCO_ALLOWED_KMS_KEYS"),
        None,
        "no list: only the default key"
    );

    let set = helm.render_values(
        r#"
policy:
  allowedKmsKeys: [alias/team-a, "arn:aws:kms:eu-west-1:123456789012:key/0b7b2d4e"]
  allowDopplerPersonalTokens: true
"#,
    );
    assert_eq!(
        set.env("VCO_ALLOWED_KMS_KEYS").as_deref(),
        Some("alias/team-a,arn:aws:kms:eu-west-1:123456789012:key/0b7b2d4e")
    );
    assert_eq!(
        set.env("VCO_ALLOW_DOPPLER_PERSONAL_TOKENS").as_deref(),
        Some("true")
    );
}

#[test]
fn a_cross_account_role_and_an_egress_proxy_reach_the_operator_only_when_set() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let defaults = helm.render(&[]);
    for unset in [
        "VCO_SSM_ROLE_ARN",
        "VCO_SSM_EXTERNAL_ID",
        "VCO_SSM_ROLE_SESSION_TAGS",
        "VCO_SSM_ROLE_SESSION_DURATION",
        "HTTPS_PROXY",
        "NO_PROXY",
    ] {
        assert_eq!(
            defaults.env(unset),
            None,
            "{unset} without a role or a proxy"
        );
    }
    let set = helm.render_values(
        r#"
aws:
  ssmRole:
    arn: arn:aws:iam::222222222222:role/vco-central
    externalId: ext-1
    sessionName: vco-prod
    sessionTags: {team: platform, cluster: prod}
    sessionDuration: 30m
  proxy:
    url: http://proxy.internal:3128
"#,
    );
    for (name, value) in [
        (
            "VCO_SSM_ROLE_ARN",
            "arn:aws:iam::222222222222:role/vco-central",
        ),
        ("VCO_SSM_EXTERNAL_ID", "ext-1"),
        ("VCO_SSM_ROLE_SESSION_NAME", "vco-prod"),
        ("VCO_SSM_ROLE_SESSION_TAGS", "cluster=prod,team=platform"),
        ("VCO_SSM_ROLE_SESSION_DURATION", "30m"),
        ("HTTPS_PROXY", "http://proxy.internal:3128"),
        ("HTTP_PROXY", "http://proxy.internal:3128"),
    ] {
        assert_eq!(set.env(name).as_deref(), Some(value), "{name}");
    }
    let no_proxy = set.env("NO_PROXY").expect("NO_PROXY with a proxy");
    for direct in [".svc", "169.254.170.23", "169.254.169.254"] {
        assert!(
            no_proxy.split(',').any(|e| e == direct),
            "{direct} in {no_proxy}"
        );
    }
}

#[test]
fn verification_is_off_by_default_and_its_values_reach_the_operator_flags() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let defaults = helm.render(&[]);
    for (name, value) in [
        ("VCO_VERIFY_CREDENTIALS", "false"),
        ("VCO_VERIFY_DOPPLER_URL", "https://api.doppler.com"),
        ("VCO_VERIFY_INFISICAL_URL", "https://app.infisical.com"),
        ("VCO_VERIFY_TIMEOUT", "10s"),
        ("VCO_VERIFY_RETRY_INTERVAL", "15m"),
    ] {
        assert_eq!(defaults.env(name).as_deref(), Some(value), "{name}");
    }
    assert_eq!(
        defaults.env("VCO_VERIFY_ALLOW_INSECURE_LOOPBACK"),
        None,
        "the insecure test flag is never set by the chart"
    );
    let set = helm.render_values(
        r#"
operator:
  verification:
    enabled: true
    infisicalUrl: https://eu.infisical.com
    timeout: 5s
    retryInterval: 30m
"#,
    );
    for (name, value) in [
        ("VCO_VERIFY_CREDENTIALS", "true"),
        ("VCO_VERIFY_INFISICAL_URL", "https://eu.infisical.com"),
        ("VCO_VERIFY_TIMEOUT", "5s"),
        ("VCO_VERIFY_RETRY_INTERVAL", "30m"),
    ] {
        assert_eq!(set.env(name).as_deref(), Some(value), "{name}");
    }
}

#[test]
fn the_crd_comes_from_files_and_is_kept_on_uninstall() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let file = std::fs::read_to_string(format!("{CHART}/files/crd.yaml")).expect("files/crd.yaml");
    let generated = &parse_documents(&file)[0];

    let r = helm.render(&[]);
    let crd = r.find("CustomResourceDefinition", CRD);
    assert_eq!(
        crd["spec"], generated["spec"],
        "the chart's CRD is files/crd.yaml"
    );
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );

    let r = helm.render(&["--set", "crds.keep=false"]);
    let crd = r.find("CustomResourceDefinition", CRD);
    assert!(
        crd["metadata"]["annotations"]
            .get("helm.sh/resource-policy")
            .is_none()
    );

    let r = helm.render(&["--set", "crds.install=false"]);
    assert!(r.of_kind("CustomResourceDefinition").is_empty());
}
