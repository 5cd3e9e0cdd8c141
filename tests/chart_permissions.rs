//! Who may do what once the chart is installed, as the live API server answers with
//! impersonation: the operator's ServiceAccount can do exactly what the operator needs (and it
//! suffices: the operator runs as a host process with the environment the chart's Deployment
//! renders and a kubeconfig that impersonates that ServiceAccount, so this needs no node —
//! tests/in_cluster.rs runs the chart's pods for real); namespace admins manage connections,
//! editors and viewers only read, and nobody can re-tier their own namespace.
//!
//! kube-controller-manager runs in the test environment and fills the aggregated built-in
//! ClusterRoles (`admin`, `edit`, `view`): the tests bind people to those, as a cluster's
//! administrators do, and one test checks the selectors that pick the chart's roles up.

mod common;

use std::time::Duration;

use serde_json::Value;
use vault_connection_operator::status::ready_reason;

use common::chart::{Release, get_object, operator_as_installed};
use common::rbac::{
    Access, access, assert_access, bind, can_i, selector_matches, wait_for_aggregation,
};
use common::{CLUSTER, Connection, Credentials, Options, Scratch, World, eventually, unique};

const VC: &str = "vaultconnections.vaultconnections.io";

/// VERBS on connections in NS: ALLOWED or not.
fn vc_access<'a>(verbs: &[&'a str], ns: &'a str, allowed: bool) -> Vec<Access<'a>> {
    verbs
        .iter()
        .map(|&verb| access(verb, VC, None, Some(ns), allowed))
        .collect()
}

#[tokio::test]
async fn the_operator_runs_with_exactly_the_charts_service_account_permissions() {
    let Some(w) = World::new("team").await else {
        return;
    };
    let env = &w.env;
    let release_ns = w.namespace("vco-system").await;
    let watch = format!("operator.watchNamespaces={{{}}}", w.ns);
    let release = Release::install(
        env,
        &release_ns,
        &[
            "--set",
            &watch,
            "--set",
            &format!("operator.ssmPrefix={}", w.prefix),
            "--set",
            &format!("operator.clusterName={CLUSTER}"),
        ],
    );

    // The operator's settings exactly as the chart renders them, with its ServiceAccount's rights.
    let manifest = release.manifest();
    let container = common::chart::operator_container(manifest.of_kind("Deployment")[0]);
    let rendered = |name: &str, value: &str| {
        container["env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|v| v["name"] == name && v["value"] == value)
    };
    assert!(rendered("VCO_LEADER_ELECTION", "true"), "{container}");
    assert!(rendered("VCO_NAMESPACES", &w.ns), "{container}");
    let scratch = Scratch::new("sa");
    let op = operator_as_installed(
        &w,
        &release,
        &scratch,
        Options::new().env("VCO_LEASE_DURATION", "4s"),
    )
    .await;
    eventually(20, "the operator to win the Lease", || async {
        op.leads().then_some(())
    })
    .await;

    // A team creates a connection; the operator serves it with nothing but the chart's rights.
    w.apply(Credentials::secret("creds").token("ops_chart"))
        .await;
    w.apply(Connection::onepassword("conn").secret("creds"))
        .await;
    let version = || async { w.read("conn").await.map(|(_, v)| v) };
    eventually(20, "the parameter to be created", version).await;
    let vcs = w.vcs();
    eventually(
        10,
        "Ready status (status subresource and events allowed)",
        || async {
            let vc = vcs.get("conn").await.ok()?;
            ready_reason(&vc).filter(|r| *r == "Synced").map(drop)
        },
    )
    .await;

    // Rotation (Secret watch and read) and deletion (finalizer removal) work too.
    w.rotate("creds", "access_token", "ops_rotated").await;
    eventually(20, "version 2", || async {
        version().await.filter(|v| *v == 2)
    })
    .await;
    w.delete("conn").await;
    eventually(20, "the connection to be gone", || async {
        vcs.get_opt("conn")
            .await
            .expect("get connection")
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(version().await, None, "the parameter was deleted");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = op.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "the operator hit a permission it lacks:\n{logs}"
    );
}

#[tokio::test]
async fn the_operator_service_account_can_do_exactly_what_the_operator_needs() {
    let Some(w) = World::new("chart-sa-team").await else {
        return;
    };
    let (env, team) = (&w.env, &w.ns);
    let ops = w.namespace("chart-sa-ops").await;
    let release = Release::install(env, &ops, &[]);
    let sa = format!("system:serviceaccount:{ops}:{}", release.fullname());

    let lease = "leases.coordination.k8s.io/vault-connection-operator";
    let t = Some(team.as_str());
    let o = Some(ops.as_str());
    let a = access;
    let table = [
        a("get", VC, None, t, true),
        a("list", VC, None, t, true),
        a("watch", VC, None, t, true),
        a("patch", VC, None, t, true),
        a("update", VC, None, t, true),
        a("get", VC, Some("status"), t, true),
        a("patch", VC, Some("status"), t, true),
        a("update", VC, Some("status"), t, true),
        a("update", VC, Some("finalizers"), t, true),
        a("get", "secrets", None, t, true),
        a("list", "secrets", None, t, true),
        a("watch", "secrets", None, t, true),
        a("create", "events.events.k8s.io", None, t, true),
        a("patch", "events.events.k8s.io", None, t, true),
        a("get", "namespaces", None, None, true),
        a("list", "namespaces", None, None, true),
        a("watch", "namespaces", None, None, true),
        a("create", "leases.coordination.k8s.io", None, o, true),
        a("get", lease, None, o, true),
        a("list", lease, None, o, true),
        a("watch", lease, None, o, true),
        a("update", lease, None, o, true),
        a("patch", lease, None, o, true),
        // and nothing more
        a("create", VC, None, t, false),
        a("delete", VC, None, t, false),
        a("deletecollection", VC, None, t, false),
        a("create", "secrets", None, t, false),
        a("update", "secrets", None, t, false),
        a("patch", "secrets", None, t, false),
        a("delete", "secrets", None, t, false),
        a("create", "events", None, t, false),
        a("get", "configmaps", None, t, false),
        a("create", "pods", None, t, false),
        a("list", "deployments.apps", None, t, false),
        a("update", "namespaces", None, None, false),
        a("delete", lease, None, o, false),
        a(
            "get",
            "leases.coordination.k8s.io/someone-else",
            None,
            o,
            false,
        ),
        a(
            "update",
            "leases.coordination.k8s.io/someone-else",
            None,
            o,
            false,
        ),
        a("get", lease, None, t, false),
        a(
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            None,
            t,
            false,
        ),
        a(
            "create",
            "clusterroles.rbac.authorization.k8s.io",
            None,
            None,
            false,
        ),
        a(
            "escalate",
            "clusterroles.rbac.authorization.k8s.io",
            None,
            None,
            false,
        ),
        a("impersonate", "users", None, None, false),
        a("create", "serviceaccounts", Some("token"), o, false),
    ];
    assert_access(env, &sa, &table);
}

#[tokio::test]
async fn watching_namespaces_confines_the_operator_to_them() {
    let Some(w) = World::new("chart-ns-watched").await else {
        return;
    };
    let (env, watched) = (&w.env, &w.ns);
    let ops = w.namespace("chart-ns-ops").await;
    let other = w.namespace("chart-ns-other").await;
    let watch = format!("operator.watchNamespaces={{{watched}}}");
    let release = Release::install(env, &ops, &["--set", &watch]);
    let sa = format!("system:serviceaccount:{ops}:{}", release.fullname());

    let w = Some(watched.as_str());
    let x = Some(other.as_str());
    let a = access;
    assert_access(
        env,
        &sa,
        &[
            a("list", VC, None, w, true),
            a("patch", VC, Some("status"), w, true),
            a("list", "secrets", None, w, true),
            a("create", "events.events.k8s.io", None, w, true),
            a("list", "namespaces", None, None, true),
            // The connections and their finalizers are granted cluster-wide (so deleting a
            // watched namespace, which removes its Roles at once, cannot strand its
            // connections' cleanup); writes outside the watched namespaces are refused by the
            // chart's admission policy, below.
            a("list", VC, None, x, true),
            a("patch", VC, Some("status"), x, false),
            a("list", "secrets", None, x, false),
            a("get", "secrets", None, x, false),
            a("create", "events.events.k8s.io", None, x, false),
            a("list", "secrets", None, None, false),
        ],
    );

    // The admission policy: the operator's change to a connection in the watched namespace is
    // admitted, and to one elsewhere refused.
    let annotate = |ns: &str| {
        env.kubectl(&[
            "annotate",
            "-n",
            ns,
            "vaultconnection",
            "probe",
            "test/probe=1",
            "--overwrite",
            "--as",
            &sa,
        ])
    };
    for ns in [watched.as_str(), other.as_str()] {
        let probe = Connection::onepassword("probe").0;
        let yaml = serde_yaml::to_string(&probe).expect("YAML");
        env.kubectl_with_input(&["apply", "-n", ns, "-f", "-"], &yaml)
            .expect_success();
    }
    // The policy takes a moment to be loaded by the API server.
    eventually(
        20,
        "the admission policy to refuse the change outside",
        || async { (!annotate(&other).success).then_some(()) },
    )
    .await;
    let refused = annotate(&other);
    assert!(
        refused.stderr.contains("ValidatingAdmissionPolicy"),
        "{}",
        refused.stderr
    );
    annotate(watched).expect_success();
}

#[tokio::test]
async fn namespace_admins_manage_connections_while_editors_and_viewers_only_read() {
    let Some(w) = World::new("chart-rbac-team").await else {
        return;
    };
    let (env, team) = (&w.env, w.ns.as_str());
    let ops = w.namespace("chart-rbac-ops").await;
    let _release = Release::install(env, &ops, &[]);

    // People get the built-in roles, which kube-controller-manager fills by aggregation.
    wait_for_aggregation(env);
    bind(env, team, "alice-admin", "alice", "admin");
    bind(env, team, "bob-view", "bob", "view");
    bind(env, team, "carol-edit", "carol", "edit");

    let mut alice = vc_access(
        &[
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ],
        team,
        true,
    );
    alice.push(access("get", VC, Some("status"), Some(team), true));
    alice.push(access("patch", VC, Some("status"), Some(team), false));
    alice.extend(vc_access(&["list", "create"], &ops, false));
    assert_access(env, "alice", &alice);

    for reader in ["bob", "carol"] {
        let mut table = vc_access(&["get", "list", "watch"], team, true);
        table.extend(vc_access(
            &["create", "update", "patch", "delete", "deletecollection"],
            team,
            false,
        ));
        table.push(access("patch", VC, Some("status"), Some(team), false));
        table.extend(vc_access(&["list"], &ops, false));
        assert_access(env, reader, &table);
    }
    assert_access(
        env,
        "mallory",
        &vc_access(&["get", "list", "create"], team, false),
    );
}

#[tokio::test]
async fn the_built_in_roles_aggregate_the_chart_roles_as_designed() {
    let Some(w) = World::new("chart-aggregate").await else {
        return;
    };
    let env = &w.env;
    let release = Release::install(env, &w.ns, &[]);
    let full = release.fullname();
    let admin_role = get_object(env, "clusterrole", &format!("{full}-admin"), None);
    let view_role = get_object(env, "clusterrole", &format!("{full}-view"), None);

    let selects = |built_in: &str, role: &Value| -> bool {
        let object = get_object(env, "clusterrole", built_in, None);
        let selectors = object["aggregationRule"]["clusterRoleSelectors"]
            .as_array()
            .unwrap_or_else(|| panic!("built-in {built_in} is aggregated"))
            .clone();
        selectors
            .iter()
            .any(|s| selector_matches(s, &role["metadata"]["labels"]))
    };
    assert!(
        selects("admin", &admin_role),
        "admin aggregates {full}-admin"
    );
    assert!(
        !selects("edit", &admin_role),
        "edit must not aggregate {full}-admin (write rights)"
    );
    assert!(
        !selects("view", &admin_role),
        "view must not aggregate {full}-admin"
    );
    assert!(selects("edit", &view_role), "edit aggregates {full}-view");
    assert!(selects("view", &view_role), "view aggregates {full}-view");
}

#[tokio::test]
async fn a_namespace_admin_manages_connections_but_cannot_raise_its_own_tier() {
    let Some(w) = World::new("team-rbac").await else {
        return;
    };
    let (env, team) = (&w.env, w.ns.as_str());
    let release_ns = w.namespace("vco-rbac").await;
    let _release = Release::install(env, &release_ns, &["--set", "replicaCount=1"]);
    // The built-in `admin` role as kube-controller-manager fills it by aggregation.
    wait_for_aggregation(env);
    let user = unique("alice");
    bind(env, team, &unique("ns-admin"), &user, "admin");
    let can_sub = |verb: &str, resource: &str, subresource: Option<&str>| {
        can_i(
            env,
            &user,
            &access(verb, resource, subresource, Some(team), true),
        )
    };
    let can = |verb: &str, resource: &str| can_sub(verb, resource, None);
    assert!(can("create", VC));
    assert!(can("delete", VC));
    assert!(
        !can("patch", "namespaces"),
        "a namespace admin must not relabel (re-tier) its namespace"
    );
    assert!(!can("update", "namespaces"));
    assert!(
        !can("create", "resourcequotas"),
        "nor lift its ResourceQuota"
    );
    assert!(!can("patch", "resourcequotas"));
    assert!(can_sub("get", VC, Some("status")));
    assert!(!can_sub("patch", VC, Some("status")), "nor forge status");
}
