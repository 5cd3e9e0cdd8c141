//! The chart's ServiceAccount permissions suffice to run the operator, and nothing else is
//! needed: the operator runs as a host process with the environment the chart's Deployment
//! renders and a kubeconfig that impersonates the chart's ServiceAccount, so this also works on
//! a test environment without a node (tests/in_cluster.rs runs the chart's pods for real).

mod chart_support;
mod common;

use std::time::Duration;

use aws_sdk_ssm::error::ProvideErrorMetadata;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::Value;

use chart_support::{Release, helm, of_kind, operator_container, parse_documents, run};
use common::{Operator, OperatorOptions, TestEnv, eventually, install_crd, namespace, unique};

/// A copy of the admin kubeconfig whose user impersonates `system:serviceaccount:NS:SA`.
fn impersonating_kubeconfig(env: &TestEnv, ns: &str, sa: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&env.kubeconfig).expect("read kubeconfig");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
    let user = &mut config["users"][0]["user"];
    user["as"] = format!("system:serviceaccount:{ns}:{sa}").into();
    user["as-groups"] = serde_yaml::to_value([
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".to_owned(),
    ])
    .unwrap();
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique("sa")));
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).expect("write kubeconfig");
    path
}

/// The literal environment of the operator container in the rendered Deployment.
fn deployment_env(manifest: &str) -> Vec<(String, String)> {
    let objects: Vec<Value> = parse_documents(manifest);
    let deployment = of_kind(&objects, "Deployment")[0];
    operator_container(deployment)["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_owned(),
                v["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[tokio::test]
async fn the_operator_runs_with_exactly_the_charts_service_account_permissions() {
    let env = TestEnv::get();
    let client = env.kube().await;
    install_crd(&client).await;
    let release_ns = namespace(&client, "vco-system").await;
    let team_ns = namespace(&client, "team").await;
    let prefix = format!("/{}", unique("chart"));
    let watch = format!("operator.watchNamespaces={{{team_ns}}}");
    let release = Release::install(
        &env,
        &release_ns,
        &[
            "--set",
            &watch,
            "--set",
            &format!("operator.ssmPrefix={prefix}"),
            "--set",
            "operator.clusterName=default",
        ],
    );
    let manifest =
        helm(&env, &["get", "manifest", &release.name, "-n", &release_ns]).expect_success();

    // The operator's settings exactly as the chart renders them, plus what the kubelet would add.
    let mut vars = deployment_env(&manifest);
    // Except the listen address: tests run side by side, each on a free port of its own.
    vars.retain(|(k, _)| k != "VCO_METRICS_ADDR");
    assert!(
        vars.iter()
            .any(|(k, v)| k == "VCO_LEADER_ELECTION" && v == "true"),
        "{vars:?}"
    );
    assert!(
        vars.iter()
            .any(|(k, v)| k == "VCO_NAMESPACES" && *v == team_ns),
        "{vars:?}"
    );
    let sa = release.fullname();
    vars.push((
        "KUBECONFIG".into(),
        impersonating_kubeconfig(&env, &release_ns, &sa)
            .display()
            .to_string(),
    ));
    vars.push(("POD_NAMESPACE".into(), release_ns.clone()));
    vars.push(("POD_NAME".into(), format!("{sa}-0")));
    vars.push(("VCO_LEASE_DURATION".into(), "4s".into()));
    let op = Operator::start(&env, &team_ns, &prefix, &OperatorOptions { env: vars }).await;
    eventually(20, "the operator to win the Lease", || async {
        op.logs().contains("became leader").then_some(())
    })
    .await;

    // A team creates a connection; the operator serves it with nothing but the chart's rights.
    let secret_and_connection = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: {team_ns}, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{access_token: "ops_chart"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: conn, namespace: {team_ns}}}
spec: {{vaultType: onepassword, credentialsSecretRef: {{name: creds}}}}
"#
    );
    run(
        &env,
        "kubectl",
        &["apply", "-f", "-"],
        Some(&secret_and_connection),
    )
    .expect_success();
    let ssm = env.ssm().await;
    let param = format!("{prefix}/default/{team_ns}/conn");
    let version = || async {
        match ssm.get_parameter().name(&param).send().await {
            Ok(out) => out.parameter.map(|p| p.version),
            Err(e) if e.code() == Some("ParameterNotFound") => None,
            Err(e) => panic!("{e:?}"),
        }
    };
    eventually(20, "the parameter to be created", || async {
        version().await
    })
    .await;
    let vcs: Api<vault_connection_operator::api::VaultConnection> =
        Api::namespaced(client.clone(), &team_ns);
    eventually(
        10,
        "Ready status (status subresource and events allowed)",
        || async {
            let vc = vcs.get("conn").await.ok()?;
            vault_connection_operator::status::ready_reason(&vc)
                .filter(|r| *r == "Synced")
                .map(drop)
        },
    )
    .await;

    // Rotation (Secret watch and read) and deletion (finalizer removal) work too.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &team_ns);
    let patch = serde_json::json!({"stringData": {"access_token": "ops_rotated"}});
    secrets
        .patch("creds", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(20, "version 2", || async {
        version().await.filter(|v| *v == 2)
    })
    .await;
    vcs.delete("conn", &DeleteParams::default()).await.unwrap();
    eventually(20, "the connection to be gone", || async {
        vcs.get_opt("conn").await.unwrap().is_none().then_some(())
    })
    .await;
    assert_eq!(version().await, None, "the parameter was deleted");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = op.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "the operator hit a permission it lacks:\n{logs}"
    );
}

#[tokio::test]
async fn a_namespace_admin_manages_connections_but_cannot_raise_its_own_tier() {
    let env = TestEnv::get();
    let client = env.kube().await;
    install_crd(&client).await;
    let release_ns = namespace(&client, "vco-rbac").await;
    let team_ns = namespace(&client, "team-rbac").await;
    let _release = Release::install(&env, &release_ns, &["--set", "replicaCount=1"]);
    // The built-in `admin` role as kube-controller-manager fills it by aggregation.
    chart_support::wait_for_aggregation(&env);
    let user = unique("alice");
    run(
        &env,
        "kubectl",
        &[
            "create",
            "rolebinding",
            &unique("ns-admin"),
            "-n",
            &team_ns,
            "--clusterrole",
            "admin",
            "--user",
            &user,
        ],
        None,
    )
    .expect_success();
    let can_sub = |verb: &str, resource: &str, subresource: &str| {
        let mut args = vec![
            "auth", "can-i", verb, resource, "-n", &team_ns, "--as", &user,
        ];
        if !subresource.is_empty() {
            args.extend(["--subresource", subresource]);
        }
        run(&env, "kubectl", &args, None).stdout.trim() == "yes"
    };
    let can = |verb: &str, resource: &str| can_sub(verb, resource, "");
    assert!(can("create", "vaultconnections.vaultconnections.io"));
    assert!(can("delete", "vaultconnections.vaultconnections.io"));
    assert!(
        !can("patch", "namespaces"),
        "a namespace admin must not relabel (re-tier) its namespace"
    );
    assert!(!can("update", "namespaces"));
    assert!(
        !can("create", "resourcequotas"),
        "nor lift its ResourceQuota"
    );
    assert!(!can("patch", "resourcequotas"));
    assert!(can_sub(
        "get",
        "vaultconnections.vaultconnections.io",
        "status"
    ));
    assert!(
        !can_sub("patch", "vaultconnections.vaultconnections.io", "status"),
        "nor forge status"
    );
}
