//! Where the test environment is (`env.json`, written by `hack/testenv.sh up`), and what a test
//! does when a part it needs is missing: it prints one line saying what it needs and passes —
//! unless `VCO_REQUIRE_TESTENV=1` (set by `hack/test.sh`), which makes a missing part a failure,
//! so CI never skips silently.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::{Output, repo, run, unique};

/// What a test that needs the live environment says when it is not there.
pub const NEEDS_ENV: &str = "the test environment (hack/testenv.sh up)";

/// Whether a missing part fails the test instead of skipping it (`VCO_REQUIRE_TESTENV=1`).
pub fn required() -> bool {
    std::env::var("VCO_REQUIRE_TESTENV").is_ok_and(|v| v == "1")
}

/// Skips the running test: one line on stderr (past the test harness's capture) naming the test
/// and what it needs. With `VCO_REQUIRE_TESTENV=1` the test fails instead.
pub fn skip<T>(needs: &str) -> Option<T> {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    assert!(
        !required(),
        "{test} needs {needs}, and VCO_REQUIRE_TESTENV=1 forbids skipping"
    );
    // One write, so the line is not cut by the harness's own output from other threads.
    let line = format!("skipped {test}: needs {needs}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    None
}

/// The test environment as `hack/testenv.sh up` describes it in `env.json` in its state
/// directory (`VCO_TESTENV_DIR`, default `target/testenv`).
#[derive(Clone, Debug)]
pub struct TestEnv {
    /// Path of the admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Endpoint of the SSM emulator.
    pub ssm_endpoint: String,
    /// PATH with the environment's kubectl and helm first.
    pub path: String,
    /// The node, when the environment has one (`up --node`).
    pub node: Option<EnvNode>,
    /// The Kubernetes version its API server runs (`up --floor`: the oldest supported).
    pub kube_version: String,
}

/// The node of the test environment.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct EnvNode {
    /// The node's name.
    pub name: String,
    /// Its containerd socket (namespace k8s.io holds the kubelet's images).
    pub containerd: PathBuf,
    /// The host's address on the node's bridge (the API server and moto listen there).
    pub host_ip: String,
}

/// `env.json`: the typed interface of the test environment (format 1).
#[derive(serde::Deserialize)]
struct EnvFile {
    format: u32,
    kubeconfig: PathBuf,
    ssm_endpoint: String,
    bin: Vec<String>,
    node: Option<EnvNode>,
    kube_version: String,
}

impl TestEnv {
    /// The running environment, or `None` after one line saying how to start it (a failure with
    /// `VCO_REQUIRE_TESTENV=1`). An `env.json` that exists but cannot be read always fails.
    pub fn live() -> Option<TestEnv> {
        let dir = std::env::var("VCO_TESTENV_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo().join("target/testenv"));
        if !dir.join("env.json").is_file() {
            return skip(NEEDS_ENV);
        }
        Some(Self::read(&dir).unwrap_or_else(|e| panic!("{e}")))
    }

    /// The environment described in `dir/env.json`.
    fn read(dir: &Path) -> Result<TestEnv, String> {
        let file = dir.join("env.json");
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("cannot read {file:?}: {e}"))?;
        let env: EnvFile =
            serde_json::from_str(&text).map_err(|e| format!("{file:?} is not valid: {e}"))?;
        if env.format != 1 {
            return Err(format!("{file:?} has format {}, not 1", env.format));
        }
        let path = format!(
            "{}:{}",
            env.bin.join(":"),
            std::env::var("PATH").unwrap_or_default()
        );
        Ok(TestEnv {
            kubeconfig: env.kubeconfig,
            ssm_endpoint: env.ssm_endpoint,
            path,
            node: env.node,
            kube_version: env.kube_version,
        })
    }

    /// A kube client with the admin (system:masters) identity.
    pub async fn kube(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("cannot read {:?}: {e}", self.kubeconfig));
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig is valid");
        Client::try_from(config).expect("kube client")
    }

    /// An SSM client for the emulator, configured as the operator's would be by environment.
    pub async fn ssm(&self) -> aws_sdk_ssm::Client {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(&self.ssm_endpoint)
            .load()
            .await;
        aws_sdk_ssm::Client::new(&config)
    }

    /// An SSM client with other credentials (e.g. a role assumed in another of moto's accounts).
    pub async fn ssm_as(&self, key: &str, secret: &str, token: &str) -> aws_sdk_ssm::Client {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                key,
                secret,
                Some(token.into()),
                None,
                "test",
            ))
            .endpoint_url(&self.ssm_endpoint)
            .load()
            .await;
        aws_sdk_ssm::Client::new(&config)
    }

    /// The environment variables a child process (kubectl, helm, the operator) needs.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KUBECONFIG", self.kubeconfig.display().to_string()),
            ("AWS_ENDPOINT_URL_SSM", self.ssm_endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("PATH", self.path.clone()),
        ]
    }

    /// `kubectl apply` of YAML text into namespace `ns`; fails the test if kubectl does.
    pub fn apply(&self, ns: &str, yaml: &str) {
        let out = self.kubectl_with_input(&["apply", "-n", ns, "-f", "-"], yaml);
        assert!(out.success, "kubectl apply: {}", out.stderr);
    }

    /// A `std::process::Command` for PROGRAM with the environment's variables.
    pub fn command(&self, program: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.envs(self.child_env());
        cmd
    }

    /// `kubectl ARGS` against the environment.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Output::of(self.command("kubectl").args(args), None)
    }

    /// `kubectl ARGS` with INPUT on its standard input.
    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> Output {
        Output::of(self.command("kubectl").args(args), Some(input))
    }

    /// `helm ARGS` against the environment.
    pub fn helm(&self, args: &[&str]) -> Output {
        Output::of(self.command("helm").args(args), None)
    }
}

/// A test environment of a test's own (`hack/testenv.sh up` in a private state directory), for
/// tests that stop, freeze or restart its parts, or count its requests. Torn down when dropped.
pub struct PrivateEnv {
    /// The environment, as for [`TestEnv::live`].
    pub env: TestEnv,
    dir: PathBuf,
}

impl PrivateEnv {
    /// Starts a private environment (about 3 s once the binaries are cached). Like every live
    /// test, it runs only while the shared environment is up: that is how a developer says
    /// "run the live tests" (and it proves the binaries are installed).
    pub fn up(name: &str) -> Option<PrivateEnv> {
        TestEnv::live()?;
        let dir = repo()
            .join("target")
            .join(unique(&format!("testenv-{name}")));
        let (ok, _, err) = run(std::process::Command::new(repo().join("hack/testenv.sh"))
            .arg("up")
            .env("VCO_TESTENV_DIR", &dir));
        assert!(ok, "hack/testenv.sh up failed: {err}");
        Some(PrivateEnv {
            env: TestEnv::read(&dir).expect("private env file"),
            dir,
        })
    }

    /// `hack/testenv.sh ACTION COMPONENT` (restart, stop, start, pause, resume).
    pub fn component(&self, action: &str, component: &str) {
        let (ok, _, err) = run(std::process::Command::new(repo().join("hack/testenv.sh"))
            .args([action, component])
            .env("VCO_TESTENV_DIR", &self.dir));
        assert!(ok, "hack/testenv.sh {action} {component} failed: {err}");
    }
}

impl PrivateEnv {
    /// Writes KEY = VALUE straight into the environment's etcd (its JSON gateway), bypassing
    /// the API server: e.g. to move etcd's revision on while the API server is stopped, so
    /// that watches resumed afterwards are too old and must list again.
    pub fn etcd_put(&self, key: &str, value: &str) {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let url = std::fs::read_to_string(self.dir.join("etcd.url")).expect("etcd.url");
        let body = serde_json::json!({"key": b64(key), "value": b64(value)}).to_string();
        let (ok, _, err) = run(std::process::Command::new("curl")
            .args(["-fsS", "--max-time", "5", "-X", "POST", "-d", &body])
            .arg(format!("{}/v3/kv/put", url.trim())));
        assert!(ok, "etcd put {key}: {err}");
    }
}

impl Drop for PrivateEnv {
    fn drop(&mut self) {
        let _ = std::process::Command::new(repo().join("hack/testenv.sh"))
            .arg("down")
            .env("VCO_TESTENV_DIR", &self.dir)
            .output();
        // Its logs are kept for a test that failed, and removed otherwise.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
