//! Wiring the reconciler to the cluster: the caches each watch fills, which watch wakes which
//! connections, and the workers that run the pipeline over one scope (a namespace, or all of
//! them).

use std::future::Future;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use super::budget::Budget;
use super::connections::{Connections, common};
use super::context::{Caches, Context, Filled, Shares};
use super::echoes::Echoes;
use super::queue::Queue;
use super::relist;
use super::slim;
use super::sweep;
use super::versions::Versions;
use super::workers;
use crate::api::{CREDENTIALS_LABEL, TIER_LABEL, VaultConnection};
use crate::backoff;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::ssm::Ssm;
use crate::verify::step::Verification;

/// What every controller scope of one operator process shares.
#[derive(Clone)]
pub struct Shared {
    /// Kubernetes client.
    pub client: Client,
    /// SSM client.
    pub ssm: Ssm,
    /// Settings.
    pub settings: Settings,
    /// Metrics.
    pub metrics: Metrics,
    /// The work queue and its workers (connections reconciled at once), shared fairly between
    /// namespaces by every scope of the process.
    pub queue: Queue,
    /// Credential verification, when on.
    pub verification: Option<Arc<Verification>>,
    /// The budget of parameter deletions, shared by every scope.
    pub deletions: Arc<Budget>,
}

fn api<K>(client: &Client, scope: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Objects per page of the initial list (kube-runtime's default is 500: with padded objects that
/// is hundreds of MiB held at once).
const LIST_PAGE_SIZE: u32 = 50;

/// A namespace's tier label, as a predicate: only a change of it re-checks the namespace's
/// connections.
fn tier_label(namespace: &PartialObjectMeta<Namespace>) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    namespace.labels().get(TIER_LABEL).hash(&mut h);
    Some(h.finish())
}

/// Logs a watch's error (the watcher retries by itself, after the backoff).
fn logged<T>(
    watch: &'static str,
) -> impl FnMut(Result<T, watcher::Error>) -> std::future::Ready<Option<T>> {
    move |event| {
        std::future::ready(match event {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::warn!(watch, error = %e, "watch failed; retrying");
                None
            }
        })
    }
}

/// The reconcilers of `scope` (a namespace, or all with `None`): its cache of connections, and
/// the future that runs its watches, drift sweep and workers until `shutdown` resolves (then
/// the reconciles running finish).
pub fn run_scope(
    shared: Shared,
    scope: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> (Connections, impl Future<Output = ()>) {
    let Shared {
        client,
        ssm,
        settings,
        metrics,
        queue,
        verification,
        deletions,
    } = shared;
    // The caches hold only what the reconciler reads: no managedFields, no annotations (each
    // can be up to 256 KiB), so a namespace admin cannot inflate the operator's memory with
    // padded objects, and connections in their compact form (`compact`). Lists come in small
    // pages for the same reason, and a relist is merged into the cache in place rather than
    // buffered beside it (`relist`). Every event that asks for a reconcile goes to the work
    // queue, which hands connections to the workers (`workers`).
    let filled = Filled::default();
    let connections = Connections::new(common(&settings));
    let echoes = Echoes::default();
    let connection_watch = {
        let (cache, echoes, queue) = (connections.clone(), echoes.clone(), queue.clone());
        filled
            .connections
            .track(relist::in_place(
                watcher::watcher(
                    api::<VaultConnection>(&client, &scope),
                    watcher::Config::default().page_size(LIST_PAGE_SIZE),
                )
                .modify(slim::connection),
                connections.clone(),
                metrics.clone(),
                "connections",
            ))
            .backoff(backoff::WatchBackoff::new(1))
            .filter_map(logged("connections"))
            .for_each(move |event| {
                cache.observe(&event);
                // The echo of our own status write changes nothing the reconcile did not know:
                // it wakes nobody.
                if let Event::Apply(vc) | Event::InitApply(vc) = &event
                    && !echoes.is_echo(vc)
                {
                    queue.push(&vc.namespace().unwrap_or_default(), &vc.name_any());
                }
                std::future::ready(())
            })
    };

    // A rotated Secret reaches its connections: opted-in Secrets are watched by metadata only,
    // and the cache of their resourceVersions is what lets a reconcile at rest skip reading the
    // Secret. Only their versions are kept (`versions`), not a store of metadata objects.
    let secrets = Versions::default();
    let secret_watch = {
        let (versions, cache, queue) = (secrets.clone(), connections.clone(), queue.clone());
        let secrets_filled = filled.secrets.clone();
        filled
            .secrets
            .track(relist::in_place(
                watcher::watcher(
                    api::<PartialObjectMeta<Secret>>(&client, &scope),
                    watcher::Config::default()
                        .labels(&format!("{CREDENTIALS_LABEL}=true"))
                        .page_size(LIST_PAGE_SIZE),
                )
                .modify(slim::secret),
                secrets.clone(),
                metrics.clone(),
                "secrets",
            ))
            .inspect_ok(move |event| versions.observe(event))
            // A relist passes on only the Secrets whose resourceVersion moved on (`relist`): an
            // unchanged Secret is no news, and no per-Secret filter state is held for it.
            .touched_objects()
            .backoff(backoff::WatchBackoff::new(1))
            .filter_map(logged("secrets"))
            .for_each(move |secret| {
                // The Secrets' first list wakes nobody: every connection reconciles from its own
                // first list, reading this cache once it is filled.
                if secrets_filled.is_filled() {
                    let ns = secret.namespace().unwrap_or_default();
                    for connection in cache.naming(&ns, &secret.name_any()) {
                        queue.push_ref(&connection);
                    }
                }
                std::future::ready(())
            })
    };

    // A namespace's tier label changed: re-check its connections. The cache of tier labels is
    // what the tier check reads.
    let (namespaces, namespace_writer) = reflector::store();
    let ns_config = match &scope {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    let namespace_watch = {
        let (cache, queue) = (connections.clone(), queue.clone());
        let namespaces_filled = filled.namespaces.clone();
        filled
            .namespaces
            .track(
                relist::in_place(
                    watcher::watcher(
                        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                        ns_config,
                    )
                    .modify(slim::namespace),
                    namespaces.clone(),
                    metrics.clone(),
                    "namespaces",
                )
                .reflect(namespace_writer),
            )
            .touched_objects()
            .predicate_filter(tier_label, Default::default())
            .backoff(backoff::WatchBackoff::new(1))
            .filter_map(logged("namespaces"))
            .for_each(move |namespace| {
                // Likewise the namespaces' first list.
                if namespaces_filled.is_filled() {
                    let ns = namespace.name_any();
                    let names = cache.scan(Some(&ns), |_, name, _, _| Some(name.to_owned()));
                    for name in names {
                        queue.push(&ns, &name);
                    }
                }
                std::future::ready(())
            })
    };

    let ctx = Arc::new(
        Context::new(
            client.clone(),
            ssm,
            settings,
            metrics,
            Caches {
                connections: connections.clone(),
                secrets,
                namespaces,
                filled,
            },
            Shares { deletions, queue },
        )
        .with_verification(verification)
        .with_echoes(echoes),
    );

    let sweeper = sweep::run(ctx.clone());
    let work = workers::run(scope, connections.clone(), ctx, shutdown);
    let run = async move {
        let watches = async {
            tokio::join!(connection_watch, secret_watch, namespace_watch);
        };
        tokio::select! {
            () = work => {}
            () = watches => {}
            () = sweeper => {}
        }
    };
    (connections, run)
}
