//! Who may do what: the rules of a rendered (Cluster)Role flattened, and the API server asked
//! with impersonation (`kubectl auth can-i --as`).

use serde_json::Value;

use super::chart::get_object;
use super::env::TestEnv;

/// One permission: (apiGroup, resource, verb, resourceName).
pub type Grant = (String, String, String, String);

/// The rules of a (Cluster)Role as (apiGroup, resource, verb, resourceName) tuples, flattened
/// and sorted.
pub fn grants(role: &Value) -> Vec<Grant> {
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

/// The grants of VERBS on RESOURCE of GROUP (no resource names).
pub fn grants_of(group: &str, resource: &str, verbs: &[&str]) -> Vec<Grant> {
    verbs
        .iter()
        .map(|v| {
            (
                group.to_owned(),
                resource.to_owned(),
                (*v).to_owned(),
                String::new(),
            )
        })
        .collect()
}

/// One access question and its expected answer, for table-driven RBAC checks.
#[derive(Clone, Copy)]
pub struct Access<'a> {
    pub verb: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub allowed: bool,
}

/// VERB on RESOURCE (kubectl syntax, e.g. `vaultconnections.vaultconnections.io` or
/// `leases.coordination.k8s.io/NAME`), optionally its SUBRESOURCE, in NAMESPACE (None:
/// cluster-scoped resources, or all namespaces): ALLOWED or not.
pub fn access<'a>(
    verb: &'a str,
    resource: &'a str,
    subresource: Option<&'a str>,
    namespace: Option<&'a str>,
    allowed: bool,
) -> Access<'a> {
    Access {
        verb,
        resource,
        subresource,
        namespace,
        allowed,
    }
}

/// Asks the API server whether USER may do what A asks. Uses impersonation (`--as`).
pub fn can_i(env: &TestEnv, user: &str, a: &Access<'_>) -> bool {
    let as_user = format!("--as={user}");
    let sub = a.subresource.map(|s| format!("--subresource={s}"));
    let mut args = vec!["auth", "can-i", a.verb, a.resource, as_user.as_str()];
    if let Some(s) = &sub {
        args.push(s);
    }
    match a.namespace {
        Some(ns) => args.extend(["--namespace", ns]),
        // Without a namespace kubectl would ask about the kubeconfig's default namespace.
        None => args.push("--all-namespaces"),
    }
    let out = env.kubectl(&args);
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        _ => panic!("`{}` gave no answer: {}", out.command, out.stderr),
    }
}

/// Checks every question in TABLE for USER and fails once, listing every wrong answer.
pub fn assert_access(env: &TestEnv, user: &str, table: &[Access<'_>]) {
    let wrong: Vec<String> = table
        .iter()
        .filter(|a| can_i(env, user, a) != a.allowed)
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

/// Binds USER in NAMESPACE to CLUSTER_ROLE with a RoleBinding named BINDING (as a namespace
/// admin would).
pub fn bind(env: &TestEnv, namespace: &str, binding: &str, user: &str, cluster_role: &str) {
    env.kubectl(&[
        "create",
        "rolebinding",
        binding,
        "--namespace",
        namespace,
        "--clusterrole",
        cluster_role,
        "--user",
        user,
    ])
    .expect_success();
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

/// A copy of the admin kubeconfig whose user impersonates `system:serviceaccount:NS:SA`.
pub fn impersonating_kubeconfig(
    env: &TestEnv,
    scratch: &super::Scratch,
    ns: &str,
    sa: &str,
) -> String {
    let text = std::fs::read_to_string(&env.kubeconfig).expect("read kubeconfig");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
    let user = &mut config["users"][0]["user"];
    user["as"] = format!("system:serviceaccount:{ns}:{sa}").into();
    user["as-groups"] = serde_yaml::to_value([
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".to_owned(),
    ])
    .expect("groups");
    let text = serde_yaml::to_string(&config).expect("kubeconfig YAML");
    scratch.write("kubeconfig", &text).display().to_string()
}
