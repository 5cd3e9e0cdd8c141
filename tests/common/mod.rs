//! The test kit: one harness for every test binary.
//!
//! - [`env`]: where the test environment is (`env.json`), a private one for fault tests, and
//!   skipping: a test that needs a part that is missing prints one line and passes, unless
//!   `VCO_REQUIRE_TESTENV=1` (CI) makes that a failure.
//! - [`tools`]: helm, promtool and `vco-ecosystem` as `hack/testenv.sh install` caches them,
//!   found without a running environment.
//! - [`world`]: a namespace, SSM prefix and clients per test, with the helpers a specification
//!   needs (apply, wait for a reason, read the parameter, events).
//! - [`fixtures`]: typed connections and credentials Secrets, and the fixed inputs under
//!   `tests/fixtures/`.
//! - [`operator`]: the operator as a host process, and the one cluster name it runs with.
//! - [`ssm`], [`fake_ssm`]: parameters by the operator's own names; SSM endpoints that fail.
//! - [`providers`]: fake Doppler and Infisical APIs.
//! - [`chart`], [`rbac`]: the Helm chart rendered ([`chart::Rendered`]) and installed, and who
//!   may do what.
//! - [`alerts`]: the chart's alert rules and dashboard queries, and promtool.
//! - [`ecosystem`]: kstatus and Argo CD's health check, as the ecosystem's own code runs them.
//! - [`node`]: the environment's real node, the operator image in it, the chart's pods.
//! - [`release`]: a release directory (`hack/release.sh OUT`) and a loopback registry to
//!   publish it to.
//! - [`eks`]: the node's EKS stand-ins (Pod Identity associations, the agent's and IMDS's logs)
//!   and an STS/SSM proxy that checks web identity tokens and shortens credentials' lifetime.
//! - [`egress`]: a mandatory egress proxy that records what goes through it.
//! - [`netns`]: connections from inside a pod's network namespace, and bare pods to probe with.
#![allow(dead_code)] // each test binary uses a different part of the kit
#![allow(unused_imports)] // and so of the re-exports below

pub mod alerts;
pub mod chart;
pub mod ecosystem;
pub mod egress;
pub mod eks;
pub mod env;
pub mod fake_ssm;
pub mod fixtures;
pub mod netns;
pub mod node;
pub mod operator;
pub mod process;
pub mod providers;
pub mod rbac;
pub mod release;
pub mod ssm;
pub mod tools;
pub mod world;

use std::path::PathBuf;

pub use env::{PrivateEnv, TestEnv};
pub use fixtures::{Connection, Credentials, Object};
pub use operator::{CLUSTER, Operator, Options};
pub use process::{Output, run};
pub use world::{World, cond, condition, document};

/// A short random suffix for names that must not collide between parallel tests.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..8])
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `f` every 100 ms until it returns `Some`, or fails the test naming `what` after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() <= deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A scratch directory removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory under the system's temporary directory.
    pub fn new(prefix: &str) -> Scratch {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        Scratch(dir)
    }

    /// Writes NAME in the directory; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        path
    }

    /// The path of NAME in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
