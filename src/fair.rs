//! Fair shares between tenants (namespaces) of what every reconcile competes for inside its run:
//! the SSM call budgets. (The workers are shared the same way, by the work queue that hands
//! connections to the controllers: `reconcile::queue`.)
//!
//! A [`Turns`] hands out turns of one shared resource (a rate limiter's call slots)
//! round-robin over the tenants that wait: one queue per tenant, served in the order
//! the tenants first asked, one turn each before any tenant gets a second. A tenant with 5,000
//! queued calls therefore delays another tenant's call by at most one turn, where a plain
//! limiter or semaphore serves whoever polls first.
//!
//! The tenant of a call is the namespace of the reconcile it belongs to, carried as a task-local
//! ([`as_tenant`]) so the SSM client needs no extra argument; calls outside any reconcile (the
//! drift sweep) share the tenant `""`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once, Weak};

use governor::DefaultDirectRateLimiter;
use tokio::sync::{Notify, oneshot};

tokio::task_local! {
    static TENANT: Arc<str>;
}

/// Runs `fut` with `tenant` as the tenant of every turn it asks for.
pub async fn as_tenant<F: Future>(tenant: Arc<str>, fut: F) -> F::Output {
    TENANT.scope(tenant, fut).await
}

/// The tenant of the running task: its reconcile's namespace, or `""` outside a reconcile.
pub fn tenant() -> Arc<str> {
    TENANT
        .try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::from(""))
}

/// Produces the next turn of the shared resource (waits for a call slot, or a free permit).
pub type Source<P> = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = P> + Send>> + Send + Sync>;

/// Turns of one shared resource, handed out round-robin between tenants. Cheap to clone; the
/// clones share the queues.
pub struct Turns<P> {
    inner: Arc<Inner<P>>,
}

impl<P> Clone for Turns<P> {
    fn clone(&self) -> Self {
        Turns {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<P> {
    queues: Mutex<Queues<P>>,
    /// Wakes the dispatcher: someone started waiting, or the last handle went.
    wake: Arc<Notify>,
    source: Source<P>,
    started: Once,
}

impl<P> Drop for Inner<P> {
    fn drop(&mut self) {
        // The dispatcher holds only a weak reference: woken, it finds it gone and ends.
        self.wake.notify_one();
    }
}

/// The waiters of each tenant, and the ring of tenants that have any (in the order they are
/// served next).
struct Queues<P> {
    waiting: HashMap<Arc<str>, VecDeque<oneshot::Sender<P>>>,
    ring: VecDeque<Arc<str>>,
}

impl<P> Queues<P> {
    /// Gives `turn` to the first live waiter of the next tenant in the ring; a tenant that still
    /// waits goes to the back. `Some(turn)` back when nobody waits any more (every waiter had
    /// given up).
    fn grant(&mut self, mut turn: P) -> Option<P> {
        while let Some(tenant) = self.ring.pop_front() {
            let Some(queue) = self.waiting.get_mut(&tenant) else {
                continue;
            };
            while let Some(waiter) = queue.pop_front() {
                match waiter.send(turn) {
                    Ok(()) => {
                        if queue.is_empty() {
                            self.waiting.remove(&tenant);
                        } else {
                            self.ring.push_back(tenant);
                        }
                        return None;
                    }
                    // Gave up waiting (its reconcile was dropped): the next one.
                    Err(back) => turn = back,
                }
            }
            self.waiting.remove(&tenant);
        }
        Some(turn)
    }
}

impl<P: Send + 'static> Turns<P> {
    /// Turns produced by `source`. The dispatcher starts with the first turn asked for (so it
    /// runs on the runtime of its callers) and ends with the last handle.
    pub fn new(source: Source<P>) -> Turns<P> {
        Turns {
            inner: Arc::new(Inner {
                queues: Mutex::new(Queues {
                    waiting: HashMap::new(),
                    ring: VecDeque::new(),
                }),
                wake: Arc::new(Notify::new()),
                source,
                started: Once::new(),
            }),
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Queues<P>> {
        // Every change under the lock is a push or pop that completes: a poisoned lock holds
        // whole queues, used as they are.
        self.inner.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for `tenant`'s next turn. `None` only if the dispatcher is gone (it ends only
    /// with the last handle, so never while this one waits).
    pub async fn turn(&self, tenant: &str) -> Option<P> {
        self.inner.started.call_once(|| {
            tokio::spawn(dispatch(
                Arc::downgrade(&self.inner),
                self.inner.wake.clone(),
                self.inner.source.clone(),
            ));
        });
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.queues();
            let Queues { waiting, ring } = &mut *q;
            match waiting.get_mut(tenant) {
                Some(queue) => queue.push_back(tx),
                // A tenant that starts waiting joins the back of the ring.
                None => {
                    let tenant: Arc<str> = Arc::from(tenant);
                    ring.push_back(tenant.clone());
                    waiting.insert(tenant, VecDeque::from([tx]));
                }
            }
        }
        self.inner.wake.notify_one();
        rx.await.ok()
    }

    /// How many tenants wait (for tests and metrics).
    pub fn tenants_waiting(&self) -> usize {
        self.queues().ring.len()
    }
}

/// The dispatcher: takes a turn from the source only while someone waits, and grants it round
/// robin. A turn nobody took (every waiter gave up meanwhile) is kept for the next waiter.
async fn dispatch<P: Send + 'static>(inner: Weak<Inner<P>>, wake: Arc<Notify>, source: Source<P>) {
    let mut spare: Option<P> = None;
    loop {
        loop {
            let Some(inner) = inner.upgrade() else { return };
            let waits = !inner
                .queues
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ring
                .is_empty();
            drop(inner);
            if waits {
                break;
            }
            // `notify_one` keeps a permit when nobody listens: a waiter that arrived between
            // the check and here is not missed.
            wake.notified().await;
        }
        let turn = match spare.take() {
            Some(turn) => turn,
            None => source().await,
        };
        let Some(inner) = inner.upgrade() else { return };
        spare = inner
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .grant(turn);
    }
}

/// Call slots of a rate limiter, shared fairly.
pub fn rate(limiter: Arc<DefaultDirectRateLimiter>) -> Turns<()> {
    Turns::new(Arc::new(move || {
        let limiter = limiter.clone();
        Box::pin(async move { limiter.until_ready().await })
    }))
}

#[cfg(test)]
mod tests;
