//! `vault-connection-operator run`: wires settings, clients, the controllers and the metrics
//! endpoint together.

use std::sync::{Arc, Mutex};

use aws_config::BehaviorVersion;
use kube::Client;
use kube::runtime::reflector::Store;
use tracing_subscriber::EnvFilter;

use crate::api::VaultConnection;
use crate::config::{LogFormat, RunArgs};
use crate::controller::{AWS_MANAGED_KEY, Settings, ready_reason, run_scope};
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
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let metrics = Metrics::new();
    let ssm = Ssm::new(
        aws_sdk_ssm::Client::new(&aws),
        args.ssm_write_rate,
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
            let status = vc
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .map_or("Unknown", |c| c.status.as_str());
            (status, ready_reason(vc).unwrap_or("Pending"))
        }));
    });
    let server = tokio::spawn(metrics.clone().serve(args.metrics_addr, before_scrape));

    let pending = Arc::new(std::sync::atomic::AtomicUsize::new(scopes.len()));
    let controllers = scopes.into_iter().map(|scope| {
        let pending = pending.clone();
        let stores = stores.clone();
        let metrics = metrics.clone();
        let (probe_client, probe_scope) = (client.clone(), scope.clone());
        run_scope(
            client.clone(),
            scope,
            ssm.clone(),
            settings.clone(),
            metrics.clone(),
            args.concurrency,
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
        )
    });
    futures::future::join_all(controllers).await;
    server.abort();
    tracing::info!("stopped");
    Ok(())
}
