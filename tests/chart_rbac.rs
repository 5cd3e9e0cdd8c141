//! The roles the chart renders: one least-privilege ClusterRole for the operator (or a Role per
//! watched namespace), a leader-election Role, and user roles that give namespace admins full
//! rights and everyone else read-only. Needs only the environment's helm, no cluster. What the
//! API server makes of them: tests/chart_permissions.rs.

mod common;

use std::collections::BTreeSet;

use serde_json::{Value, json};

use common::chart::{FULLNAME, Helm};
use common::rbac::{Grant, grants, grants_of};

/// What the operator may do to the connections themselves.
fn connection_grants() -> Vec<Grant> {
    let mut out = grants_of(
        "vaultconnections.io",
        "vaultconnections",
        &["get", "list", "watch", "patch", "update"],
    );
    out.extend(grants_of(
        "vaultconnections.io",
        "vaultconnections/finalizers",
        &["update"],
    ));
    out
}

/// What the operator may do in a namespace it watches besides the connections themselves.
fn operator_namespaced_grants() -> Vec<Grant> {
    let mut out = grants_of(
        "vaultconnections.io",
        "vaultconnections/status",
        &["get", "patch", "update"],
    );
    out.extend(grants_of("", "secrets", &["get", "list", "watch"]));
    out.extend(grants_of("events.k8s.io", "events", &["create", "patch"]));
    out.sort();
    out
}

/// Cluster-scoped reads: namespaces, and the operator's own CRD by name.
fn namespace_grants() -> Vec<Grant> {
    let mut out = grants_of("", "namespaces", &["get", "list", "watch"]);
    out.push((
        "apiextensions.k8s.io".to_owned(),
        "customresourcedefinitions".to_owned(),
        "get".to_owned(),
        "vaultconnections.vaultconnections.io".to_owned(),
    ));
    out
}

#[test]
fn by_default_the_operator_gets_one_least_privilege_cluster_role() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let r = helm.render(&[]);
    let role = r.find("ClusterRole", FULLNAME);
    let mut want = connection_grants();
    want.extend(operator_namespaced_grants());
    want.extend(namespace_grants());
    want.sort();
    assert_eq!(grants(role), want);

    let lease = r.find_in("Role", &format!("{FULLNAME}-leader-election"), "ops");
    let lease_grants: Vec<Grant> = [
        ("create", ""),
        ("get", "vault-connection-operator"),
        ("list", "vault-connection-operator"),
        ("patch", "vault-connection-operator"),
        ("update", "vault-connection-operator"),
        ("watch", "vault-connection-operator"),
    ]
    .iter()
    .map(|(v, n)| {
        (
            "coordination.k8s.io".to_owned(),
            "leases".to_owned(),
            (*v).to_owned(),
            (*n).to_owned(),
        )
    })
    .collect();
    assert_eq!(grants(lease), lease_grants);
    assert!(
        r.of_kind("Role").len() == 1 && r.of_kind("RoleBinding").len() == 1,
        "only the leader-election Role is namespaced: {:?}",
        r.summary()
    );
}

#[test]
fn watching_namespaces_grants_roles_only_in_those_namespaces() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let r = helm.render(&["--set", "operator.watchNamespaces={team-a,team-b}"]);
    for ns in ["team-a", "team-b"] {
        let role = r.find_in("Role", FULLNAME, ns);
        assert_eq!(grants(role), operator_namespaced_grants(), "Role in {ns}");
        let binding = r.find_in("RoleBinding", FULLNAME, ns);
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "ops"}])
        );
    }
    let name = |r: &Value| r["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let cluster_roles: Vec<&Value> = r
        .of_kind("ClusterRole")
        .into_iter()
        .filter(|r| !name(r).ends_with("-admin"))
        .filter(|r| !name(r).ends_with("-view"))
        .collect();
    assert_eq!(
        cluster_roles.len(),
        1,
        "one operator ClusterRole: {:?}",
        r.summary()
    );
    assert_eq!(
        cluster_roles[0]["metadata"]["name"],
        format!("{FULLNAME}-namespaces")
    );
    let mut cluster_wide = connection_grants();
    cluster_wide.extend(namespace_grants());
    cluster_wide.sort();
    assert_eq!(
        grants(cluster_roles[0]),
        cluster_wide,
        "cluster-wide: the connections and their finalizers (so a watched namespace can be \
         deleted cleanly), namespaces and the CRD; nothing else"
    );
    // ... and an admission policy confining the connection rights to the watched namespaces.
    let policy = r.find(
        "ValidatingAdmissionPolicy",
        &format!("{FULLNAME}-watched-namespaces"),
    );
    assert_eq!(
        policy["spec"]["validations"][0]["expression"],
        "request.namespace in ['team-a', 'team-b']"
    );
    assert_eq!(
        policy["spec"]["matchConditions"][0]["expression"],
        format!("request.userInfo.username == 'system:serviceaccount:ops:{FULLNAME}'")
    );
    let binding = r.find(
        "ValidatingAdmissionPolicyBinding",
        &format!("{FULLNAME}-watched-namespaces"),
    );
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    let unconfined = helm.render(&[
        "--set",
        "operator.watchNamespaces={team-a}",
        "--set",
        "rbac.confineToWatchedNamespaces=false",
    ]);
    assert!(unconfined.of_kind("ValidatingAdmissionPolicy").is_empty());
}

#[test]
fn user_roles_give_admins_full_rights_and_everyone_else_read_only() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let r = helm.render(&[]);
    let admin = r.find("ClusterRole", &format!("{FULLNAME}-admin"));
    let labels = &admin["metadata"]["labels"];
    assert_eq!(
        labels["rbac.authorization.k8s.io/aggregate-to-admin"],
        "true"
    );
    assert!(
        labels
            .get("rbac.authorization.k8s.io/aggregate-to-edit")
            .is_none(),
        "editors must not get write rights"
    );
    assert!(
        labels
            .get("rbac.authorization.k8s.io/aggregate-to-view")
            .is_none()
    );

    let view = r.find("ClusterRole", &format!("{FULLNAME}-view"));
    let labels = &view["metadata"]["labels"];
    assert_eq!(
        labels["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert_eq!(
        labels["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    let verbs: BTreeSet<String> = grants(view).into_iter().map(|g| g.2).collect();
    assert_eq!(
        verbs,
        ["get", "list", "watch"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}
