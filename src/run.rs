//! `vault-connection-operator run`: wires settings, clients, the controllers and the metrics
//! endpoint together.

use std::sync::{Arc, Mutex};

use aws_config::BehaviorVersion;
use futures::FutureExt;
use kube::Client;
use kube::runtime::reflector::Store;
use kube_lease_manager::LeaseManagerBuilder;
use tracing_subscriber::EnvFilter;

use crate::api::VaultConnection;
use crate::config::{LogFormat, RunArgs};
use crate::controller::{
    AWS_MANAGED_KEY, Settings, Shared, ready_condition, ready_reason, run_scope,
};
use crate::metrics::Metrics;
use crate::ssm::Ssm;

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

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    // AWS is configured the standard way: region, credential chain (incl. IRSA and EKS Pod
    // Identity) and AWS_ENDPOINT_URL_SSM for an emulator.
    // Bounded attempts, so a hung endpoint turns into a reported, retried failure.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3).min(args.ssm_timeout))
        .operation_attempt_timeout(args.ssm_timeout)
        .operation_timeout(args.ssm_timeout * 3)
        .build();
    let aws = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    let metrics = Metrics::new();
    let ssm = Ssm::new(
        aws_sdk_ssm::Client::new(&aws),
        args.ssm_write_rate,
        args.ssm_read_rate,
        metrics.clone(),
    );
    let settings = Settings {
        prefix: args.ssm_prefix.clone(),
        cluster: args.cluster_name.clone(),
        default_kms_key_id: args
            .default_kms_key_id
            .clone()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| AWS_MANAGED_KEY.to_owned()),
        tiers: args.tier_limits.clone(),
        default_tier: args.default_tier.clone(),
        drift_interval: args.drift_check_interval,
    };
    let namespaces = args.watched_namespaces();
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    tracing::info!(
        prefix = settings.prefix,
        cluster = settings.cluster,
        scopes = ?scopes,
        tiers = %settings.tiers,
        default_tier = settings.default_tier,
        drift_check_interval = ?settings.drift_interval,
        "starting"
    );

    let stores: Arc<Mutex<Vec<Store<VaultConnection>>>> = Arc::default();
    let scrape_stores = stores.clone();
    let scrape_metrics = metrics.clone();
    let before_scrape = Arc::new(move || {
        let stores = scrape_stores.lock().unwrap_or_else(|e| e.into_inner());
        let all: Vec<_> = stores.iter().flat_map(|s| s.state()).collect();
        scrape_metrics.set_connections(all.iter().map(|vc| {
            let status = ready_condition(vc).map_or("Unknown", |c| c.status.as_str());
            (status, ready_reason(vc).unwrap_or("Pending"))
        }));
    });
    let server = tokio::spawn(metrics.clone().serve(args.metrics_addr, before_scrape));

    let shutdown = shutdown_signal().shared();
    let lost_leadership = if args.leader_election {
        let lease_ns = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".to_owned());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("operator-{}", uuid::Uuid::new_v4().simple()));
        let duration = args.lease_duration.as_secs().max(2);
        let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&lease_ns)
            .with_identity(&identity)
            .with_duration(duration)
            .with_grace((duration / 3).max(1))
            .build()
            .await?;
        let (mut leader, lease_task) = manager.watch().await;
        // Standing by correctly counts as ready: the Lease is reachable and watched.
        metrics.set_ready(true);
        tracing::info!(
            lease = args.lease_name,
            namespace = lease_ns,
            identity,
            "standing by for leadership"
        );
        let leading = tokio::select! {
            () = shutdown.clone() => false,
            changed = leader.wait_for(|is_leader| *is_leader) => { changed?; true }
        };
        if !leading {
            drop(leader); // closing the channel releases the Lease
            let _ = lease_task.await;
            server.abort();
            return Ok(());
        }
        metrics.set_ready(false);
        metrics.set_leader(true);
        tracing::info!(identity, "became leader");
        let lost = async move {
            let _ = leader.wait_for(|is_leader| !*is_leader).await;
            drop(leader); // closing the channel releases the Lease
            let _ = lease_task.await;
        }
        .shared();
        Some(lost)
    } else {
        metrics.set_leader(true);
        None
    };
    let stop = {
        let lost = lost_leadership.clone();
        let shutdown = shutdown.clone();
        async move {
            match lost {
                Some(lost) => {
                    futures::future::select(Box::pin(shutdown), Box::pin(lost)).await;
                }
                None => shutdown.await,
            }
        }
        .shared()
    };
    let shared = Shared {
        client: client.clone(),
        ssm,
        settings,
        metrics: metrics.clone(),
        concurrency: args.concurrency,
    };
    let pending = Arc::new(std::sync::atomic::AtomicUsize::new(scopes.len()));
    let controllers = scopes.into_iter().map(|scope| {
        let pending = pending.clone();
        let stores = stores.clone();
        let metrics = metrics.clone();
        let (probe_client, probe_scope) = (client.clone(), scope.clone());
        run_scope(
            shared.clone(),
            scope,
            move |store| {
                stores
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(store.clone());
                // Ready once the API answers a list of VaultConnections (CRD installed, RBAC
                // in place) and the cache holds objects when there are any. (The store's own
                // wait_until_ready() never resolved for the controller's store in our tests.)
                let probe: kube::Api<VaultConnection> = match &probe_scope {
                    Some(ns) => kube::Api::namespaced(probe_client.clone(), ns),
                    None => kube::Api::all(probe_client.clone()),
                };
                tokio::spawn(async move {
                    let one = kube::api::ListParams::default().limit(1);
                    loop {
                        match probe.list_metadata(&one).await {
                            Ok(list) if list.items.is_empty() || !store.is_empty() => break,
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot list VaultConnections yet")
                            }
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    if pending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                        tracing::info!("caches synced; ready");
                        metrics.set_ready(true);
                    }
                });
            },
            stop.clone(),
        )
    });
    futures::future::join_all(controllers).await;
    server.abort();
    if let Some(lost) = lost_leadership
        && lost.peek().is_some()
    {
        // Exit non-zero so the pod restarts and rejoins as a standby.
        anyhow::bail!("lost leadership; stopped reconciling");
    }
    tracing::info!("stopped");
    Ok(())
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
