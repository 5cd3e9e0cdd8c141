//! Wiring the reconciler to the cluster: which watches wake which connections, and the
//! controller that runs the pipeline over one scope (a namespace, or all of them).

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use super::context::Context;
use super::{error_policy, reconcile};
use crate::api::{CREDENTIALS_LABEL, VaultConnection};
use crate::backoff;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::reason::Reason;
use crate::ssm::Ssm;
use crate::status::ready_reason;
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
    /// Connections reconciled at once.
    pub concurrency: u16,
    /// Credential verification, when on.
    pub verification: Option<Arc<Verification>>,
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

/// Drops what the reconciler never reads before an object is cached.
pub fn slim(vc: &mut VaultConnection) {
    vc.metadata.managed_fields = None;
    vc.metadata.annotations = None;
}

/// The connections in `store` that `keep` selects, as reconcile requests.
fn select(
    store: &Store<VaultConnection>,
    keep: impl Fn(&VaultConnection) -> bool,
) -> Vec<ObjectRef<VaultConnection>> {
    store
        .state()
        .iter()
        .filter(|vc| keep(vc))
        .map(|vc| ObjectRef::from_obj(&**vc))
        .collect()
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
        concurrency,
        verification,
    } = shared;
    // The cache holds only what the reconciler reads: no managedFields, no annotations (each
    // can be up to 256 KiB), so a namespace admin cannot inflate the operator's memory with
    // padded objects. Lists come in small pages for the same reason.
    let (store, writer) = reflector::store();
    let connections = watcher::watcher(
        api::<VaultConnection>(&client, &scope),
        watcher::Config::default().page_size(LIST_PAGE_SIZE),
    )
    .modify(slim)
    .reflect(writer)
    .applied_objects();
    let controller = Controller::for_stream(connections, store.clone());
    let ctx = Arc::new(
        Context::new(client.clone(), ssm, settings, metrics, store.clone())
            .with_verification(verification),
    );
    let mut watches = 1; // the VaultConnections themselves

    // A rotated Secret reaches its connections: watch opted-in Secrets by metadata only.
    let by_secret = store.clone();
    let secrets: Api<PartialObjectMeta<Secret>> = api(&client, &scope);
    let controller = controller.watches(
        secrets,
        watcher::Config::default().labels(&format!("{CREDENTIALS_LABEL}=true")),
        move |secret| {
            let (ns, name) = (secret.namespace(), secret.name_any());
            select(&by_secret, |vc| {
                vc.namespace() == ns && vc.spec.credentials_secret_ref.name == name
            })
        },
    );
    watches += 1;

    // A namespace's tier label changed: re-check its connections.
    let by_namespace = store.clone();
    let namespaces: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    let ns_config = match &scope {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    let controller = controller.watches(namespaces, ns_config, move |namespace| {
        let ns = Some(namespace.name_any());
        select(&by_namespace, |vc| vc.namespace() == ns)
    });
    watches += 1;

    // A connection went away: serve siblings that were over their tier's limit.
    let by_sibling = store.clone();
    let siblings: Api<PartialObjectMeta<VaultConnection>> = api(&client, &scope);
    let controller = controller.watches(siblings, watcher::Config::default(), move |changed| {
        let ns = changed.namespace();
        select(&by_sibling, |vc| {
            vc.namespace() == ns && ready_reason(vc) == Some(Reason::TierLimitExceeded.as_str())
        })
    });
    watches += 1;

    // Memos of connections that vanished without a cleanup are dropped once per drift interval.
    let pruner = {
        let ctx = ctx.clone();
        async move {
            let mut every = tokio::time::interval(ctx.settings.drift_interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await; // the first tick is immediate
            loop {
                every.tick().await;
                ctx.prune();
            }
        }
    };
    let controller = controller
        .trigger_backoff(backoff::WatchBackoff::new(watches))
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        });
    let run = async move {
        tokio::select! {
            () = controller => {}
            () = pruner => {}
        }
    };
    (store, run)
}
