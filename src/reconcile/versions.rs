//! The opted-in Secrets' resourceVersions by namespace and name: all the reconciler reads of a
//! Secret until its version moves on (at rest it reads no Secret data, see `at_rest`). Kept
//! from the Secrets' metadata watch, in place of a reflector store of whole metadata objects:
//! a version and a name per Secret (about 120 bytes), where a cached `PartialObjectMeta` with
//! its key cost about 750.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use super::relist::Cached;

type Secrets = PartialObjectMeta<Secret>;

/// Namespace → Secret name → resourceVersion.
type Map = HashMap<Box<str>, HashMap<Box<str>, Box<str>>>;

/// The versions; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Versions(Arc<RwLock<Map>>);

impl Versions {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map> {
        // Every update is one insert or remove: a panic elsewhere cannot leave one half-made.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in one event of the Secrets' watch. `Init` comes only before the first list (a
    /// relist reaches here as updates and deletions, see `relist`), when nothing has read the
    /// versions yet: it starts them afresh.
    pub fn observe(&self, event: &Event<Secrets>) {
        match event {
            Event::Apply(s) | Event::InitApply(s) => {
                let meta = &s.metadata;
                if let (Some(ns), Some(name), Some(version)) =
                    (&meta.namespace, &meta.name, &meta.resource_version)
                {
                    self.write()
                        .entry(ns.as_str().into())
                        .or_default()
                        .insert(name.as_str().into(), version.as_str().into());
                }
            }
            Event::Delete(s) => {
                let meta = &s.metadata;
                if let (Some(ns), Some(name)) = (&meta.namespace, &meta.name) {
                    let mut map = self.write();
                    if let Some(names) = map.get_mut(ns.as_str()) {
                        names.remove(name.as_str());
                        if names.is_empty() {
                            map.remove(ns.as_str());
                        }
                    }
                }
            }
            Event::Init => self.write().clear(),
            Event::InitDone => {}
        }
    }

    /// The resourceVersion of Secret `name` in `ns`, if it is cached.
    pub fn version(&self, ns: &str, name: &str) -> Option<String> {
        self.read()
            .get(ns)
            .and_then(|names| names.get(name))
            .map(|v| v.to_string())
    }

    /// How many Secrets are cached.
    pub fn len(&self) -> usize {
        self.read().values().map(HashMap::len).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The metadata a deletion event carries for a cached Secret.
fn secret(ns: &str, name: &str, version: &str) -> Secrets {
    let mut s = Secrets::default();
    s.metadata.namespace = Some(ns.to_owned());
    s.metadata.name = Some(name.to_owned());
    s.metadata.resource_version = Some(version.to_owned());
    s
}

impl Cached<Secrets> for Versions {
    fn version(&self, key: &ObjectRef<Secrets>) -> Option<String> {
        Versions::version(self, key.namespace.as_deref()?, &key.name)
    }

    fn missing(&self, listed: &HashSet<ObjectRef<Secrets>>) -> Vec<Secrets> {
        let map = self.read();
        map.iter()
            .flat_map(|(ns, names)| {
                names.iter().filter_map(move |(name, version)| {
                    let key = ObjectRef::new(name).within(ns);
                    (!listed.contains(&key)).then(|| secret(ns, name, version))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(ns: &str, name: &str, version: &str) -> Event<Secrets> {
        Event::Apply(secret(ns, name, version))
    }

    #[test]
    fn versions_follow_the_watch_and_a_relist_finds_what_it_no_longer_lists() {
        let v = Versions::default();
        v.observe(&Event::Init);
        v.observe(&Event::InitApply(secret("a", "s1", "1")));
        v.observe(&Event::InitDone);
        v.observe(&apply("a", "s2", "2"));
        v.observe(&apply("b", "s1", "3"));
        v.observe(&apply("a", "s1", "4"));
        assert_eq!(v.version("a", "s1").as_deref(), Some("4"));
        assert_eq!(v.version("b", "s1").as_deref(), Some("3"));
        assert_eq!(v.version("b", "s2"), None);
        assert_eq!(v.len(), 3);

        let listed: HashSet<_> = [ObjectRef::new("s1").within("a")].into_iter().collect();
        let mut gone: Vec<_> = Cached::missing(&v, &listed)
            .into_iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s.metadata.namespace.unwrap(),
                    s.metadata.name.unwrap()
                )
            })
            .collect();
        gone.sort();
        assert_eq!(gone, ["a/s2", "b/s1"]);

        v.observe(&Event::Delete(secret("b", "s1", "3")));
        assert_eq!(v.version("b", "s1"), None);
        assert!(
            v.read().get("b").is_none(),
            "an emptied namespace is dropped"
        );
        v.observe(&Event::Init);
        assert!(v.is_empty());
    }
}
