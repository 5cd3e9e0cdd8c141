//! Leader election through a Lease: one replica reconciles, the others stand by (and count as
//! ready) until it goes away. The leader also fences its own writes: it watches the Lease itself
//! and writes to SSM only while the Lease names it and has not expired by its renew time, so a
//! replica that lost the Lease (or cannot renew it: the API server is gone) stops writing at once,
//! before the lease manager would notice.

use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use crate::config::RunArgs;
use crate::metrics::Metrics;

/// Whether this process may write: always without leader election; with it, only while the
/// Lease names this replica and its renew time plus duration (less a margin for the call in
/// flight) has not passed.
#[derive(Debug, Clone)]
pub struct Fence(Option<watch::Receiver<Option<SystemTime>>>);

/// Time kept in hand before the Lease expires: a write started later might land after it.
const MARGIN: Duration = Duration::from_secs(2);

impl Fence {
    /// The fence of a process that runs without leader election: always open.
    pub fn open() -> Fence {
        Fence(None)
    }

    /// Whether a write may start now.
    pub fn holds(&self) -> bool {
        match &self.0 {
            None => true,
            Some(until) => until
                .borrow()
                .is_some_and(|t| SystemTime::now() + MARGIN < t),
        }
    }

    /// Resolves once the fence holds (the Lease watch has caught up with an election won).
    pub async fn opened(&self) {
        if let Some(rx) = &self.0 {
            let mut rx = rx.clone();
            let _ = rx
                .wait_for(|t| t.is_some_and(|t| SystemTime::now() + MARGIN < t))
                .await;
        }
    }

    /// When the Lease named in `lease`, as seen by `identity`, lets it write until.
    fn until(lease: &Lease, identity: &str) -> Option<SystemTime> {
        let spec = lease.spec.as_ref()?;
        if spec.holder_identity.as_deref() != Some(identity) {
            return None;
        }
        let renewed = spec.renew_time.as_ref()?.0;
        let duration = u64::try_from(spec.lease_duration_seconds?).ok()?;
        let renewed = SystemTime::UNIX_EPOCH
            + Duration::from_nanos(u64::try_from(renewed.as_nanosecond()).ok()?);
        Some(renewed + Duration::from_secs(duration))
    }

    /// A fence fed by a watch of the Lease `name` in `namespace` for `identity`, and the future
    /// that keeps it up to date (it runs until dropped).
    fn watching(
        client: Client,
        namespace: &str,
        name: &str,
        identity: String,
    ) -> (Fence, impl std::future::Future<Output = ()> + use<>) {
        let (tx, rx) = watch::channel(None);
        let api: Api<Lease> = Api::namespaced(client, namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = async move {
            let mut events = watcher::watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease)) => {
                        tx.send_replace(Fence::until(&lease, &identity));
                    }
                    Ok(watcher::Event::Delete(_)) => {
                        tx.send_replace(None);
                    }
                    Ok(_) => {}
                    // Not seen renewed: the recorded expiry stands, and passes by itself.
                    Err(e) => tracing::warn!(error = %e, "cannot watch the leader Lease"),
                }
            }
        };
        (Fence(Some(rx)), task)
    }
}

/// Resolves when this replica has lost the Lease (and has released it).
pub type Lost = Shared<BoxFuture<'static, ()>>;

/// How an election ended.
pub enum Election {
    /// This replica leads until [`Lost`] resolves, and may write while the [`Fence`] holds.
    Leading(Lost, Fence),
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
    let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .build()
        .await?;
    let (fence, fence_task) = Fence::watching(
        client.clone(),
        &namespace,
        &args.lease_name,
        identity.clone(),
    );
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
    let fence_task = tokio::spawn(fence_task);
    let lost = async move {
        let _ = leader.wait_for(|is_leader| !*is_leader).await;
        drop(leader); // closing the channel releases the Lease
        let _ = lease_task.await;
        fence_task.abort();
    }
    .boxed()
    .shared();
    Ok(Election::Leading(lost, fence))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, renewed: SystemTime, seconds: i32) -> Lease {
        let since = renewed.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(
                    jiff::Timestamp::from_nanosecond(since.as_nanos() as i128).unwrap(),
                )),
                lease_duration_seconds: Some(seconds),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn the_fence_holds_only_for_our_own_unexpired_lease() {
        let now = SystemTime::now();
        let until = Fence::until(&lease("me", now, 15), "me").expect("ours");
        assert!(until > now + Duration::from_secs(14));
        assert_eq!(Fence::until(&lease("other", now, 15), "me"), None);
        let (tx, rx) = watch::channel(Some(until));
        let fence = Fence(Some(rx));
        assert!(fence.holds());
        tx.send_replace(Fence::until(
            &lease("me", now - Duration::from_secs(14), 15),
            "me",
        ));
        assert!(!fence.holds(), "within the margin of expiry: no new write");
        tx.send_replace(None);
        assert!(!fence.holds(), "lost or deleted");
        assert!(Fence::open().holds(), "without election: always");
    }
}
