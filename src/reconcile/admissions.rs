//! The turns of tier admission, one per namespace, held in the reconciler's context: what
//! [`super::tier`] admitted or saw deleted a moment ago there, and the lock that makes two
//! admissions in one namespace take turns. Its own module so that the context holds it without
//! depending on the admission step.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::OwnedMutexGuard;

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
/// again (an annotate loop on a Secret that refused connections name costs no SSM call).
#[derive(Debug)]
pub struct Full {
    pub(super) limit: u32,
    pub(super) held: BTreeSet<String>,
    pub(super) at: Instant,
}

/// The turns of admission, one per namespace (by uid) that has admitted anything.
#[derive(Debug, Default)]
pub struct Admissions(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Recent>>>>);

impl Admissions {
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
