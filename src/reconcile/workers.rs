//! The workers of one scope: they take connections from the work queue ([`super::queue`]) as
//! it hands them out, read each from the connections' cache as it is now, and run its reconcile
//! as a task of its own, so reconciles run on every core. A failed reconcile is retried through
//! the queue ([`super::pipeline::error_policy`]); whatever way a reconcile ends (a panic
//! included), its worker goes back to the queue. On shutdown no new reconcile starts, and the
//! ones running finish.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinSet;
use tracing::Instrument;

use super::connections::Connections;
use super::context::Context;
use super::pipeline::{error_policy, reconcile};
use super::queue::Queue;
use crate::api::VaultConnection;

/// Gives the worker of `name` in `ns` back to the queue when dropped.
struct Worker {
    queue: Queue,
    ns: String,
    name: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.queue.done(&self.ns, &self.name);
    }
}

/// Runs the reconciles the queue hands out for `scope` until `shutdown` resolves, then waits for
/// the ones running.
pub async fn run(
    scope: Option<String>,
    connections: Connections,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()>,
) {
    let queue = ctx.queue.clone();
    queue.serve(scope.as_deref());
    let mut running = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(ended) = running.join_next(), if !running.is_empty() => log_panic(ended),
            next = queue.next(scope.as_deref()) => {
                let worker = Worker {
                    queue: queue.clone(),
                    ns: next.namespace.unwrap_or_default(),
                    name: next.name,
                };
                // Gone since it was asked for (deleted): nothing to do, and the worker is free.
                let Some(vc) = connections.get(&worker.ns, &worker.name) else {
                    continue;
                };
                running.spawn(one(Arc::new(vc), ctx.clone(), worker));
            }
        }
    }
    while let Some(ended) = running.join_next().await {
        log_panic(ended);
    }
}

/// One reconcile, holding its worker.
async fn one(vc: Arc<VaultConnection>, ctx: Arc<Context>, worker: Worker) {
    let connection = format!("{}/{}", worker.ns, worker.name);
    let span = tracing::info_span!("reconcile", connection);
    if let Err(e) = reconcile(vc.clone(), ctx.clone()).instrument(span).await {
        error_policy(&vc, &e, &ctx);
    }
    drop(worker);
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended
        && e.is_panic()
    {
        tracing::error!("a reconcile panicked; its connection is retried at its next change");
    }
}
