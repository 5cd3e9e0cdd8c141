//! Connections by the Secret they name, `(namespace, Secret name)` → connection names, kept up to
//! date from the connections' watch events: a Secret event wakes the connections naming it at the
//! cost of one lookup, not a scan of every connection (with a relist replaying every Secret, a
//! scan is O(Secrets × connections)). A relist (`Init` … `InitDone`) replaces the index in place:
//! entries seen again are kept, entries not seen are dropped at the end; only the set of keys seen
//! is held meanwhile, never a second index.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use crate::api::VaultConnection;

/// `(namespace, name)`.
type Key = (String, String);

/// One namespace's part of the index (its name is held once, by the map of parts).
#[derive(Debug, Default)]
struct Part {
    /// Connections naming each Secret.
    naming: HashMap<Box<str>, Vec<Box<str>>>,
    /// The Secret each connection names.
    secret_of: HashMap<Box<str>, Box<str>>,
}

impl Part {
    fn insert(&mut self, name: &str, secret: &str) {
        if let Some(old) = self.secret_of.get(name) {
            if &**old == secret {
                return;
            }
            let old = old.clone();
            self.unlink(&old, name);
        }
        let names = self.naming.entry(secret.into()).or_default();
        // Most Secrets are named by one connection: room for one, not the usual four.
        if names.len() == names.capacity() && names.len() < 4 {
            names.reserve_exact(1);
        }
        names.push(name.into());
        self.secret_of.insert(name.into(), secret.into());
    }

    fn remove(&mut self, name: &str) {
        if let Some(secret) = self.secret_of.remove(name) {
            self.unlink(&secret, name);
        }
    }

    fn unlink(&mut self, secret: &str, name: &str) {
        if let Some(names) = self.naming.get_mut(secret) {
            names.retain(|n| &**n != name);
            if names.is_empty() {
                self.naming.remove(secret);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// By namespace.
    parts: HashMap<Box<str>, Part>,
    /// During a relist: the connections listed so far.
    listed: Option<HashSet<Key>>,
}

impl Inner {
    fn insert(&mut self, ns: &str, name: &str, secret: &str) {
        self.parts
            .entry(ns.into())
            .or_default()
            .insert(name, secret);
    }

    fn remove(&mut self, ns: &str, name: &str) {
        if let Some(part) = self.parts.get_mut(ns) {
            part.remove(name);
            if part.secret_of.is_empty() {
                self.parts.remove(ns);
            }
        }
    }
}

/// The index; clones share it.
#[derive(Debug, Clone, Default)]
pub struct BySecret(Arc<Mutex<Inner>>);

fn key_of(vc: &VaultConnection) -> Option<Key> {
    Some((vc.metadata.namespace.clone()?, vc.metadata.name.clone()?))
}

impl BySecret {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves both maps consistent before the next statement that can panic.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in one event of the connections' watch.
    pub fn observe(&self, event: &Event<VaultConnection>) {
        let mut inner = self.inner();
        match event {
            Event::Apply(vc) | Event::InitApply(vc) => {
                let Some(key) = key_of(vc) else { return };
                inner.insert(&key.0, &key.1, &vc.spec.credentials_secret_ref.name);
                if matches!(event, Event::InitApply(_))
                    && let Some(listed) = inner.listed.as_mut()
                {
                    listed.insert(key);
                }
            }
            Event::Delete(vc) => {
                if let Some((ns, name)) = key_of(vc) {
                    inner.remove(&ns, &name);
                }
            }
            Event::Init => inner.listed = Some(HashSet::new()),
            Event::InitDone => {
                let Some(listed) = inner.listed.take() else {
                    return;
                };
                let gone: Vec<Key> = inner
                    .parts
                    .iter()
                    .flat_map(|(ns, part)| {
                        part.secret_of
                            .keys()
                            .map(|name| (ns.to_string(), name.to_string()))
                    })
                    .filter(|k| !listed.contains(k))
                    .collect();
                for (ns, name) in gone {
                    inner.remove(&ns, &name);
                }
            }
        }
    }

    /// The connections in `ns` naming Secret `secret`, as reconcile requests.
    pub fn naming(&self, ns: &str, secret: &str) -> Vec<ObjectRef<VaultConnection>> {
        self.inner()
            .parts
            .get(ns)
            .and_then(|part| part.naming.get(secret))
            .into_iter()
            .flatten()
            .map(|name| ObjectRef::new(name).within(ns))
            .collect()
    }

    /// How many connections are indexed.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner().parts.values().map(|p| p.secret_of.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vc(ns: &str, name: &str, secret: &str) -> VaultConnection {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "vaultconnections.io/v1alpha1",
            "kind": "VaultConnection",
            "metadata": {"namespace": ns, "name": name},
            "spec": {"vaultType": "onepassword", "credentialsSecretRef": {"name": secret}},
        }))
        .expect("a connection")
    }

    fn names(index: &BySecret, ns: &str, secret: &str) -> Vec<String> {
        let mut v: Vec<String> = index
            .naming(ns, secret)
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_secret_maps_to_the_connections_of_its_namespace_that_name_it() {
        let index = BySecret::default();
        index.observe(&Event::Apply(vc("a", "x", "shared")));
        index.observe(&Event::Apply(vc("a", "y", "shared")));
        index.observe(&Event::Apply(vc("a", "z", "own")));
        index.observe(&Event::Apply(vc("b", "x", "shared")));
        assert_eq!(names(&index, "a", "shared"), ["a/x", "a/y"]);
        assert_eq!(names(&index, "b", "shared"), ["b/x"], "namespaces apart");
        assert_eq!(names(&index, "a", "own"), ["a/z"]);
        assert!(names(&index, "a", "none").is_empty());

        // A connection that names another Secret moves; a deleted one goes; repeats are no-ops.
        index.observe(&Event::Apply(vc("a", "y", "own")));
        index.observe(&Event::Apply(vc("a", "y", "own")));
        assert_eq!(names(&index, "a", "shared"), ["a/x"]);
        assert_eq!(names(&index, "a", "own"), ["a/y", "a/z"]);
        index.observe(&Event::Delete(vc("a", "x", "shared")));
        assert!(names(&index, "a", "shared").is_empty());
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn a_relist_keeps_what_it_lists_and_drops_what_it_does_not() {
        let index = BySecret::default();
        index.observe(&Event::Apply(vc("a", "x", "s")));
        index.observe(&Event::Apply(vc("a", "gone", "s")));
        index.observe(&Event::Init);
        index.observe(&Event::InitApply(vc("a", "x", "s")));
        index.observe(&Event::InitApply(vc("a", "new", "t")));
        // Until the relist is done, nothing is dropped (a Secret event still finds everyone).
        assert_eq!(names(&index, "a", "s"), ["a/gone", "a/x"]);
        index.observe(&Event::InitDone);
        assert_eq!(names(&index, "a", "s"), ["a/x"]);
        assert_eq!(names(&index, "a", "t"), ["a/new"]);
        assert_eq!(index.len(), 2);
        // A stray InitDone changes nothing.
        index.observe(&Event::InitDone);
        assert_eq!(index.len(), 2);
    }
}
