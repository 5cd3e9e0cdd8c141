//! The turns of tier admission, one per namespace, held in the reconciler's context: what
//! [`super::tier`] admitted or saw deleted a moment ago there, and the lock that makes two
//! admissions in one namespace take turns. Its own module so that the context holds it without
//! depending on the admission step.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

/// How long a parameter this process admitted counts as held without SSM's listing showing it
/// (the listing is eventually consistent), and how long a listing that found a namespace full
/// answers for it.
pub(super) const SETTLE: Duration = Duration::from_secs(60);

/// Names admitted a moment ago in one namespace, names deleted a moment ago there, the last
/// listing that found it full, and the turn of admission there.
#[derive(Debug, Default)]
pub struct Recent {
    pub(super) taken: Vec<(String, Instant)>,
    pub(super) gone: Vec<(String, Instant)>,
    pub(super) full: Option<Full>,
}

/// A listing that found the namespace full: until a slot is taken or freed here, the limit
/// changes, or it is a while old, a connection it does not show is refused without listing
/// again if the listing already answered for it (an annotate loop on a Secret that refused
/// connections name costs no SSM call), or if it was cached, at the version it has now, when
/// the listing was taken (5,000 connections refused at once cost one listing, not 5,000).
#[derive(Debug)]
pub struct Full {
    pub(super) limit: u32,
    pub(super) held: BTreeSet<String>,
    pub(super) at: Instant,
    /// The resourceVersion of each connection of the namespace in the cache when the listing
    /// was taken, by uid: a connection changed since (a touch after a retained parameter was
    /// removed by hand) lists again.
    pub(super) cached: HashMap<String, String>,
}

/// The turns of admission, one per namespace (by uid) that has admitted anything.
#[derive(Debug, Default)]
pub struct Admissions(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Recent>>>>);

impl Admissions {
    /// Drops each listing older than `max_age` that no admission holds the turn of, so a full
    /// namespace at rest holds no copy of its connections' versions.
    pub(super) fn forget_listings_older_than(&self, max_age: Duration) {
        let turns = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for turn in turns.values() {
            if let Ok(mut recent) = turn.try_lock()
                && recent
                    .full
                    .as_ref()
                    .is_some_and(|f| f.at.elapsed() >= max_age)
            {
                recent.full = None;
            }
        }
    }

    pub(super) async fn turn(&self, ns: &str) -> OwnedMutexGuard<Recent> {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(ns.to_owned())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}
