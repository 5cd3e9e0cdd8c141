//! Leader election through a Lease: one replica reconciles, the others stand by (and count as
//! ready) until it goes away.

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::config::RunArgs;
use crate::metrics::Metrics;

/// Resolves when this replica has lost the Lease (and has released it).
pub type Lost = Shared<BoxFuture<'static, ()>>;

/// How an election ended.
pub enum Election {
    /// This replica leads until [`Lost`] resolves.
    Leading(Lost),
    /// Shutdown was requested while standing by; the Lease was not taken.
    ShutDown,
}

/// Stands by until this replica holds the Lease named by `args`, or until `shutdown`.
pub async fn elect(
    client: Client,
    args: &RunArgs,
    metrics: &Metrics,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Election> {
    let namespace = args
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".to_owned());
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("operator-{}", uuid::Uuid::new_v4().simple()));
    let duration = args.lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client, &args.lease_name)
        .with_namespace(&namespace)
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
        namespace,
        identity,
        "standing by for leadership"
    );
    let leading = tokio::select! {
        () = shutdown => false,
        changed = leader.wait_for(|is_leader| *is_leader) => { changed?; true }
    };
    if !leading {
        drop(leader); // closing the channel releases the Lease
        let _ = lease_task.await;
        return Ok(Election::ShutDown);
    }
    metrics.set_ready(false);
    metrics.set_leader(true);
    tracing::info!(identity, "became leader");
    let lost = async move {
        let _ = leader.wait_for(|is_leader| !*is_leader).await;
        drop(leader); // closing the channel releases the Lease
        let _ = lease_task.await;
    }
    .boxed()
    .shared();
    Ok(Election::Leading(lost))
}
