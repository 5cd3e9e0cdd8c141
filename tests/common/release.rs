//! A release as `hack/release.sh OUT` writes it ([`Artifacts`]: the OCI layout, the chart pinned
//! by digest, `cosign.pub`), and a throwaway OCI registry on loopback to publish it to
//! ([`Registry`]: distribution's `registry`, as `hack/release/registry.sh` runs it), with the
//! release tools `hack/testenv.sh install` caches (oras, helm, cosign).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::env::skip;
use super::process::Output;
use super::{Scratch, repo, tools};

/// The chart's and the image's name.
pub const NAME: &str = "vault-connection-operator";

/// A release directory: what `hack/release.sh OUT` wrote.
pub struct Artifacts {
    pub dir: PathBuf,
    /// The release's version (BUILDINFO `version`).
    pub version: String,
    /// The image index digest (BUILDINFO `index`), which the chart pins.
    pub digest: String,
}

impl Artifacts {
    /// The release `hack/test.sh` builds before `cargo test` (`target/release-ci`, or
    /// `VCO_RELEASE_DIR`), or `None` after one line saying so (a failure with
    /// `VCO_REQUIRE_TESTENV=1`: CI always builds it).
    pub fn ci() -> Option<Artifacts> {
        let dir = std::env::var("VCO_RELEASE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo().join("target/release-ci"));
        let Ok(info) = std::fs::read_to_string(dir.join("BUILDINFO")) else {
            return skip(&format!(
                "a release in {} (hack/release.sh --allow-dirty target/release-ci)",
                dir.display()
            ));
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(char::is_whitespace)?;
                    (k == name).then(|| v.trim().to_owned())
                })
                .unwrap_or_else(|| panic!("{}/BUILDINFO has no {name}", dir.display()))
        };
        let (version, digest) = (field("version"), field("index"));
        assert!(digest.starts_with("sha256:"), "BUILDINFO index {digest}");
        Some(Artifacts {
            dir,
            version,
            digest,
        })
    }

    /// The OCI layout of the image (its index tagged with the version).
    pub fn layout(&self) -> PathBuf {
        self.dir.join("image")
    }

    /// The packaged chart.
    pub fn chart(&self) -> PathBuf {
        self.dir.join(format!("{NAME}-{}.tgz", self.version))
    }

    /// The public key everything is signed with.
    pub fn public_key(&self) -> PathBuf {
        self.dir.join("cosign.pub")
    }
}

/// The release tools, found where `hack/testenv.sh install` caches them.
pub struct Tools {
    pub registry: PathBuf,
    pub oras: PathBuf,
    pub helm: PathBuf,
    pub cosign: PathBuf,
}

impl Tools {
    /// All four, or `None` after one line naming the first one missing.
    pub fn find() -> Option<Tools> {
        Some(Tools {
            registry: tools::tool("registry")?,
            oras: tools::tool("oras")?,
            helm: tools::tool("helm")?,
            cosign: tools::tool("cosign")?,
        })
    }
}

/// An OCI registry (distribution's `registry`) on 127.0.0.1 over plain HTTP, its storage in a
/// scratch directory; killed when dropped. Its access log names every request and its client.
pub struct Registry {
    /// host:port
    pub host: String,
    child: Child,
    dir: Scratch,
}

impl Registry {
    /// Starts one on a free port and waits until it answers `/v2/`.
    pub fn start(bin: &Path) -> Registry {
        let dir = Scratch::new("registry");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.write(
            "config.yml",
            &format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n\
                 http: {{addr: {host}}}\n",
                dir.path("data").display()
            ),
        );
        let log = std::fs::File::create(dir.path("registry.log")).expect("registry log");
        // OTEL_TRACES_EXPORTER=none: registry v3 would otherwise export traces to localhost:4318.
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .env("OTEL_TRACES_EXPORTER", "none")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin:?}: {e}"));
        let mut registry = Registry { host, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !registry.answers() {
            let exited = registry
                .child
                .try_wait()
                .expect("registry status")
                .is_some();
            assert!(
                !exited && Instant::now() < deadline,
                "the registry did not start on {}: {}",
                registry.host,
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    /// Whether `GET /v2/` answers 200 (the distribution API's version check).
    fn answers(&self) -> bool {
        use std::io::{Read as _, Write as _};
        let Ok(mut s) = std::net::TcpStream::connect(&self.host) else {
            return false;
        };
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host
        );
        let mut answer = String::new();
        s.write_all(request.as_bytes()).is_ok()
            && s.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200")
    }

    /// The registry's log: its access log (one line per request, with the client's user agent)
    /// and its errors.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("registry.log")).unwrap_or_default()
    }

    /// The image repository of the release in this registry (`host:port/vault-connection-operator`).
    pub fn image(&self) -> String {
        format!("{}/{NAME}", self.host)
    }

    /// `oras cp -r` of the release's OCI layout into the registry (the index, its platform
    /// images and their referrers: signatures and the SBOM attestation); returns the digest the
    /// registry holds under the version tag.
    pub fn push_image(&self, tools: &Tools, release: &Artifacts) -> String {
        let from = format!("{}:{}", release.layout().display(), release.version);
        let to = format!("{}:{}", self.image(), release.version);
        let out = Output::of(
            Command::new(&tools.oras)
                .args(["cp", "--recursive", "--from-oci-layout", &from])
                .args(["--to-plain-http", &to]),
            None,
        )
        .expect_success();
        digest_line(&out).unwrap_or_else(|| panic!("oras printed no digest: {out}"))
    }

    /// `helm push` of the release's chart to `oci://host/charts`; returns the chart's manifest
    /// digest, by which it can be installed.
    pub fn push_chart(&self, tools: &Tools, release: &Artifacts) -> String {
        let out = Output::of(
            Command::new(&tools.helm)
                .arg("push")
                .arg(release.chart())
                .args([&format!("oci://{}/charts", self.host), "--plain-http"]),
            None,
        );
        // helm prints "Pushed: …" and "Digest: …" on stderr.
        let text = out.text();
        assert!(out.success, "`{}` failed: {text}", out.command);
        digest_line(&text).unwrap_or_else(|| panic!("helm push printed no digest: {text}"))
    }

    /// The chart's reference pinned by DIGEST (`oci://host/charts/NAME@sha256:…`).
    pub fn chart_ref(&self, digest: &str) -> String {
        format!("oci://{}/charts/{NAME}@{digest}", self.host)
    }

    /// `cosign verify` of the image REF (`host/name@digest`) with the release's public key, as a
    /// user checks it (no transparency log: the release is signed offline).
    pub fn cosign_verify(&self, tools: &Tools, release: &Artifacts, reference: &str) -> Output {
        Output::of(
            Command::new(&tools.cosign)
                .arg("verify")
                .arg("--key")
                .arg(release.public_key())
                .args([
                    "--insecure-ignore-tlog=true",
                    "--allow-http-registry",
                    reference,
                ]),
            None,
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The digest of a "Digest: sha256:…" line.
fn digest_line(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Digest: "))
        .map(|d| d.trim().to_owned())
}

/// The hosts file that lets the node's containerd pull from REGISTRY (host:port) over plain
/// HTTP: `hosts.toml` in the node's registry config directory (node.sh's `config_path`, next to
/// its socket), read at every pull. Removed when dropped. (containerd 1.6 also falls back to
/// plain HTTP for a loopback host without it; the file says so explicitly instead.)
pub struct NodeRegistryHost {
    dir: PathBuf,
}

impl NodeRegistryHost {
    pub fn add(containerd_socket: &Path, registry: &str) -> NodeRegistryHost {
        let root = containerd_socket
            .parent()
            .expect("the socket is in the node's containerd directory")
            .join("certs.d");
        assert!(
            root.is_dir(),
            "{} is missing: the node's containerd has no registry config_path (hack/testenv/node.sh)",
            root.display()
        );
        let dir = root.join(registry);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        let hosts = format!(
            "server = \"http://{registry}\"\n\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        std::fs::write(dir.join("hosts.toml"), hosts).expect("hosts.toml");
        NodeRegistryHost { dir }
    }
}

impl Drop for NodeRegistryHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
