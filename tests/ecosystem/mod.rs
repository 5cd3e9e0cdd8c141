//! The ecosystem's own checkers, as tests use them: `vco-ecosystem` (hack/ecosystem: kstatus from
//! sigs.k8s.io/cli-utils and Argo CD's gopher-lua health evaluation) and `promtool`, both built
//! and cached by `hack/testenv.sh install`.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The chart's Argo CD health check.
pub const ARGOCD_HEALTH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/vault-connection-operator/docs/argocd-health.lua"
);

/// The installed tool NAME: looked up where `hack/testenv.sh path` says the cache puts it, then
/// in `VCO_TESTENV_BIN` (set by the environment file).
pub fn tool(name: &str) -> PathBuf {
    let from_script = || {
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/testenv.sh"))
            .arg("path")
            .output()
            .expect("run hack/testenv.sh path");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // The script first: its path names the build of the current hack/ecosystem source.
    let dirs = format!(
        "{}:{}",
        from_script(),
        std::env::var("VCO_TESTENV_BIN").unwrap_or_default()
    );
    std::env::split_paths(&dirs)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not built: run `hack/testenv.sh install` (hack/test.sh does)")
        })
}

/// A verdict as `vco-ecosystem` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Verdict {
    pub status: String,
    pub message: String,
}

fn eco(args: &[&str], obj: &serde_json::Value) -> Verdict {
    let mut child = Command::new(tool("vco-ecosystem"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vco-ecosystem");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(obj.to_string().as_bytes())
        .expect("write the object");
    let out = child.wait_with_output().expect("vco-ecosystem finishes");
    assert!(
        out.status.success(),
        "vco-ecosystem {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("vco-ecosystem prints a verdict")
}

/// What `sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute` says of `obj`.
pub fn kstatus(obj: &serde_json::Value) -> Verdict {
    eco(&["kstatus"], obj)
}

/// What the chart's Argo CD health check says of `obj`, run as Argo CD runs it.
pub fn argocd_health(obj: &serde_json::Value) -> Verdict {
    eco(&["argocd-health", ARGOCD_HEALTH], obj)
}
