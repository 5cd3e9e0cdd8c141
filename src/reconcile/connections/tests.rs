use super::*;

fn vc(ns: &str, name: &str, secret: &str) -> VaultConnection {
    let uid = format!(
        "7b0c5a34-1c7e-4d0b-9a51-{:012}",
        name.len() * 1000 + secret.len()
    );
    serde_json::from_value(serde_json::json!({
        "apiVersion": "vaultconnections.io/v1alpha1",
        "kind": "VaultConnection",
        "metadata": {"namespace": ns, "name": name, "uid": uid, "resourceVersion": "12"},
        "spec": {"vaultType": "onepassword", "credentialsSecretRef": {"name": secret}},
    }))
    .expect("a connection")
}

fn names(cache: &Connections, ns: &str, secret: &str) -> Vec<String> {
    let mut v: Vec<String> = cache
        .naming(ns, secret)
        .into_iter()
        .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
        .collect();
    v.sort();
    v
}

#[test]
fn a_secret_maps_to_the_connections_of_its_namespace_that_name_it() {
    let cache = Connections::default();
    cache.observe(&Event::Apply(vc("a", "x", "shared")));
    cache.observe(&Event::Apply(vc("a", "y", "shared")));
    cache.observe(&Event::Apply(vc("a", "z", "own")));
    cache.observe(&Event::Apply(vc("b", "x", "shared")));
    assert_eq!(names(&cache, "a", "shared"), ["a/x", "a/y"]);
    assert_eq!(names(&cache, "b", "shared"), ["b/x"], "namespaces apart");
    assert_eq!(names(&cache, "a", "own"), ["a/z"]);
    assert!(names(&cache, "a", "none").is_empty());

    // A connection that names another Secret moves; a deleted one goes; repeats are no-ops.
    cache.observe(&Event::Apply(vc("a", "y", "own")));
    cache.observe(&Event::Apply(vc("a", "y", "own")));
    assert_eq!(names(&cache, "a", "shared"), ["a/x"]);
    assert_eq!(names(&cache, "a", "own"), ["a/y", "a/z"]);
    cache.observe(&Event::Delete(vc("a", "x", "shared")));
    assert!(names(&cache, "a", "shared").is_empty());
    assert_eq!(cache.len(), 3);
    cache.observe(&Event::Delete(vc("b", "x", "shared")));
    assert_eq!(
        cache.scan(Some("b"), |_, n, _, _| Some(n.to_owned())),
        Vec::<String>::new()
    );
}

#[test]
fn a_connection_comes_back_as_it_was_cached() {
    let cache = Connections::default();
    let x = vc("a", "x", "s");
    cache.observe(&Event::InitApply(x.clone()));
    let got = cache.get("a", "x").expect("cached");
    assert!(crate::reconcile::compact::same(&got, &x));
    assert!(cache.get("a", "y").is_none() && cache.get("b", "x").is_none());
    assert_eq!(cache.whole(), 0, "kept compact");
    assert_eq!(
        cache.version(&ObjectRef::new("x").within("a")).as_deref(),
        Some("12")
    );
}

#[test]
fn the_first_list_starts_afresh_and_a_relist_removes_what_it_no_longer_holds() {
    let cache = Connections::default();
    cache.observe(&Event::Apply(vc("a", "stale", "s")));
    cache.observe(&Event::Init);
    cache.observe(&Event::InitApply(vc("a", "x", "s")));
    cache.observe(&Event::InitApply(vc("b", "y", "s")));
    cache.observe(&Event::InitDone);
    assert_eq!(names(&cache, "a", "s"), ["a/x"]);
    let listed: HashSet<_> = [ObjectRef::new("x").within("a")].into();
    let gone: Vec<String> = cache
        .missing(&listed)
        .iter()
        .map(|vc| format!("{:?}/{:?}", vc.metadata.namespace, vc.metadata.name))
        .collect();
    assert_eq!(gone, [format!("{:?}/{:?}", Some("b"), Some("y"))]);
}
