//! The turns of tier admission, one per namespace, held in the reconciler's context: what
//! [`super::tier`] admitted or saw deleted a moment ago there, and the lock that makes two
//! admissions in one namespace take turns. Its own module so that the context holds it without
//! depending on the admission step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::OwnedMutexGuard;

/// Names admitted a moment ago in one namespace, names deleted a moment ago there, and the turn
/// of admission there.
#[derive(Debug, Default)]
pub struct Recent {
    pub(super) taken: Vec<(String, Instant)>,
    pub(super) gone: Vec<(String, Instant)>,
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
