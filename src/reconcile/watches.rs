//! Wiring the reconciler to the cluster: which watches wake which connections, and the
//! controller that runs the pipeline over one scope (a namespace, or all of them).

use std::future::Future;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use super::budget::Budget;
use super::context::{Caches, Context, Filled, Shares};
use super::echoes::Echoes;
use super::index::BySecret;
use super::pipeline::{error_policy, reconcile};
use super::queue::Queue;
use super::relist;
use super::slim;
use super::sweep;
use super::versions::Versions;
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


/// A controller over `scope` (a namespace, or all with `None`): its cache of connections, and
/// the future that runs it until `shutdown` resolves.
pub fn run_scope(
    shared: Shared,
    scope: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> (Store<VaultConnection>, impl Future<Output = ()>) {
    let Shared {
        client,
        ssm,
        settings,
        metrics,
        queue,
        verification,
        deletions,
    } = shared;
    // The cache holds only what the reconciler reads: no managedFields, no annotations (each
    // can be up to 256 KiB), so a namespace admin cannot inflate the operator's memory with
    // padded objects. Lists come in small pages for the same reason, and a relist is merged
    // into the cache in place rather than buffered beside it (`relist`).
    let filled = Filled::default();
    let (store, writer) = reflector::store();
    let index = BySecret::default();
    let echoes = Echoes::default();
    let indexed = index.clone();
    let connections = filled
        .connections
        .track(
            relist::in_place(
                watcher::watcher(
                    api::<VaultConnection>(&client, &scope),
                    watcher::Config::default().page_size(LIST_PAGE_SIZE),
                )
                .modify(slim::connection),
                store.clone(),
                metrics.clone(),
                "connections",
            )
            .inspect_ok(move |event| indexed.observe(event))
            .reflect(writer),
        )
        .applied_objects()
        // Every trigger goes to the work queue, which hands connections to the controller as
        // workers free up (`reconcile_on` below); the controller still drives this stream, and so
        // the cache. The echo of our own status write changes nothing the reconcile did not
        // know: it wakes nobody.
        .try_filter({
            let (echoes, queue) = (echoes.clone(), queue.clone());
            move |vc| {
                if !echoes.is_echo(vc) {
                    queue.push(&vc.namespace().unwrap_or_default(), &vc.name_any());
                }
                std::future::ready(false)
            }
        });
    let mut controller = Controller::for_stream(connections, store.clone());
    let mut watches = 1; // the VaultConnections themselves

    // A rotated Secret reaches its connections: opted-in Secrets are watched by metadata only,
    // and the cache of their resourceVersions is what lets a reconcile at rest skip reading the
    // Secret. Only their versions are kept (`versions`), not a store of metadata objects.
    let secrets = Versions::default();
    let versions = secrets.clone();
    let secret_events = filled
        .secrets
        .track(
            relist::in_place(
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
            )
            .inspect_ok(move |event| versions.observe(event)),
        )
        // A relist passes on only the Secrets whose resourceVersion moved on (`relist`): an
        // unchanged Secret is no news, and no per-Secret filter state is held for it.
        .touched_objects();
    // The Secrets' first list wakes nobody: every connection reconciles from its own first
    // list, reading this cache once it is filled, so waking them again doubled the reconciles
    // of a start.
    let (secrets_filled, to_queue) = (filled.secrets.clone(), queue.clone());
    controller = controller.watches_stream(secret_events, move |secret| {
        if secrets_filled.is_filled() {
            let ns = secret.namespace().unwrap_or_default();
            for connection in index.naming(&ns, &secret.name_any()) {
                to_queue.push_ref(&connection);
            }
        }
        Vec::new()
    });
    watches += 1;

    // A namespace's tier label changed: re-check its connections. The cache of tier labels is
    // what the tier check reads.
    let (namespaces, namespace_writer) = reflector::store();
    let by_namespace = store.clone();
    let ns_config = match &scope {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    let namespace_events = filled
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
        .predicate_filter(tier_label, Default::default());
    // Likewise the namespaces' first list.
    let (namespaces_filled, to_queue) = (filled.namespaces.clone(), queue.clone());
    controller = controller.watches_stream(namespace_events, move |namespace| {
        if namespaces_filled.is_filled() {
            let ns = namespace.name_any();
            for vc in by_namespace.state() {
                if vc.namespace().as_deref() == Some(ns.as_str()) {
                    to_queue.push(&ns, &vc.name_any());
                }
            }
        }
        Vec::new()
    });
    watches += 1;

    // What the work queue hands out for this scope, a worker at a time: the watches above, the
    // drift sweep's full checks, a freed tier slot's oldest refused sibling, retries.
    controller = controller.reconcile_on(queue.stream(scope.clone()));

    let ctx = Arc::new(
        Context::new(
            client.clone(),
            ssm,
            settings,
            metrics,
            Caches {
                store: store.clone(),
                secrets,
                namespaces,
                filled,
            },
            Shares {
                deletions,
                queue: queue.clone(),
            },
        )
        .with_verification(verification)
        .with_echoes(echoes),
    );

    let sweeper = sweep::run(ctx.clone());
    let controller = controller
        .trigger_backoff(backoff::WatchBackoff::new(watches))
        // No limit here: the work queue hands out no more connections than there are workers.
        .with_config(kube::runtime::controller::Config::default().concurrency(0))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(move |result| {
            // A connection deleted after the queue handed it out never reaches the reconciler:
            // its worker is free.
            if let Err(kube::runtime::controller::Error::ObjectNotFound(gone)) = &result {
                queue.done(gone.namespace.as_deref().unwrap_or_default(), &gone.name);
            }
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
            std::future::ready(())
        });
    let run = async move {
        tokio::select! {
            () = controller => {}
            () = sweeper => {}
        }
    };
    (store, run)
}
