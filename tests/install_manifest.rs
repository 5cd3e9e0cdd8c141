//! deploy/install.yaml, the chart rendered with its default values for people who do not use
//! Helm: it is exactly what `hack/gen-install.sh` renders from the chart today, and a fresh API
//! server takes it with `kubectl apply --server-side`, twice (as Argo CD and re-runs do). The
//! first needs only the environment's helm; the second a private control plane.

mod common;

use common::chart::Helm;
use common::{PrivateEnv, repo, run};

fn committed() -> String {
    std::fs::read_to_string(repo().join("deploy/install.yaml")).expect("deploy/install.yaml")
}

#[test]
fn the_install_manifest_is_the_chart_rendered_with_default_values() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let (ok, rendered, err) = run(
        std::process::Command::new(repo().join("hack/gen-install.sh"))
            .arg("--stdout")
            .env("HELM", helm.bin()),
    );
    assert!(ok, "hack/gen-install.sh failed: {err}");
    assert!(
        rendered == committed(),
        "deploy/install.yaml is stale: run hack/gen-install.sh and commit the result"
    );
}

#[test]
fn the_install_manifest_applies_server_side_to_a_fresh_cluster_and_again() {
    let Some(private) = PrivateEnv::up("install-manifest") else {
        return;
    };
    let env = &private.env;
    let manifest = repo().join("deploy/install.yaml");
    let apply = || {
        run(env.command("kubectl").args([
            "apply",
            "--server-side",
            "-f",
            manifest.to_str().expect("UTF-8 path"),
        ]))
    };
    let (ok, out, err) = apply();
    assert!(ok, "kubectl apply --server-side: {err}{out}");
    for object in [
        "namespace/vault-connection-operator",
        "customresourcedefinition.apiextensions.k8s.io/vaultconnections.vaultconnections.io",
        "serviceaccount/vault-connection-operator",
        "clusterrole.rbac.authorization.k8s.io/vault-connection-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/vault-connection-operator",
        "deployment.apps/vault-connection-operator",
        "service/vault-connection-operator-metrics",
        "poddisruptionbudget.policy/vault-connection-operator",
    ] {
        assert!(
            out.contains(&format!("{object} serverside-applied")),
            "{object} applied: {out}"
        );
    }
    // The objects are really there, where the manifest says.
    let (ok, out, err) = run(env.command("kubectl").args([
        "get",
        "-n",
        "vault-connection-operator",
        "deployment,serviceaccount,service,lease,role,rolebinding",
        "-o",
        "name",
    ]));
    assert!(ok, "{err}");
    assert!(
        out.contains("deployment.apps/vault-connection-operator"),
        "{out}"
    );
    // A second apply (a re-sync) changes nothing and meets no conflict.
    let (ok, out, err) = apply();
    assert!(ok, "second apply: {err}{out}");
    assert!(!out.contains("conflict"), "{out}");
}
