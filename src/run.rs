//! `vault-connection-operator run`: wires settings, clients, the controllers and the metrics
//! endpoint together.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use futures::FutureExt;
use kube::Client;
use tracing_subscriber::EnvFilter;

use crate::api::VaultConnection;
use crate::config::{LogFormat, RunArgs};
use crate::lease::{self, Election, Fence};
use crate::metrics::Metrics;
use crate::reconcile::connections::Connections;
use crate::reconcile::queue::Queue;
use crate::reconcile::{Budget, Shared, run_scope};
use crate::ssm::Ssm;
use crate::verify::Verifier;
use crate::verify::step::Verification;

/// Sets up logging. A bare level applies to the operator's own logs (dependencies log warnings
/// and errors); a full filter directive (`info,kube=debug`) is used as given.
pub fn init_logging(format: LogFormat, level: &str) -> Result<(), String> {
    let directive = if level.contains('=') || level.contains(',') {
        level.to_owned()
    } else {
        format!("warn,vault_connection_operator={level}")
    };
    let filter = EnvFilter::try_new(&directive).map_err(|e| format!("--log-level: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| format!("cannot set up logging: {e}"))
}

/// Runs the operator until SIGTERM or Ctrl-C (or, with leader election, until it loses the
/// Lease: then it exits with an error so the pod restarts as a standby).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube_client().await?;
    let metrics = Metrics::new();
    let ssm = ssm_client(&args, metrics.clone()).await?;
    let stores: Arc<Mutex<Vec<Connections>>> = Arc::default();
    let queue = Queue::new(usize::from(args.concurrency));
    // Liveness answers from the start, also while the API server cannot be reached.
    let server = tokio::spawn(
        metrics
            .clone()
            .serve(args.metrics_addr, before_scrape(&stores, &queue, &metrics)),
    );
    let shutdown = shutdown_signal().shared();
    let Some(cluster_id) = until_cluster_id(&client, &args, shutdown.clone()).await else {
        server.abort();
        return Ok(());
    };
    let settings = args.settings(&cluster_id);
    let scopes = args.scopes();
    tracing::info!(
        prefix = settings.prefix,
        cluster = settings.cluster,
        cluster_id = settings.cluster_id,
        legacy_parameters = ?settings.legacy,
        scopes = ?scopes,
        tiers = %settings.tiers,
        default_tier = settings.default_tier,
        drift_check_interval = ?settings.drift_interval,
        "starting"
    );

    let (lost, fence) = if args.leader_election {
        match lease::elect(client.clone(), &args, &metrics, shutdown.clone()).await? {
            Election::Leading(lost, fence) => {
                // Writes start once this replica sees its own Lease, not before.
                tokio::select! {
                    () = fence.opened() => {}
                    () = shutdown.clone() => { server.abort(); return Ok(()); }
                }
                (Some(lost), fence)
            }
            Election::ShutDown => {
                server.abort();
                return Ok(());
            }
        }
    } else {
        metrics.set_leader(true);
        (None, Fence::open())
    };
    let ssm = ssm.fenced(fence);

    let verification = match args.verification() {
        None => None,
        Some(v) => {
            let verifier = Verifier::new(&v)
                .map_err(anyhow::Error::msg)?
                .with_metrics(metrics.clone());
            tracing::info!(
                doppler = v.doppler_url,
                infisical = v.infisical_url,
                "credential verification on"
            );
            Some(Arc::new(Verification::new(
                verifier,
                args.verify_retry_interval,
            )))
        }
    };
    let shared = Shared {
        client: client.clone(),
        ssm,
        settings,
        metrics: metrics.clone(),
        queue,
        verification,
        deletions: Arc::new(Budget::new(args.max_deletions, args.deletion_window)),
    };
    let pending = Arc::new(AtomicUsize::new(scopes.len()));
    let controllers = scopes.into_iter().map(|scope| {
        let (store, controller) = run_scope(shared.clone(), scope.clone(), shutdown.clone());
        lock(&stores).push(store.clone());
        let (client, metrics, pending) = (client.clone(), metrics.clone(), pending.clone());
        tokio::spawn(async move {
            until_synced(client, scope, store).await;
            if pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                tracing::info!("caches synced; ready");
                metrics.set_ready(true);
            }
        });
        controller
    });
    let all = futures::future::join_all(controllers);
    match lost {
        // SIGTERM: the controllers finish the reconciles in flight, then stop.
        None => drop(all.await),
        // A lost Lease: stop at once. Dropping the controllers cancels every reconcile in
        // flight; the fence already refuses any write they would start.
        Some(lost) => {
            tokio::select! {
                _ = all => {}
                () = lost => {
                    server.abort();
                    // Exit non-zero so the pod restarts and rejoins as a standby.
                    anyhow::bail!("lost leadership; stopped reconciling and cancelled the work in flight");
                }
            }
        }
    }
    server.abort();
    tracing::info!("stopped");
    Ok(())
}

/// This cluster's identity, retried until the API server answers; `None` on shutdown.
async fn until_cluster_id(
    client: &Client,
    args: &RunArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Option<String> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut attempt = 0;
    loop {
        match cluster_id(client, args).await {
            Ok(id) => return Some(id),
            Err(e) => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "cannot determine the cluster id yet");
            }
        }
        let pause =
            crate::backoff::jittered(attempt, Duration::from_millis(500), Duration::from_secs(30));
        tokio::select! {
            () = &mut shutdown => return None,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// This cluster's identity: `--cluster-id`, else the uid of the kube-system namespace (which
/// every cluster has, and no two clusters share).
async fn cluster_id(client: &Client, args: &RunArgs) -> anyhow::Result<String> {
    if let Some(id) = &args.cluster_id {
        return Ok(id.clone());
    }
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(client.clone());
    let uid = namespaces
        .get_metadata("kube-system")
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read the kube-system namespace for the cluster id ({e}); grant get on namespaces or set --cluster-id"
            )
        })?
        .metadata
        .uid
        .filter(|u| crate::config::valid_cluster_id(u))
        .ok_or_else(|| anyhow::anyhow!("the kube-system namespace has no usable uid; set --cluster-id"))?;
    Ok(uid)
}

/// The SSM client, configured the standard way: region, credential chain (incl. IRSA and EKS Pod
/// Identity) and AWS_ENDPOINT_URL_SSM for an emulator. Attempts are bounded, so a hung endpoint
/// turns into a reported, retried failure.
/// The Kubernetes client: in-cluster config, else the kubeconfig. kube takes a kubeconfig's
/// proxy from `HTTPS_PROXY` but checks `NO_PROXY` against the proxy's own address; here
/// `NO_PROXY` applies to the API server, as it does for the SDK and the verifier. A `proxy-url`
/// written in the kubeconfig itself is kept.
async fn kube_client() -> anyhow::Result<Client> {
    let mut config = kube::Config::infer().await?;
    let from_env = ["HTTPS_PROXY", "https_proxy"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .and_then(|v| v.parse::<hyper::Uri>().ok());
    if config.proxy_url.is_some()
        && config.proxy_url == from_env
        && !crate::verify::http::proxied(&config.cluster_url)
    {
        config.proxy_url = None;
    }
    Ok(Client::try_from(config)?)
}

async fn ssm_client(args: &RunArgs, metrics: Metrics) -> anyhow::Result<Ssm> {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3).min(args.ssm_timeout))
        .operation_attempt_timeout(args.ssm_timeout)
        .operation_timeout(args.ssm_timeout * 3)
        .build();
    // The pod's name in every request's user agent (`app/<pod>`), so CloudTrail names the
    // replica that made each call.
    // AWS recommends at most 50 characters: a pod name's end (its unique suffix) is kept.
    let app = std::env::var("POD_NAME")
        .ok()
        .map(|pod| {
            let skip = pod.chars().count().saturating_sub(50);
            pod.chars().skip(skip).collect::<String>()
        })
        .and_then(|pod| aws_config::AppName::new(pod).ok())
        .or_else(|| aws_config::AppName::new(crate::ownership::MANAGED_BY).ok());
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(app) = app {
        loader = loader.app_name(app);
    }
    let aws = crate::aws::with_role(loader.load().await, &args.ssm_role).await;
    crate::aws::resolve_identity(&aws, &args.ssm_role, args.ssm_timeout * 3)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(Ssm::new(
        aws_sdk_ssm::Client::new(&aws),
        args.ssm_write_rate,
        args.ssm_read_rate,
        metrics,
    )
    .tiered(args.parameter_tier))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The stores list is only pushed to and read; a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Before each scrape: the work queue's gauges, and the connections gauge from the caches by Ready
/// status and reason.
fn before_scrape(
    stores: &Arc<Mutex<Vec<Connections>>>,
    queue: &Queue,
    metrics: &Metrics,
) -> Arc<dyn Fn() + Send + Sync> {
    let (stores, queue, metrics) = (stores.clone(), queue.clone(), metrics.clone());
    Arc::new(move || {
        metrics.set_queue(queue.waiting(), queue.running());
        // Counted in place: a scrape allocates per distinct pair (a few), not per connection.
        let mut counts: Vec<((String, String), i64)> = Vec::new();
        for cache in lock(&stores).iter() {
            cache.scan(None, |_, _, entry, _| {
                let (status, reason) = entry
                    .readiness()
                    .map_or(("Unknown", "Pending"), |r| (r.status, r.reason));
                match counts
                    .iter_mut()
                    .find(|((s, r), _)| s == status && r == reason)
                {
                    Some((_, n)) => *n += 1,
                    None => counts.push(((status.to_owned(), reason.to_owned()), 1)),
                }
                None::<()>
            });
        }
        metrics.set_connections(&counts.into_iter().collect());
    })
}

/// Resolves once the API answers a list of VaultConnections in `scope` (CRD installed, RBAC in
/// place) and the cache holds objects when there are any. (Not the store's own
/// `wait_until_ready()`: it wakes only the task that polled it last, and the controller waits
/// on it too; see `reconcile/synced.rs`.)
async fn until_synced(client: Client, scope: Option<String>, store: Connections) {
    let probe: kube::Api<VaultConnection> = match &scope {
        Some(ns) => kube::Api::namespaced(client, ns),
        None => kube::Api::all(client),
    };
    let one = kube::api::ListParams::default().limit(1);
    loop {
        match probe.list_metadata(&one).await {
            Ok(list) if list.items.is_empty() || !store.is_empty() => return,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot list VaultConnections yet"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}
