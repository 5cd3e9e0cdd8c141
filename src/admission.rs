//! Admission of connections to the metrics and health server: at most a fixed number at once,
//! and when every place is taken, the connection that has waited longest without a request in
//! progress is closed to make room for the new one.
//!
//! A cap alone would let anyone who can reach the port hold every place with idle connections
//! and lock out the kubelet's probes and Prometheus. A client that sends its request as soon as
//! it connects (as probes and scrapers do) is busy within one round trip and is never the one
//! closed, so it is answered however many idle connections knock; a place is refused only
//! when every connection is in the middle of a request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How long a new connection waits for the connection it displaced to let go of its place.
const HANDOVER: Duration = Duration::from_secs(1);

type Open = Arc<Mutex<BTreeMap<u64, Arc<Entry>>>>;

/// The places of one server.
pub struct Admission {
    permits: Arc<Semaphore>,
    /// Open connections by admission order (oldest first).
    open: Open,
    next: AtomicU64,
}

#[derive(Default)]
struct Entry {
    /// Requests in progress on this connection.
    busy: AtomicUsize,
    closing: Notify,
}

/// One admitted connection's place; released when dropped.
pub struct Slot {
    id: u64,
    entry: Arc<Entry>,
    open: Open,
    _permit: OwnedSemaphorePermit,
}

/// Marks a request in progress while it lives.
pub struct Busy(Arc<Entry>);

impl Admission {
    /// A server with `places` places (at least one).
    pub fn new(places: usize) -> Admission {
        Admission {
            permits: Arc::new(Semaphore::new(places.max(1))),
            open: Arc::default(),
            next: AtomicU64::new(0),
        }
    }

    /// A place for a new connection: a free one, else the one of the connection idle longest
    /// (which is told to close), else none.
    pub async fn admit(&self) -> Option<Slot> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !self.close_idlest() {
                    return None;
                }
                tokio::time::timeout(HANDOVER, self.permits.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry::default());
        self.lock().insert(id, entry.clone());
        Some(Slot {
            id,
            entry,
            open: self.open.clone(),
            _permit: permit,
        })
    }

    /// How many connections hold a place.
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Entry>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the oldest connection without a request in progress to close; false if all are
    /// busy.
    fn close_idlest(&self) -> bool {
        let mut open = self.lock();
        let Some(id) = open
            .iter()
            .find(|(_, e)| e.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(entry) = open.remove(&id) {
            // A stored permit: the connection sees it even if it is not waiting yet.
            entry.closing.notify_one();
        }
        true
    }
}

impl Slot {
    /// Marks a request in progress until the guard is dropped.
    pub fn busy(&self) -> impl Fn() -> Busy + Send + Sync + 'static {
        let entry = self.entry.clone();
        move || {
            entry.busy.fetch_add(1, Ordering::AcqRel);
            Busy(entry.clone())
        }
    }

    /// Resolves when the connection must close to make room for a newer one.
    pub async fn displaced(&self) {
        self.entry.closing.notified().await;
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_are_given_up_to_the_cap() {
        let admission = Admission::new(2);
        let a = admission.admit().await.expect("a place");
        let _b = admission.admit().await.expect("a place");
        assert_eq!(admission.open(), 2);
        drop(a);
        assert_eq!(admission.open(), 1);
    }

    #[tokio::test]
    async fn when_full_the_connection_idle_longest_is_closed_for_the_newcomer() {
        let admission = Arc::new(Admission::new(2));
        let oldest = admission.admit().await.expect("a place");
        let newer = admission.admit().await.expect("a place");
        let admission2 = admission.clone();
        let newcomer = tokio::spawn(async move { admission2.admit().await.is_some() });
        // The oldest is told to close; it lets go of its place as its task ends.
        tokio::time::timeout(Duration::from_secs(1), oldest.displaced())
            .await
            .expect("the oldest idle connection is told to close");
        drop(oldest);
        assert!(
            newcomer.await.expect("joins"),
            "the newcomer gets the place"
        );
        // The newer one was left alone.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), newer.displaced())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_connection_with_a_request_in_progress_is_never_closed_for_room() {
        let admission = Admission::new(1);
        let only = admission.admit().await.expect("a place");
        let busy = only.busy()();
        assert!(
            admission.admit().await.is_none(),
            "refused: every place serves a request"
        );
        drop(busy);
        let admission = Arc::new(admission);
        let admission2 = admission.clone();
        let newcomer = tokio::spawn(async move { admission2.admit().await.is_some() });
        only.displaced().await;
        drop(only);
        assert!(newcomer.await.expect("joins"));
    }
}
