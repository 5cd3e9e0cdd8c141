//! Relists merged into the cache in place. After a watch loses its place (an API server
//! restart, 410 Gone) it lists everything again; kube-runtime's reflector would buffer that
//! whole list beside the old cache and swap at the end, holding two copies of the cache at its
//! peak. This adapter turns every relist after the first into updates of the one cache: each
//! listed object as an update, and, at the end of the list, a deletion of each cached object
//! the list no longer held. What it keeps meanwhile is the set of keys listed, not objects.
//! A listed object whose `resourceVersion` the cache already holds is no news and passes on
//! nothing: a relist of a fleet at rest wakes no reconcile.

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};

use crate::metrics::Metrics;

/// What a relist compares with: the cache the events are applied to.
pub trait Cached<K: Resource<DynamicType = ()>> {
    /// The resourceVersion cached for the object `key` names.
    fn version(&self, key: &ObjectRef<K>) -> Option<String>;
    /// The cached objects whose keys are not in `listed`, as their deletion events carry them.
    fn missing(&self, listed: &HashSet<ObjectRef<K>>) -> Vec<K>;
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Cached<K> for Store<K> {
    fn version(&self, key: &ObjectRef<K>) -> Option<String> {
        self.get(key)?.meta().resource_version.clone()
    }

    fn missing(&self, listed: &HashSet<ObjectRef<K>>) -> Vec<K> {
        self.state()
            .into_iter()
            .filter(|obj| !listed.contains(&key(&**obj)))
            .map(|obj| (*obj).clone())
            .collect()
    }
}

/// `events` with every relist after the first merged into `store` in place (see the module);
/// `store` is the cache the events go on to fill.
/// `cache` names the cache in the `cache_relists` metric.
pub fn in_place<K, C, S>(
    events: S,
    store: C,
    metrics: Metrics,
    cache: &'static str,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    C: Cached<K>,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut relist = Relist {
        store,
        filled: false,
        listed: None,
        metrics,
        cache,
    };
    events
        .map(move |event| match event {
            Ok(event) => relist.step(event).into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        })
        .flat_map(futures::stream::iter)
}

/// The key of `obj`: namespace and name only (not the resourceVersion and uid an `ObjectRef`
/// can carry, which comparisons ignore), the least a relist holds per object.
fn key<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectRef<K> {
    let name = obj.meta().name.clone().unwrap_or_default();
    match obj.meta().namespace.clone() {
        Some(ns) => ObjectRef::new(&name).within(&ns),
        None => ObjectRef::new(&name),
    }
}

struct Relist<K: Resource<DynamicType = ()> + 'static, C> {
    store: C,
    /// The first list has ended: it filled the cache the usual way.
    filled: bool,
    /// The keys a relist under way has listed so far.
    listed: Option<HashSet<ObjectRef<K>>>,
    metrics: Metrics,
    cache: &'static str,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static, C: Cached<K>> Relist<K, C> {
    fn step(&mut self, event: Event<K>) -> Vec<Event<K>> {
        if !self.filled {
            self.filled = matches!(event, Event::InitDone);
            return vec![event];
        }
        match event {
            Event::Init => {
                self.metrics.cache_relisted(self.cache);
                self.listed = Some(HashSet::new());
                vec![]
            }
            Event::InitApply(obj) => {
                let key = key(&obj);
                let unchanged = obj.meta().resource_version.is_some()
                    && self.store.version(&key) == obj.meta().resource_version;
                self.listed.get_or_insert_with(HashSet::new).insert(key);
                if unchanged {
                    vec![]
                } else {
                    vec![Event::Apply(obj)]
                }
            }
            Event::InitDone => {
                let listed = self.listed.take().unwrap_or_default();
                self.store
                    .missing(&listed)
                    .into_iter()
                    .map(Event::Delete)
                    .collect()
            }
            other => vec![other],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{WatchStreamExt, reflector};

    fn cm(name: &str, rv: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        c.metadata.resource_version = Some(rv.into());
        c
    }

    fn names(events: &[Event<ConfigMap>]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Init => "init".into(),
                Event::InitApply(c) => format!("list {}", c.metadata.name.as_deref().unwrap()),
                Event::InitDone => "done".into(),
                Event::Apply(c) => format!("apply {}", c.metadata.name.as_deref().unwrap()),
                Event::Delete(c) => format!("delete {}", c.metadata.name.as_deref().unwrap()),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_relist_updates_the_cache_in_place_and_deletes_what_it_no_longer_lists() {
        let (store, writer) = reflector::store::<ConfigMap>();
        let metrics = Metrics::new();
        let events = futures::stream::iter(
            vec![
                Event::Init,
                Event::InitApply(cm("a", "1")),
                Event::InitApply(cm("b", "1")),
                Event::InitDone,
                Event::Apply(cm("c", "2")),
                // The watch lost its place: everything again, without b.
                Event::Init,
                Event::InitApply(cm("a", "3")),
                Event::InitApply(cm("c", "2")),
                Event::InitDone,
            ]
            .into_iter()
            .map(Ok::<_, watcher::Error>),
        );
        let mut seen = Vec::new();
        let mut stream = std::pin::pin!(
            in_place(events, store.clone(), metrics.clone(), "test").reflect(writer)
        );
        while let Some(event) = stream.try_next().await.expect("no error") {
            seen.push(event);
        }
        assert_eq!(
            names(&seen),
            [
                "init", "list a", "list b", "done", "apply c", "apply a", "delete b"
            ],
            "the first list passes as it is; the relist becomes updates (of a, whose version \
             moved on, not of c, cached at the version listed) and a deletion, so the reflector \
             never buffers a second copy and an unchanged object wakes nobody"
        );
        let mut cached: Vec<_> = store
            .state()
            .iter()
            .map(|c| {
                let name = c.metadata.name.as_deref().unwrap();
                format!("{name}@{}", c.metadata.resource_version.as_deref().unwrap())
            })
            .collect();
        cached.sort();
        assert_eq!(cached, ["a@3", "c@2"]);
        assert!(
            metrics
                .encode()
                .contains("vault_connection_operator_cache_relists_total{cache=\"test\"} 1"),
            "{}",
            metrics.encode()
        );
    }
}
