//! The Argo CD health check shipped with the chart (docs/argocd-health.lua) gives the verdicts the
//! chart's README promises. Runs tests/argocd/health_test.lua with a real Lua 5.4 interpreter.

use std::io::ErrorKind;
use std::process::Command;

#[test]
fn argo_cd_health_check_maps_ready_conditions_to_health() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = match Command::new("lua5.4")
        .arg("tests/argocd/health_test.lua")
        .current_dir(root)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("lua5.4 is not on PATH: install lua5.4 (hack/test.sh does)")
        }
        Err(e) => panic!("cannot run lua5.4: {e}"),
    };
    assert!(
        out.status.success(),
        "the Argo CD health check failed its cases:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_argocd_cm_example_carries_the_tested_health_check() {
    let docs = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/vault-connection-operator/docs"
    );
    let script =
        std::fs::read_to_string(format!("{docs}/argocd-health.lua")).expect("argocd-health.lua");
    let cm: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{docs}/argocd-cm.yaml")).expect("argocd-cm.yaml"),
    )
    .expect("argocd-cm.yaml is YAML");
    let key = "resource.customizations.health.vaultconnections.io_VaultConnection";
    assert_eq!(
        cm["data"][key].as_str(),
        Some(script.as_str()),
        "argocd-cm.yaml must embed docs/argocd-health.lua verbatim under {key}"
    );
}
