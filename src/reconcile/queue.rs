//! The work queue: which connection is reconciled next. Every reason to reconcile one — an event
//! of the connection, of its Secret or of its namespace, the drift sweep finding a difference, a
//! freed tier slot, a retry after a delay — asks here, and a connection is queued once however
//! often it is asked for: one already waiting is not queued twice, one asked for while it runs
//! runs once more afterwards, and of two delayed requests the sooner wins (kube-runtime's
//! scheduler holds the delayed ones). Within a namespace, connections run in the order they
//! were asked for.
//!
//! The controllers take connections from here as workers free up: as many run at once as there
//! are workers (`--concurrency`), shared by every controller of the process, and the next one
//! comes from the next namespace in turn, round-robin over the namespaces with waiting work. So a
//! namespace with 5,000 connections waiting delays another namespace's rotation by at most one
//! reconcile per worker, and a controller never holds more reconciles than there are workers:
//! what is waiting is a name in a queue (about a hundred bytes), not a pending reconcile, and a
//! burst of any size costs no more memory or polling per reconcile than a single change.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{Stream, StreamExt};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::scheduler::{ScheduleRequest, scheduler};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::api::VaultConnection;

/// A connection: its namespace and name.
type Key = (Arc<str>, Arc<str>);

/// The work queue; clones share it.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
    /// Requests on their way through the scheduler (delays, and the merging of requests).
    requests: UnboundedSender<ScheduleRequest<Key>>,
}

struct Inner {
    state: Mutex<State>,
    /// Wakes the controllers waiting for work: a connection was queued or a worker freed.
    changed: Notify,
    workers: usize,
}

#[derive(Default)]
struct State {
    /// The connections waiting, by namespace.
    waiting: HashMap<Arc<str>, Waiting>,
    /// The namespaces with connections waiting, in the order they are served next.
    ring: VecDeque<Arc<str>>,
    /// The connections being reconciled, and whether each was asked for again meanwhile.
    running: HashMap<Key, bool>,
    /// The scopes of the controllers taking work: a namespace's turn is taken only by a
    /// controller that serves it.
    scopes: Vec<Option<Arc<str>>>,
}

/// One namespace's waiting connections, in the order they were asked for.
#[derive(Default)]
struct Waiting {
    order: VecDeque<Arc<str>>,
    queued: HashSet<Arc<str>>,
}

impl State {
    /// Queues `key` (or marks it to run again if it is running).
    fn enqueue(&mut self, (ns, name): Key) -> bool {
        if let Some(again) = self.running.get_mut(&(ns.clone(), name.clone())) {
            *again = true;
            return false;
        }
        let waiting = match self.waiting.get_mut(&ns) {
            Some(waiting) => waiting,
            None => {
                // A namespace that starts waiting joins the back of the ring.
                self.ring.push_back(ns.clone());
                self.waiting.entry(ns).or_default()
            }
        };
        if !waiting.queued.insert(name.clone()) {
            return false;
        }
        waiting.order.push_back(name);
        true
    }

    /// The next connection of the namespace whose turn it is, if `scope` covers it and a worker
    /// is free; the namespace goes to the back of the ring. A namespace that no controller
    /// serves is dropped from the ring (nobody will take its work).
    fn take(&mut self, workers: usize, scope: Option<&str>) -> Option<Key> {
        if self.running.len() >= workers {
            return None;
        }
        let ns = loop {
            let ns = self.ring.front()?.clone();
            if covers(scope, &ns) {
                break self.ring.pop_front()?;
            }
            if self.scopes.iter().any(|s| covers(s.as_deref(), &ns)) {
                // Another controller's turn: it was woken too.
                return None;
            }
            self.ring.pop_front();
            self.waiting.remove(&ns);
        };
        let waiting = self.waiting.get_mut(&ns)?;
        let name = waiting.order.pop_front()?;
        waiting.queued.remove(&name);
        if waiting.order.is_empty() {
            self.waiting.remove(&ns);
        } else {
            self.ring.push_back(ns.clone());
        }
        self.running.insert((ns.clone(), name.clone()), false);
        Some((ns, name))
    }
}

/// Whether a controller of `scope` (a namespace, or all with `None`) serves namespace `ns`.
fn covers(scope: Option<&str>, ns: &str) -> bool {
    scope.is_none_or(|s| s == ns)
}

impl Queue {
    /// A queue served by `workers` workers. Starts the task that passes on requests once they
    /// are due; it ends with the last clone.
    pub fn new(workers: usize) -> Queue {
        let inner = Arc::new(Inner {
            state: Mutex::default(),
            changed: Notify::new(),
            workers: workers.max(1),
        });
        let (requests, due) = unbounded();
        let arrived = inner.clone();
        tokio::spawn(scheduler(due).for_each(move |key| {
            arrived.enqueue(key);
            std::future::ready(())
        }));
        Queue { inner, requests }
    }

    fn key(ns: &str, name: &str) -> Key {
        (Arc::from(ns), Arc::from(name))
    }

    /// Asks for a reconcile of `name` in `ns` as soon as it is its turn.
    pub fn push(&self, ns: &str, name: &str) {
        self.inner.enqueue(Queue::key(ns, name));
    }

    /// Asks for a reconcile of the connection `r`.
    pub fn push_ref(&self, r: &ObjectRef<VaultConnection>) {
        self.push(r.namespace.as_deref().unwrap_or_default(), &r.name);
    }

    /// Asks for a reconcile of `name` in `ns` once `delay` has passed. Of two delayed requests
    /// for one connection the sooner wins; a request without delay does not cancel a delayed one
    /// (which then finds the connection at rest: a reconcile in memory).
    pub fn push_after(&self, ns: &str, name: &str, delay: Duration) {
        if delay.is_zero() {
            return self.push(ns, name);
        }
        let request = ScheduleRequest {
            message: Queue::key(ns, name),
            run_at: Instant::now() + delay,
        };
        // The scheduler task ends only with the last clone of the queue, this one included.
        let _ = self.requests.unbounded_send(request);
    }

    /// Waits for a free worker and the turn of a namespace `scope` (a namespace, or all with
    /// `None`) covers; its next connection. The worker is the caller's until [`Queue::done`].
    /// A controller says which scope it serves first ([`Queue::serve`]).
    pub async fn next(&self, scope: Option<&str>) -> ObjectRef<VaultConnection> {
        loop {
            // Registered before looking, so a change between the look and the wait is not
            // missed.
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let taken = self.inner.lock().take(self.inner.workers, scope);
            if let Some((ns, name)) = taken {
                // The ring moved on: the next turn may be another controller's.
                self.inner.changed.notify_waiters();
                return ObjectRef::new(&name).within(&ns);
            }
            changed.await;
        }
    }

    /// Registers a controller that serves `scope` (a namespace, or all with `None`).
    pub fn serve(&self, scope: Option<&str>) {
        self.inner.lock().scopes.push(scope.map(Arc::from));
    }

    /// The connections of `scope`, as workers free up for them (see [`Queue::next`]); registers
    /// the scope.
    pub fn stream(
        &self,
        scope: Option<String>,
    ) -> impl Stream<Item = ObjectRef<VaultConnection>> + Send + use<> {
        self.serve(scope.as_deref());
        futures::stream::unfold(self.clone(), move |queue| {
            let scope = scope.clone();
            async move {
                let next = queue.next(scope.as_deref()).await;
                Some((next, queue))
            }
        })
    }

    /// The reconcile of `name` in `ns` is over: its worker is free, and if it was asked for
    /// again meanwhile, it is queued again.
    pub fn done(&self, ns: &str, name: &str) {
        let key = Queue::key(ns, name);
        let mut state = self.inner.lock();
        if state.running.remove(&key) == Some(true) {
            state.enqueue(key);
        }
        drop(state);
        self.inner.changed.notify_waiters();
    }

    /// How many connections wait for a worker.
    pub fn waiting(&self) -> usize {
        let state = self.inner.lock();
        state.waiting.values().map(|w| w.order.len()).sum()
    }

    /// How many are being reconciled.
    pub fn running(&self) -> usize {
        self.inner.lock().running.len()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change under the lock completes before it is released: a poisoned lock holds
        // whole queues, used as they are.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, key: Key) {
        if self.lock().enqueue(key) {
            self.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests;
