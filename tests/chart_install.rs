//! The chart against the live API server: its manifests, with default and non-default values,
//! pass a server-side dry run, and `helm install` creates every object with the release's
//! labels, and its NOTES tell the user what to do next. (The chart's pods running for real:
//! tests/in_cluster.rs.)

mod common;

use serde_json::{Value, json};

use common::chart::{CHART, CRD, Helm, Release, get_object};
use common::{TestEnv, World};

/// `helm template ... | kubectl apply --dry-run=server -f -`, failing with kubectl's complaint.
fn apply_dry_run(env: &TestEnv, helm: &Helm, release: &str, ns: &str, extra: &[&str]) -> String {
    let manifests = helm.template(release, ns, extra);
    env.kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], &manifests)
        .expect_success()
}

#[tokio::test]
async fn default_manifests_are_accepted_by_the_api_server() {
    let Some(w) = World::new("chart-dry").await else {
        return;
    };
    let Some(helm) = Helm::find() else {
        return;
    };
    let out = apply_dry_run(&w.env, &helm, "dry", &w.ns, &[]);
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
    let Some(w) = World::new("chart-dry").await else {
        return;
    };
    let Some(helm) = Helm::find() else {
        return;
    };
    let team_a = w.namespace("chart-dry-a").await;
    let team_b = w.namespace("chart-dry-b").await;
    let watch = format!("operator.watchNamespaces={{{team_a},{team_b}}}");
    let out = apply_dry_run(
        &w.env,
        &helm,
        "dry",
        &w.ns,
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
    let Some(w) = World::new("chart-install").await else {
        return;
    };
    let (env, ns) = (&w.env, &w.ns);
    let release = Release::install(env, ns, &[]);
    let full = release.fullname();

    for (kind, name) in [
        ("deployment", full.clone()),
        ("serviceaccount", full.clone()),
        ("service", format!("{full}-metrics")),
        ("poddisruptionbudget", full.clone()),
        ("role", format!("{full}-leader-election")),
        ("rolebinding", format!("{full}-leader-election")),
    ] {
        let object = get_object(env, kind, &name, Some(ns));
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
        let object = get_object(env, kind, &name, None);
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/instance"],
            release.name.as_str(),
            "{kind} {name}"
        );
    }
    let crd = get_object(env, "crd", CRD, None);
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

    let status = env
        .helm(&["status", &release.name, "--namespace", ns, "-o", "json"])
        .expect_success();
    let status: Value = serde_json::from_str(&status).expect("helm status JSON");
    assert_eq!(status["info"]["status"], "deployed");
}

#[test]
fn notes_tell_the_user_what_to_do_next() {
    // A client dry run still asks the cluster what it is.
    let Some(env) = TestEnv::live() else {
        return;
    };
    let out = env
        .helm(&[
            "install",
            "rel",
            CHART,
            "--namespace",
            "ops",
            "--dry-run=client",
            // with a CRD in the cluster, helm checks its ownership even in a client dry run
            "--set",
            "crds.install=false",
        ])
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
