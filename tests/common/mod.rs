//! Shared support for tests that run against the real test environment (`hack/testenv.sh up`):
//! clients for the kube-apiserver and the SSM emulator, and a fresh namespace per test.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::PathBuf;

use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Where the test environment is, as `hack/testenv.sh up` describes it in `env.json` in its state
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
}

const HOW: &str = "the test environment is not available: run `hack/testenv.sh up` (or run \
                   everything with `hack/test.sh`)";

impl TestEnv {
    /// Finds the environment, or fails the test saying how to start it.
    pub fn get() -> TestEnv {
        let dir = std::env::var("VCO_TESTENV_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testenv"));
        Self::read(&dir).unwrap_or_else(|e| panic!("{HOW}: {e}"))
    }

    /// The environment described in `dir/env.json`.
    fn read(dir: &std::path::Path) -> Result<TestEnv, String> {
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
        })
    }

    /// A kube client with the admin (system:masters) identity.
    pub async fn kube(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("{HOW}: cannot read {:?}: {e}", self.kubeconfig));
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
        use std::io::Write as _;
        let mut child = self
            .command("kubectl")
            .args(["apply", "-n", ns, "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write YAML");
        let out = child.wait_with_output().expect("kubectl finishes");
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A `std::process::Command` for PROGRAM with the environment's variables.
    pub fn command(&self, program: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.envs(self.child_env());
        cmd
    }
}

/// A short random suffix for names that must not collide between parallel tests.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..8])
}

/// Creates a fresh namespace for one test and returns its name.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique(prefix);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// Installs (server-side applies) the CRD from the Rust types and waits until it is Established.
/// Safe to call from many tests at once.
pub async fn install_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    use kube::api::{Patch, PatchParams};
    use kube::runtime::wait::{await_condition, conditions};
    use vault_connection_operator::api::VaultConnection;

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = VaultConnection::crd();
    let name = crd.metadata.name.clone().expect("crd has a name");
    crds.patch(
        &name,
        &PatchParams::apply("vco-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established within 30s")
    .expect("watch CRD");
}

/// Runs a command to completion and returns (success, stdout, stderr).
pub fn run(cmd: &mut std::process::Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An operator process started by a test, scoped to one namespace with its own SSM prefix.
/// Killed when dropped.
pub struct Operator {
    child: std::process::Child,
    /// Where its logs (JSON, debug level) go.
    pub log: PathBuf,
    /// Its /metrics address.
    pub metrics: String,
    /// The SSM prefix it writes under.
    pub prefix: String,
}

/// Options for [`Operator::start`].
#[derive(Clone, Default)]
pub struct OperatorOptions {
    /// Extra environment variables (e.g. `VCO_DRIFT_CHECK_INTERVAL`).
    pub env: Vec<(String, String)>,
}

impl Operator {
    /// Starts the operator for `ns` with SSM prefix `prefix`, and waits until /readyz answers.
    pub async fn start(env: &TestEnv, ns: &str, prefix: &str, opts: &OperatorOptions) -> Operator {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = repo().join("target/test-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        let log = dir.join(format!("{ns}-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vault-connection-operator"));
        cmd.arg("run")
            .envs(env.child_env())
            .env("VCO_NAMESPACES", ns)
            .env("VCO_SSM_PREFIX", prefix)
            .env("VCO_CLUSTER_NAME", "default")
            .env("VCO_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("VCO_LOG_FORMAT", "json")
            .env("VCO_LOG_LEVEL", "debug")
            .env("VCO_SSM_WRITE_RATE", "50")
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        let child = cmd.spawn().expect("start operator");
        let op = Operator {
            child,
            log,
            metrics: format!("http://127.0.0.1:{port}"),
            prefix: prefix.to_owned(),
        };
        op.wait_ready().await;
        op
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if http_get(&format!("{}/readyz", self.metrics))
                .await
                .is_some_and(|(code, _)| code == 200)
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("operator not ready within 10s; log: {}", self.logs());
    }

    /// The operator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The operator's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The /metrics text.
    pub async fn metrics_text(&self) -> String {
        http_get(&format!("{}/metrics", self.metrics))
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// The sum of the operator's metric `family` (full name, e.g. `…_ssm_calls_total`) over the
    /// series whose labels contain `label` (e.g. `operation="GetParameter"`; "" for all).
    pub async fn metric(&self, family: &str, label: &str) -> f64 {
        let start = format!("{family}{{");
        self.metrics_text()
            .await
            .lines()
            .filter(|l| l.starts_with(&start) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The value of counter `vault_connection_operator_ssm_calls_total` for an operation, summed
    /// over outcomes.
    pub async fn ssm_calls(&self, operation: &str) -> u64 {
        let label = format!("operation=\"{operation}\"");
        self.metric("vault_connection_operator_ssm_calls_total", &label)
            .await as u64
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.0 GET on loopback: (status, body).
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    stream.read_to_string(&mut buf).await.ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what` after `secs`.
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
        if std::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A test environment of a test's own (`hack/testenv.sh up` in a private state directory), for
/// tests that stop, freeze or restart its parts. Torn down when dropped.
pub struct PrivateEnv {
    /// The environment, as for [`TestEnv::get`].
    pub env: TestEnv,
    dir: PathBuf,
}

impl PrivateEnv {
    /// Starts a private environment (about 3 s once the binaries are cached).
    pub fn up(name: &str) -> PrivateEnv {
        let dir = repo()
            .join("target")
            .join(unique(&format!("testenv-{name}")));
        let (ok, _, err) = run(std::process::Command::new(repo().join("hack/testenv.sh"))
            .arg("up")
            .env("VCO_TESTENV_DIR", &dir));
        assert!(ok, "hack/testenv.sh up failed: {err}");
        PrivateEnv {
            env: TestEnv::read(&dir).expect("private env file"),
            dir,
        }
    }

    /// `hack/testenv.sh ACTION COMPONENT` (restart, stop, start, pause, resume).
    pub fn component(&self, action: &str, component: &str) {
        let (ok, _, err) = run(std::process::Command::new(repo().join("hack/testenv.sh"))
            .args([action, component])
            .env("VCO_TESTENV_DIR", &self.dir));
        assert!(ok, "hack/testenv.sh {action} {component} failed: {err}");
    }
}

impl Drop for PrivateEnv {
    fn drop(&mut self) {
        let _ = std::process::Command::new(repo().join("hack/testenv.sh"))
            .arg("down")
            .env("VCO_TESTENV_DIR", &self.dir)
            .output();
    }
}

/// YAML for `n` 1Password connections `c0`… with their labelled Secrets (token `ops_{tag}{i}`).
pub fn one_password_connections(n: usize, tag: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"apiVersion: v1
kind: Secret
metadata: {{name: c{i}, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{access_token: "ops_{tag}{i}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: c{i}}}
spec: {{vaultType: onepassword, credentialsSecretRef: {{name: c{i}}}}}
---
"#
            )
        })
        .collect()
}
