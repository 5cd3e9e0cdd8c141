//! The Helm chart as tests meet it: rendered offline with the environment's helm
//! ([`Helm::find`], [`Rendered`]), and installed into the live environment as a release that
//! uninstalls itself ([`Release`]).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::Value;

use super::env::TestEnv;
use super::process::Output;
use super::{Scratch, tools, unique};

/// The chart under test.
pub const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/vault-connection-operator"
);

/// The CRD's name (docs/design.md §4).
pub const CRD: &str = "vaultconnections.vaultconnections.io";

/// The oldest Kubernetes the chart supports (its `kubeVersion`), for offline renders.
pub const KUBE_FLOOR: &str = "1.33.0";

/// The release and namespace offline renderings use, and the chart's full name for them.
pub const RELEASE: &str = "rel";
pub const NAMESPACE: &str = "ops";
pub const FULLNAME: &str = "rel-vault-connection-operator";

/// The environment's helm, for rendering and linting (no cluster needed).
pub struct Helm {
    bin: PathBuf,
}

impl Helm {
    /// The helm `hack/testenv.sh install` caches, or `None` after one line saying so.
    pub fn find() -> Option<Helm> {
        Some(Helm {
            bin: tools::tool("helm")?,
        })
    }

    /// The helm binary.
    pub fn bin(&self) -> &std::path::Path {
        &self.bin
    }

    /// `helm ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        // Offline, helm assumes Kubernetes 1.20, below the chart's kubeVersion: render and lint
        // for the oldest supported one, as a cluster of that version would.
        if matches!(args.first(), Some(&"template" | &"lint")) {
            cmd.args(["--kube-version", KUBE_FLOOR]);
        }
        Output::of(&mut cmd, None)
    }

    /// `helm lint CHART` with VALUES (YAML) as a values file.
    pub fn lint(&self, values: &str) -> Output {
        let file = ValuesFile::new(values);
        self.run(&["lint", CHART, "-f", file.path()])
    }

    /// `helm template rel CHART --namespace ops ARGS` as text, or a test failure.
    pub fn template_text(&self, args: &[&str]) -> String {
        self.template(RELEASE, NAMESPACE, args)
    }

    /// `helm template RELEASE CHART --namespace NAMESPACE ARGS` as text, or a test failure.
    pub fn template(&self, release: &str, namespace: &str, args: &[&str]) -> String {
        let mut all = vec!["template", release, CHART, "--namespace", namespace];
        all.extend_from_slice(args);
        self.run(&all).expect_success()
    }

    /// The chart rendered with ARGS (`--set …`, `-f …`).
    pub fn render(&self, args: &[&str]) -> Rendered {
        Rendered::parse(&self.template_text(args))
    }

    /// The chart rendered with VALUES (YAML) as a values file.
    pub fn render_values(&self, values: &str) -> Rendered {
        let file = ValuesFile::new(values);
        self.render(&["-f", file.path()])
    }
}

/// What `helm template` rendered: one JSON value per object.
pub struct Rendered {
    pub objects: Vec<Value>,
}

impl Rendered {
    /// The objects of a multi-document YAML stream.
    pub fn parse(text: &str) -> Rendered {
        Rendered {
            objects: parse_documents(text),
        }
    }

    /// The objects of KIND, in rendering order.
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    /// The object of KIND named NAME, if there is one.
    pub fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    /// The one object of KIND named NAME (in any namespace), or a test failure.
    pub fn find(&self, kind: &str, name: &str) -> &Value {
        self.find_where(kind, name, None)
    }

    /// The one object of KIND named NAME in namespace NS, or a test failure.
    pub fn find_in(&self, kind: &str, name: &str, ns: &str) -> &Value {
        self.find_where(kind, name, Some(ns))
    }

    fn find_where(&self, kind: &str, name: &str, ns: Option<&str>) -> &Value {
        let found: Vec<&Value> = self
            .objects
            .iter()
            .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .filter(|o| ns.is_none_or(|ns| o["metadata"]["namespace"] == ns))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one {kind} {name} (namespace {ns:?}); rendered: {:?}",
            self.summary()
        );
        found[0]
    }

    /// The operator's Deployment (in the release namespace).
    pub fn deployment(&self) -> &Value {
        self.find_in("Deployment", FULLNAME, NAMESPACE)
    }

    /// The operator container of the Deployment.
    pub fn container(&self) -> &Value {
        operator_container(self.deployment())
    }

    /// The literal value of the operator container's environment variable NAME, if set.
    pub fn env(&self, name: &str) -> Option<String> {
        env_value(self.container(), name)
    }

    /// "Kind namespace/name" of every object, for failure messages.
    pub fn summary(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|o| {
                format!(
                    "{} {}/{}",
                    o["kind"].as_str().unwrap_or("?"),
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }
}

/// Every non-empty document of a multi-document YAML stream.
pub fn parse_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("rendered YAML: {e}\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The operator container of a rendered Deployment.
pub fn operator_container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("the Deployment has containers");
    assert_eq!(containers.len(), 1, "one container: the operator");
    &containers[0]
}

/// The literal value of environment variable NAME in CONTAINER, if it is set.
pub fn env_value(container: &Value, name: &str) -> Option<String> {
    let vars = container["env"].as_array()?;
    let var = vars.iter().find(|v| v["name"] == name)?;
    Some(
        var["value"]
            .as_str()
            .expect("a literal env value")
            .to_owned(),
    )
}

/// A values file with CONTENTS that is removed when dropped.
pub struct ValuesFile(Scratch, PathBuf);

impl ValuesFile {
    pub fn new(contents: &str) -> ValuesFile {
        let dir = Scratch::new("chart-values");
        let path = dir.write("values.yaml", contents);
        ValuesFile(dir, path)
    }

    pub fn path(&self) -> &str {
        self.1.to_str().expect("temp paths are UTF-8")
    }
}

/// Serialises "is the CRD there? then install" so that two tests of one binary never both
/// install the CRD with their releases (the second would fail on Helm ownership).
static CRD_INSTALL: Mutex<()> = Mutex::new(());

/// A Helm release installed for one test; uninstalled when dropped, also when the test fails.
pub struct Release<'a> {
    pub env: &'a TestEnv,
    pub name: String,
    pub namespace: String,
    /// Whether this release installed the CRD (only when no CRD was present).
    pub installed_crd: bool,
}

impl<'a> Release<'a> {
    /// `helm install` of the chart as a unique release in NAMESPACE with EXTRA arguments. The CRD
    /// comes with the chart only if the cluster has none yet (other tests install it too).
    pub fn install(env: &'a TestEnv, namespace: &str, extra: &[&str]) -> Release<'a> {
        Self::install_chart(env, CHART, namespace, extra)
    }

    /// The same with another CHART: a packaged one, or an `oci://` reference.
    pub fn install_chart(
        env: &'a TestEnv,
        chart: &str,
        namespace: &str,
        extra: &[&str],
    ) -> Release<'a> {
        let name = unique("vco");
        let _guard = CRD_INSTALL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let crd_present = env
            .kubectl(&["get", "crd", CRD, "--ignore-not-found", "-o", "name"])
            .expect_success()
            .contains(CRD);
        let crds = format!("crds.install={}", !crd_present);
        let mut args = vec![
            "install",
            &name,
            chart,
            "--namespace",
            namespace,
            "--set",
            &crds,
        ];
        args.extend_from_slice(extra);
        env.helm(&args).expect_success();
        Release {
            env,
            name: name.clone(),
            namespace: namespace.to_owned(),
            installed_crd: !crd_present,
        }
    }

    /// The prefix of the release's resource names (the chart's fullname).
    pub fn fullname(&self) -> String {
        format!("{}-vault-connection-operator", self.name)
    }

    /// `helm get manifest`: what the release installed.
    pub fn manifest(&self) -> Rendered {
        Rendered::parse(
            &self
                .env
                .helm(&["get", "manifest", &self.name, "-n", &self.namespace])
                .expect_success(),
        )
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        // Best effort: cluster-scoped leftovers would only carry this release's unique name.
        let _ = self.env.helm(&[
            "uninstall",
            &self.name,
            "--namespace",
            &self.namespace,
            "--wait=false",
        ]);
    }
}

/// `kubectl get KIND NAME [-n NAMESPACE] -o json`, or a test failure naming what is missing.
pub fn get_object(env: &TestEnv, kind: &str, name: &str, namespace: Option<&str>) -> Value {
    let mut args = vec!["get", kind, name, "-o", "json"];
    if let Some(ns) = namespace {
        args.extend(["--namespace", ns]);
    }
    let text = env.kubectl(&args).expect_success();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl printed invalid JSON: {e}"))
}

/// The operator as RELEASE runs it, started as a host process for WORLD's namespace: the
/// Deployment's environment exactly as rendered (but the listen address: tests run side by
/// side), the release's ServiceAccount's rights (impersonated through a kubeconfig in SCRATCH),
/// and what the kubelet would add (POD_NAME, POD_NAMESPACE); then EXTRA on top.
pub async fn operator_as_installed(
    w: &super::World,
    release: &Release<'_>,
    scratch: &Scratch,
    extra: super::Options,
) -> super::Operator {
    let manifest = release.manifest();
    let container = operator_container(manifest.of_kind("Deployment")[0]);
    let mut vars: Vec<(String, String)> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_owned(),
                v["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    vars.retain(|(k, _)| k != "VCO_METRICS_ADDR");
    let sa = release.fullname();
    let ns = release.namespace.clone();
    let kubeconfig = super::rbac::impersonating_kubeconfig(&w.env, scratch, &ns, &sa);
    let mut opts = super::Options { env: vars }
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAMESPACE", ns)
        .env("POD_NAME", format!("{sa}-0"));
    opts.env.extend(extra.env);
    w.operator_with(opts).await
}
