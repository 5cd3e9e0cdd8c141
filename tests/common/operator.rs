//! The operator as a host process started by a test: scoped to one namespace and SSM prefix,
//! named cluster [`CLUSTER`], logging JSON at debug level to a file, killed when dropped.

use std::path::PathBuf;
use std::time::Duration;

use super::env::TestEnv;
use super::repo;

/// The cluster name every test operator is started with (`VCO_CLUSTER_NAME`), and so the one
/// its parameter names and tags carry.
pub const CLUSTER: &str = "default";

/// Settings for [`Operator::start`]: environment variables on top of the defaults (a later value
/// for the same variable wins).
#[derive(Clone, Default)]
pub struct Options {
    /// Extra environment variables (e.g. `VCO_DRIFT_CHECK_INTERVAL`).
    pub env: Vec<(String, String)>,
}

impl Options {
    /// No extra variables.
    pub fn new() -> Options {
        Options::default()
    }

    /// Sets variable KEY to VALUE.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Options {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Leader election on, with a Lease of its own in NS.
    pub fn leader_election(self, ns: &str, lease: &str) -> Options {
        self.env("VCO_LEADER_ELECTION", "true")
            .env("VCO_LEASE_NAMESPACE", ns)
            .env("VCO_LEASE_NAME", lease)
    }
}

/// An operator process started by a test. Killed when dropped.
pub struct Operator {
    child: std::process::Child,
    /// Where its logs (JSON, debug level) go.
    pub log: PathBuf,
    /// Its /metrics address.
    pub metrics: String,
    /// The SSM prefix it writes under.
    pub prefix: String,
}

impl Operator {
    /// Starts the operator for `ns` with SSM prefix `prefix`, and waits until /readyz answers.
    pub async fn start(env: &TestEnv, ns: &str, prefix: &str, opts: &Options) -> Operator {
        let port = free_port();
        let dir = repo().join("target/test-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        let log = dir.join(format!("{ns}-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vault-connection-operator"));
        cmd.arg("run")
            .envs(env.child_env())
            .env("VCO_NAMESPACES", ns)
            .env("VCO_SSM_PREFIX", prefix)
            .env("VCO_CLUSTER_NAME", CLUSTER)
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
            tokio::time::sleep(Duration::from_millis(100)).await;
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

    /// Whether the log says this replica won the Lease.
    pub fn leads(&self) -> bool {
        self.logs().contains("\"message\":\"became leader\"")
    }

    /// How many reconciles the log records.
    pub fn reconciles_logged(&self) -> usize {
        self.logs().matches("\"message\":\"reconciled\"").count()
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

    /// The value of the unlabelled metric NAME (a gauge such as `…_deletions_held`), if exported.
    pub async fn gauge(&self, name: &str) -> Option<f64> {
        let start = format!("{name} ");
        self.metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&start)?.parse::<f64>().ok())
    }

    /// The value of counter `vault_connection_operator_ssm_calls_total` for an operation, summed
    /// over outcomes.
    pub async fn ssm_calls(&self, operation: &str) -> u64 {
        let label = format!("operation=\"{operation}\"");
        self.metric("vault_connection_operator_ssm_calls_total", &label)
            .await as u64
    }

    /// Reconciles that ended in `reason`, from the metrics.
    pub async fn reconciles(&self, reason: &str) -> f64 {
        let label = format!("reason=\"{reason}\"");
        self.metric("vault_connection_operator_reconciles_total", &label)
            .await
    }

    /// Whether the process has exited by itself, and how (`Some(success)`).
    pub fn exited(&mut self) -> Option<bool> {
        self.child
            .try_wait()
            .expect("the operator's status")
            .map(|status| status.success())
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

/// A loopback port nothing listens on (at the moment of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
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
