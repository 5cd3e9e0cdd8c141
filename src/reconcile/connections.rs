//! The connections' cache: every connection a scope watches, by namespace and name, in its
//! compact form ([`super::compact`]), and which connections name each Secret (so a Secret event
//! wakes the connections naming it at the cost of one lookup, not a scan of every connection).
//! Fed by the connections' watch; read by every reconcile (expanded back to the Kubernetes type),
//! the drift sweep, tier admission and the metrics.
//!
//! What a connection costs here is its compact entry, its name (held once, shared with the
//! Secret index) and a slot in two maps: no second copy of its name, namespace, uid and
//! resourceVersion as a store key, no `ObjectMeta` of fifteen optional fields.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use super::compact::{Common, Compact};
use super::relist::Cached;
use crate::api::VaultConnection;
use crate::settings::Settings;

/// One namespace's connections.
#[derive(Debug, Default)]
struct Part {
    /// By name (the name is held once: the Secret index shares it).
    entries: HashMap<Arc<str>, Compact>,
    /// The connections naming each Secret.
    naming: HashMap<Box<str>, Vec<Arc<str>>>,
}

impl Part {
    fn put(&mut self, name: &str, entry: Compact) {
        let (name, old) = match self.entries.get_key_value(name) {
            Some((key, old)) => (key.clone(), Some(old.secret().to_owned())),
            None => (Arc::from(name), None),
        };
        if old.as_deref() != Some(entry.secret()) {
            if let Some(old) = old {
                self.unlink(&old, &name);
            }
            let names = self.naming.entry(entry.secret().into()).or_default();
            // Most Secrets are named by one connection: room for one, not the usual four.
            if names.len() == names.capacity() && names.len() < 4 {
                names.reserve_exact(1);
            }
            names.push(name.clone());
        }
        self.entries.insert(name, entry);
    }

    fn remove(&mut self, name: &str) {
        if let Some((name, entry)) = self.entries.remove_entry(name) {
            self.unlink(entry.secret(), &name);
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
    common: Common,
    parts: HashMap<Arc<str>, Part>,
}

/// The cache; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Connections(Arc<RwLock<Inner>>);

/// What the operator's settings make the same for most connections (see [`Common`]).
pub fn common(settings: &Settings) -> Common {
    Common {
        parameter_prefix: format!("{}/{}/", settings.prefix, settings.cluster),
        default_kms_key_id: settings.default_kms_key_id.clone(),
        policy: settings.policy.fingerprint(),
    }
}

impl Connections {
    /// An empty cache whose entries share `common`.
    pub fn new(common: Common) -> Connections {
        Connections(Arc::new(RwLock::new(Inner {
            common,
            parts: HashMap::new(),
        })))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Every update is one insert or remove that completes: a panic elsewhere cannot leave
        // an entry half-made.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in one event of the connections' watch (slimmed). `Init` comes only before the
    /// first list (a relist reaches here as updates and deletions, see `relist`): it starts the
    /// cache afresh.
    pub fn observe(&self, event: &Event<VaultConnection>) {
        match event {
            Event::Apply(vc) | Event::InitApply(vc) => {
                let m = &vc.metadata;
                let (Some(ns), Some(name)) = (m.namespace.as_deref(), m.name.as_deref()) else {
                    return;
                };
                let mut inner = self.write();
                let entry = Compact::new(vc, &inner.common);
                match inner.parts.get_mut(ns) {
                    Some(part) => part.put(name, entry),
                    None => {
                        let mut part = Part::default();
                        part.put(name, entry);
                        inner.parts.insert(Arc::from(ns), part);
                    }
                }
            }
            Event::Delete(vc) => {
                let m = &vc.metadata;
                if let (Some(ns), Some(name)) = (m.namespace.as_deref(), m.name.as_deref()) {
                    let mut inner = self.write();
                    if let Some(part) = inner.parts.get_mut(ns) {
                        part.remove(name);
                        if part.entries.is_empty() {
                            inner.parts.remove(ns);
                        }
                    }
                }
            }
            Event::Init => self.write().parts.clear(),
            Event::InitDone => {}
        }
    }

    /// The connection `name` in `ns`, as the watch last brought it (slimmed).
    pub fn get(&self, ns: &str, name: &str) -> Option<VaultConnection> {
        let inner = self.read();
        let entry = inner.parts.get(ns)?.entries.get(name)?;
        Some(entry.expand(ns, name, &inner.common))
    }

    /// What `f` makes of the cached entry of `name` in `ns` (and what entries share), if cached.
    pub fn with<T>(
        &self,
        ns: &str,
        name: &str,
        f: impl FnOnce(&Compact, &Common) -> T,
    ) -> Option<T> {
        let inner = self.read();
        let entry = inner.parts.get(ns)?.entries.get(name)?;
        Some(f(entry, &inner.common))
    }

    /// Whether the connection `name` in `ns` is cached.
    pub fn contains(&self, ns: &str, name: &str) -> bool {
        let inner = self.read();
        inner
            .parts
            .get(ns)
            .is_some_and(|p| p.entries.contains_key(name))
    }

    /// The connections in `ns` naming Secret `secret`.
    pub fn naming(&self, ns: &str, secret: &str) -> Vec<ObjectRef<VaultConnection>> {
        let inner = self.read();
        let names = inner.parts.get(ns).and_then(|p| p.naming.get(secret));
        names
            .into_iter()
            .flatten()
            .map(|name| ObjectRef::new(name).within(ns))
            .collect()
    }

    /// What `f` makes of each connection in `ns` (every namespace with `None`) that it keeps:
    /// `f` gets the namespace, the name, the entry and what entries share.
    pub fn scan<T>(
        &self,
        ns: Option<&str>,
        mut f: impl FnMut(&str, &str, &Compact, &Common) -> Option<T>,
    ) -> Vec<T> {
        let inner = self.read();
        let parts: Box<dyn Iterator<Item = (&Arc<str>, &Part)>> = match ns {
            Some(ns) => Box::new(inner.parts.get_key_value(ns).into_iter()),
            None => Box::new(inner.parts.iter()),
        };
        let mut found = Vec::new();
        for (ns, part) in parts {
            for (name, entry) in &part.entries {
                if let Some(t) = f(ns, name, entry, &inner.common) {
                    found.push(t);
                }
            }
        }
        found
    }

    /// The namespace and name of every cached connection (shared with the cache, not copied).
    pub fn keys(&self) -> Vec<(Arc<str>, Arc<str>)> {
        let inner = self.read();
        let parts = inner.parts.iter();
        let keys =
            parts.flat_map(|(ns, part)| part.entries.keys().map(|n| (ns.clone(), n.clone())));
        keys.collect()
    }

    /// How many connections are cached.
    pub fn len(&self) -> usize {
        self.read().parts.values().map(|p| p.entries.len()).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many are kept whole rather than compact (an unusual shape; see `compact`).
    pub fn whole(&self) -> usize {
        self.scan(None, |_, _, e, _| (!e.is_slim()).then_some(()))
            .len()
    }
}

impl Cached<VaultConnection> for Connections {
    fn version(&self, key: &ObjectRef<VaultConnection>) -> Option<String> {
        let inner = self.read();
        let part = inner.parts.get(key.namespace.as_deref()?)?;
        part.entries.get(key.name.as_str())?.resource_version()
    }

    fn missing(&self, listed: &HashSet<ObjectRef<VaultConnection>>) -> Vec<VaultConnection> {
        let inner = self.read();
        let mut gone = Vec::new();
        for (ns, part) in &inner.parts {
            for (name, entry) in &part.entries {
                if !listed.contains(&ObjectRef::new(name).within(ns)) {
                    gone.push(entry.expand(ns, name, &inner.common));
                }
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests;
