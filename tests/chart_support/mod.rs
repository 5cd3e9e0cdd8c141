//! Support for the Helm chart tests (tests/chart.rs): running helm and kubectl from the test
//! environment, reading rendered manifests, asking the API server who may do what, and releases
//! that uninstall themselves. Builds on `tests/common` (environment, unique names, namespaces).
#![allow(dead_code)] // not every helper is used by every test binary that includes this module

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::Value;

use crate::common::{TestEnv, unique};

/// The chart under test.
pub const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/vault-connection-operator"
);

/// The CRD's name (docs/design.md §4).
pub const CRD: &str = "vaultconnections.vaultconnections.io";

/// What a finished helm or kubectl command printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
}

impl Output {
    /// The standard output, or a test failure that shows the command and its error output.
    pub fn expect_success(self) -> String {
        assert!(
            self.success,
            "`{}` failed:\n{}\n{}",
            self.command, self.stderr, self.stdout
        );
        self.stdout
    }

    /// The error output of a command that must fail, or a test failure if it succeeded.
    pub fn expect_failure(self) -> String {
        assert!(
            !self.success,
            "`{}` succeeded but should have failed:\n{}",
            self.command, self.stdout
        );
        format!("{}{}", self.stderr, self.stdout)
    }
}

/// Runs PROGRAM (helm or kubectl from the test environment) with ARGS, feeding STDIN if given.
pub fn run(env: &TestEnv, program: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let command = format!("{program} {}", args.join(" "));
    let mut cmd: Command = env.command(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{command}` ({e}): is {program} on PATH? {HINT}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write to `{command}`: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("`{command}` did not finish: {e}"));
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command,
    }
}

const HINT: &str = "run `hack/testenv.sh up`";

pub fn helm(env: &TestEnv, args: &[&str]) -> Output {
    run(env, "helm", args, None)
}

pub fn kubectl(env: &TestEnv, args: &[&str]) -> Output {
    run(env, "kubectl", args, None)
}

/// A values file with CONTENTS that is removed when dropped.
pub struct ValuesFile(pub PathBuf);

impl ValuesFile {
    pub fn new(contents: &str) -> ValuesFile {
        let path = std::env::temp_dir().join(format!("{}.yaml", unique("chart-values")));
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
        ValuesFile(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for ValuesFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `helm template RELEASE CHART -n NAMESPACE EXTRA...` as text, or a test failure.
pub fn template_text(env: &TestEnv, release: &str, namespace: &str, extra: &[&str]) -> String {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    args.extend_from_slice(extra);
    helm(env, &args).expect_success()
}

/// The objects `helm template` renders, one JSON value per YAML document.
pub fn template(env: &TestEnv, release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
    parse_documents(&template_text(env, release, namespace, extra))
}

/// Every non-empty document of a multi-document YAML stream.
pub fn parse_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("rendered YAML: {e}\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The rendered objects of KIND, in rendering order.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The one rendered object of KIND named NAME (in NAMESPACE, when given), or a test failure.
pub fn find<'a>(
    objects: &'a [Value],
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .filter(|o| namespace.is_none_or(|ns| o["metadata"]["namespace"] == ns))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind} {name} (namespace {namespace:?}); rendered: {:?}",
        summary(objects)
    );
    found[0]
}

/// "Kind namespace/name" of every object, for failure messages.
pub fn summary(objects: &[Value]) -> Vec<String> {
    objects
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

/// The rules of a (Cluster)Role as (apiGroup, resource, verb, resourceName) tuples, flattened.
pub fn grants(role: &Value) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    for rule in role["rules"].as_array().into_iter().flatten() {
        let names = strings(&rule["resourceNames"]);
        let names = if names.is_empty() {
            vec![String::new()]
        } else {
            names
        };
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    for name in &names {
                        out.push((group.clone(), resource.clone(), verb.clone(), name.clone()));
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// Asks the API server whether USER may do VERB on RESOURCE (kubectl syntax, e.g.
/// `vaultconnections.vaultconnections.io` or `leases.coordination.k8s.io/NAME`), optionally on a
/// SUBRESOURCE, in NAMESPACE (None: cluster-scoped resources, or all namespaces). Uses
/// impersonation (`--as`).
pub fn can_i(
    env: &TestEnv,
    user: &str,
    verb: &str,
    resource: &str,
    subresource: Option<&str>,
    namespace: Option<&str>,
) -> bool {
    let as_user = format!("--as={user}");
    let sub = subresource.map(|s| format!("--subresource={s}"));
    let mut args = vec!["auth", "can-i", verb, resource, as_user.as_str()];
    if let Some(s) = &sub {
        args.push(s);
    }
    match namespace {
        Some(ns) => args.extend(["--namespace", ns]),
        // Without a namespace kubectl would ask about the kubeconfig's default namespace.
        None => args.push("--all-namespaces"),
    }
    let out = kubectl(env, &args);
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        _ => panic!("`{}` gave no answer: {}", out.command, out.stderr),
    }
}

/// One access question and its expected answer, for table-driven RBAC checks.
pub struct Access<'a> {
    pub verb: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub allowed: bool,
}

/// Checks every question in TABLE for USER and fails once, listing every wrong answer.
pub fn assert_access(env: &TestEnv, user: &str, table: &[Access<'_>]) {
    let wrong: Vec<String> = table
        .iter()
        .filter(|a| can_i(env, user, a.verb, a.resource, a.subresource, a.namespace) != a.allowed)
        .map(|a| {
            format!(
                "{user} {} {} {}{} in {}",
                if a.allowed {
                    "should be able to"
                } else {
                    "must not be able to"
                },
                a.verb,
                a.resource,
                a.subresource
                    .map(|s| format!(" (subresource {s})"))
                    .unwrap_or_default(),
                a.namespace.unwrap_or("the cluster scope"),
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "wrong RBAC answers:\n  {}",
        wrong.join("\n  ")
    );
}

/// Serialises "is the CRD there? then install" so that two tests of this binary never both
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
        let name = unique("vco");
        let _guard = CRD_INSTALL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let crd_present = kubectl(
            env,
            &["get", "crd", CRD, "--ignore-not-found", "-o", "name"],
        )
        .expect_success()
        .contains(CRD);
        let crds = format!("crds.install={}", !crd_present);
        let mut args = vec![
            "install",
            &name,
            CHART,
            "--namespace",
            namespace,
            "--set",
            &crds,
        ];
        args.extend_from_slice(extra);
        helm(env, &args).expect_success();
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
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        // Best effort: cluster-scoped leftovers would only carry this release's unique name.
        let _ = helm(
            self.env,
            &[
                "uninstall",
                &self.name,
                "--namespace",
                &self.namespace,
                "--wait=false",
            ],
        );
    }
}

/// `kubectl get KIND NAME [-n NAMESPACE] -o json`, or a test failure naming what is missing.
pub fn get_object(env: &TestEnv, kind: &str, name: &str, namespace: Option<&str>) -> Value {
    let mut args = vec!["get", kind, name, "-o", "json"];
    if let Some(ns) = namespace {
        args.extend(["--namespace", ns]);
    }
    let text = kubectl(env, &args).expect_success();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl printed invalid JSON: {e}"))
}

/// Whether a label selector's matchLabels all appear in LABELS (matchExpressions unsupported:
/// the built-in aggregated roles do not use them).
pub fn selector_matches(selector: &Value, labels: &Value) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "selector uses matchExpressions, which this check does not evaluate: {selector}"
    );
    selector["matchLabels"]
        .as_object()
        .is_some_and(|want| want.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Waits (up to 60 s) until kube-controller-manager has aggregated the chart's user roles into
/// the built-in `admin`, `edit` and `view` ClusterRoles, or fails the test.
pub fn wait_for_aggregation(env: &TestEnv) {
    let has = |role: &str, verb: &str| {
        grants(&get_object(env, "clusterrole", role, None)).contains(&(
            "vaultconnections.io".to_owned(),
            "vaultconnections".to_owned(),
            verb.to_owned(),
            String::new(),
        ))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(has("admin", "create") && has("edit", "list") && has("view", "list")) {
        assert!(
            std::time::Instant::now() < deadline,
            "kube-controller-manager did not aggregate the chart's roles into admin/edit/view \
             within 60s (is it running? `hack/testenv.sh status`)"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
