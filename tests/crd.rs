//! The CRD: committed files match the types, and the real API server accepts it and enforces
//! its rules at admission.

mod common;

use std::path::Path;

use vault_connection_operator::api::crd_yaml;

use common::{TestEnv, World, repo, run};

#[test]
fn committed_crd_files_match_the_generated_crd() {
    let generated = crd_yaml();
    for file in [
        "crds/vaultconnections.yaml",
        "charts/vault-connection-operator/files/crd.yaml",
    ] {
        let committed = std::fs::read_to_string(repo().join(file)).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} is out of date with src/api.rs: run hack/gen-crds.sh and commit the result"
        );
    }
}

#[tokio::test]
async fn crd_is_accepted_and_becomes_established() {
    // The World installs the CRD and fails unless it is Established within 30 s.
    let Some(w) = World::new("crd").await else {
        return;
    };
    let (ok, out, err) = run(w
        .env
        .command("kubectl")
        .args(["api-resources", "--api-group=vaultconnections.io"]));
    assert!(ok, "{err}");
    assert!(
        out.contains("vaultconnections") && out.contains("vc,vaultconn"),
        "{out}"
    );
}

/// Dry-run applies a file into a fresh namespace; returns (accepted, stderr).
fn dry_run(env: &TestEnv, ns: &str, file: &Path) -> (bool, String) {
    let (ok, _, err) = run(env
        .command("kubectl")
        .args(["apply", "--dry-run=server", "-n", ns, "-f"])
        .arg(file));
    (ok, err)
}

fn yaml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn every_example_is_accepted_by_a_server_side_dry_run() {
    let Some(w) = World::new("examples").await else {
        return;
    };
    let files = yaml_files(&repo().join("examples"));
    assert_eq!(files.len(), 3, "one example per provider");
    for file in files {
        let (ok, err) = dry_run(&w.env, &w.ns, &file);
        assert!(ok, "{} was rejected: {err}", file.display());
    }
}

#[tokio::test]
async fn invalid_examples_that_admission_can_catch_are_rejected_naming_the_field() {
    let Some(w) = World::new("invalid").await else {
        return;
    };
    let mut rejected = 0;
    for file in yaml_files(&repo().join("examples/invalid")) {
        let text = std::fs::read_to_string(&file).expect("readable example");
        let admission = text
            .lines()
            .find_map(|l| l.strip_prefix("# admission: "))
            .unwrap_or_else(|| panic!("{} lacks an '# admission:' line", file.display()));
        let (ok, err) = dry_run(&w.env, &w.ns, &file);
        match admission.strip_prefix("rejects ") {
            Some(field) => {
                assert!(!ok, "{} should be rejected by admission", file.display());
                assert!(
                    err.contains(field),
                    "{}: message does not name {field}: {err}",
                    file.display()
                );
                rejected += 1;
            }
            None => assert!(ok, "{} should pass admission: {err}", file.display()),
        }
    }
    assert!(rejected >= 15, "only {rejected} files exercised admission");
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_docs() {
    let Some(w) = World::new("explain").await else {
        return;
    };
    let env = &w.env;
    // The API server publishes the CRD's OpenAPI a moment after it is Established.
    let mut last = String::new();
    for _ in 0..60 {
        let (ok, out, err) = run(env
            .command("kubectl")
            .args(["explain", "vaultconnection.spec"]));
        if ok && out.contains("vaultType") {
            assert!(out.contains("The vault provider"), "{out}");
            assert!(out.contains("credentialsSecretRef"), "{out}");
            assert!(out.contains("deletionPolicy"), "{out}");
            return;
        }
        last = format!("{out}{err}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("kubectl explain never showed the docs: {last}");
}

#[tokio::test]
async fn the_server_applies_the_defaults() {
    let Some(w) = World::new("defaults").await else {
        return;
    };
    // Raw JSON without deletionPolicy and secretPath, so only the server can default them.
    let raw = serde_json::json!({
        "apiVersion": "vaultconnections.io/v1alpha1",
        "kind": "VaultConnection",
        "metadata": {"name": "defaults"},
        "spec": {
            "vaultType": "infisical",
            "credentialsSecretRef": {"name": "creds"},
            "infisical": {"projectId": "p", "environment": "prod"}
        }
    });
    let stored = create_raw(&w.env, &w.ns, &raw);
    assert_eq!(stored["spec"]["deletionPolicy"], "Delete");
    assert_eq!(stored["spec"]["infisical"]["secretPath"], "/");
}

/// Creates an object from raw JSON with kubectl (so no client-side defaults apply) and returns
/// the object as the server stored it.
fn create_raw(env: &TestEnv, ns: &str, raw: &serde_json::Value) -> serde_json::Value {
    let out = env.kubectl_with_input(
        &["create", "-n", ns, "-o", "json", "-f", "-"],
        &raw.to_string(),
    );
    assert!(out.success, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("kubectl printed JSON")
}
