//! The ecosystem's own checkers, as tests use them: `vco-ecosystem` (hack/ecosystem: kstatus from
//! sigs.k8s.io/cli-utils and Argo CD's gopher-lua health evaluation), built and cached by
//! `hack/testenv.sh install`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::Output;
use super::tools;

/// The chart's Argo CD health check.
pub const ARGOCD_HEALTH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/vault-connection-operator/docs/argocd-health.lua"
);

/// A verdict as `vco-ecosystem` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Verdict {
    pub status: String,
    pub message: String,
}

/// The `vco-ecosystem` checker.
pub struct Ecosystem {
    bin: PathBuf,
}

impl Ecosystem {
    /// The installed checker, or `None` after one line saying how to build it.
    pub fn find() -> Option<Ecosystem> {
        Some(Ecosystem {
            bin: tools::tool("vco-ecosystem")?,
        })
    }

    /// `vco-ecosystem ARGS` with OBJ (JSON) on its standard input.
    pub fn run(&self, args: &[&str], obj: &serde_json::Value) -> Output {
        Output::of(Command::new(&self.bin).args(args), Some(&obj.to_string()))
    }

    fn verdict(&self, args: &[&str], obj: &serde_json::Value) -> Verdict {
        let out = self.run(args, obj);
        assert!(out.success, "vco-ecosystem {args:?} failed: {}", out.stderr);
        serde_json::from_str(&out.stdout).expect("vco-ecosystem prints a verdict")
    }

    /// What `sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute` says of `obj`.
    pub fn kstatus(&self, obj: &serde_json::Value) -> Verdict {
        self.verdict(&["kstatus"], obj)
    }

    /// What the chart's Argo CD health check says of `obj`, run as Argo CD runs it.
    pub fn argocd_health(&self, obj: &serde_json::Value) -> Verdict {
        self.argocd_health_with(Path::new(ARGOCD_HEALTH), obj)
    }

    /// What the Lua health check SCRIPT says of `obj`, run as Argo CD runs it.
    pub fn argocd_health_with(&self, script: &Path, obj: &serde_json::Value) -> Verdict {
        let script = script.to_str().expect("UTF-8 path");
        self.verdict(&["argocd-health", script], obj)
    }
}
