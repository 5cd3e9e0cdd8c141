//! What every reconcile shares: the clients, the operator's settings, the event recorder, the
//! metrics, the cache of connections, and one memo per connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;

use crate::api::VaultConnection;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::ssm::Ssm;
use crate::verify::step::Verification;

/// Value of the `managed-by` tag on every parameter the operator owns, and the name it reports
/// events and status patches under.
pub const MANAGED_BY: &str = "vault-connection-operator";
/// The KMS key used when neither the spec nor the operator names one.
pub const AWS_MANAGED_KEY: &str = "alias/aws/ssm";

/// What the last successful sync of a connection saw. A reconcile that sees the same spec
/// generation, Secret version and parameter version soon after needs no SSM call: nothing that
/// shapes the document changed (the drift check, due later, reads SSM again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    /// Spec generation.
    pub generation: Option<i64>,
    /// The Secret's resourceVersion.
    pub secret_version: Option<String>,
    /// The parameter version found or written.
    pub parameter_version: i64,
}

/// What this process remembers about one connection between reconciles.
#[derive(Debug, Default)]
pub struct Memo {
    /// Failed reconciles in a row (for backoff).
    pub failures: u32,
    /// The last successful sync and when it happened.
    pub confirmed: Option<(Confirmed, Instant)>,
    /// Whether a drift check was already scheduled by this process.
    pub drift_scheduled: bool,
}

/// The memos of all connections, keyed by uid: one map, forgotten in one call.
#[derive(Debug, Default)]
pub struct Memos(Mutex<HashMap<String, Memo>>);

impl Memos {
    /// Runs `f` on the memo of `uid` (created empty if absent).
    pub fn with<T>(&self, uid: &str, f: impl FnOnce(&mut Memo) -> T) -> T {
        // A panic while holding the lock cannot leave a memo half-updated in a way that matters
        // (each is a hint for scheduling), so a poisoned lock is used as it is.
        let mut memos = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(memos.entry(uid.to_owned()).or_default())
    }

    /// Forgets everything about `uid`.
    pub fn forget(&self, uid: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
    }

    /// Keeps only the memos of uids `alive` says still exist (a connection can vanish without
    /// a cleanup, e.g. when its finalizer is removed by hand).
    pub fn retain(&self, alive: impl Fn(&str) -> bool) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|uid, _| alive(uid));
    }

    /// How many connections have a memo.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no connection has a memo.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What every reconcile shares.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// SSM client.
    pub ssm: Ssm,
    /// Settings.
    pub settings: Settings,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// Cache of the VaultConnections this controller watches (for tier order).
    pub store: Store<VaultConnection>,
    /// One memo per connection.
    pub memos: Memos,
    /// Credential verification, when on (shared by every scope of the process).
    pub verification: Option<Arc<Verification>>,
}

impl Context {
    /// Builds a context.
    pub fn new(
        client: Client,
        ssm: Ssm,
        settings: Settings,
        metrics: Metrics,
        store: Store<VaultConnection>,
    ) -> Context {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGED_BY.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Context {
            client,
            ssm,
            settings,
            recorder,
            metrics,
            store,
            memos: Memos::default(),
            verification: None,
        }
    }

    /// Turns credential verification on (or leaves it off with `None`).
    pub fn with_verification(mut self, verification: Option<Arc<Verification>>) -> Context {
        self.verification = verification;
        self
    }

    /// Whether the connection `uid` was confirmed in SSM less than half a drift interval ago
    /// with the same spec generation, Secret version and parameter version as `now`.
    pub fn recently_confirmed(&self, uid: &str, now: &Confirmed) -> bool {
        let fresh = self.settings.drift_interval / 2;
        self.memos.with(uid, |m| {
            m.confirmed
                .as_ref()
                .is_some_and(|(last, at)| at.elapsed() < fresh && last == now)
        })
    }

    /// Remembers a successful sync of `uid`.
    pub fn confirm(&self, uid: &str, seen: Confirmed) {
        self.memos
            .with(uid, |m| m.confirmed = Some((seen, Instant::now())));
    }

    /// Counts a failure of `uid` and returns how many in a row.
    pub fn failed(&self, uid: &str) -> u32 {
        self.memos.with(uid, |m| {
            m.failures = m.failures.saturating_add(1);
            m.failures
        })
    }

    /// Resets the failure count of `uid`.
    pub fn succeeded(&self, uid: &str) {
        self.memos.with(uid, |m| m.failures = 0);
    }

    /// Drops the memos of connections that are no longer in the cache.
    pub fn prune(&self) {
        let alive: std::collections::HashSet<String> = self
            .store
            .state()
            .iter()
            .filter_map(|vc| vc.metadata.uid.clone())
            .collect();
        let before = self.memos.len();
        self.memos.retain(|uid| alive.contains(uid));
        if let Some(verification) = &self.verification {
            verification.retain(|uid| alive.contains(uid));
        }
        let pruned = before.saturating_sub(self.memos.len());
        if pruned > 0 {
            tracing::debug!(pruned, "forgot connections that are gone");
        }
    }

    /// Whether this is the first drift check this process schedules for `uid`.
    pub fn first_check(&self, uid: &str) -> bool {
        self.memos
            .with(uid, |m| !std::mem::replace(&mut m.drift_scheduled, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_memo_per_connection_forgotten_in_one_call_or_pruned_when_gone() {
        let memos = Memos::default();
        memos.with("a", |m| m.failures = 2);
        memos.with("b", |m| m.drift_scheduled = true);
        memos.with("c", |m| m.failures = 1);
        assert_eq!(memos.with("a", |m| m.failures), 2);
        memos.forget("a");
        assert_eq!(memos.with("a", |m| m.failures), 0, "forgotten");
        memos.retain(|uid| uid == "b");
        assert_eq!(memos.len(), 1);
        assert!(memos.with("b", |m| m.drift_scheduled), "kept");
    }
}
