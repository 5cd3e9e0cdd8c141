//! What every reconcile shares: the clients, the operator's settings, the event recorder, the
//! metrics, the cache of connections, and one memo per connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};

use super::connections::Connections;

use super::admissions::Admissions;
use super::budget::Budget;
use super::echoes::Echoes;
use super::evidence::Evidence;
use super::queue::Queue;
use super::synced::Synced;
use super::versions::Versions;
use crate::metrics::Metrics;
pub use crate::ownership::MANAGED_BY;
use crate::settings::Settings;
use crate::ssm::{Meta, Ssm};
use crate::verify::step::Verification;

/// What this process remembers about one connection between reconciles.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Memo {
    /// Failed reconciles in a row (for backoff).
    pub failures: u32,
    /// The drift sweep found the parameter's version, modification time or existence differs
    /// from what this process wrote or status records: the next reconcile checks SSM in full.
    pub suspect: bool,
    /// The drift sweep saw the version status records, but status (written by a release that
    /// kept no modification times) records no time: the time it saw, for status to keep.
    pub observed: Option<Meta>,
    /// When status last recorded a new version of a Secret touched without a change of its data
    /// (see `touch`), and whether a later recording is already scheduled.
    pub touch: Option<(std::time::Instant, bool)>,
    /// Refused for its namespace's tier, at this resourceVersion of the connection (after the
    /// status write that said so): until the connection itself changes, the namespace's last
    /// listing that found it full answers for it (see `tier`).
    pub refused_at: Option<String>,
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
        let memo = memos.entry(uid.to_owned()).or_default();
        let answer = f(memo);
        // A memo that remembers nothing is not kept: a fleet at rest holds no memos at all.
        if *memo == Memo::default() {
            memos.remove(uid);
        }
        answer
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

/// The caches a controller scope reads instead of the API server.
pub struct Caches {
    /// The VaultConnections.
    pub connections: Connections,
    /// The opted-in Secrets' resourceVersions.
    pub secrets: Versions,
    /// The namespaces' metadata.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Set once all three are filled.
    pub filled: Filled,
}

/// The "filled" flags of a scope's caches.
#[derive(Debug, Clone, Default)]
pub struct Filled {
    /// The connections.
    pub connections: Synced,
    /// The Secrets' versions.
    pub secrets: Synced,
    /// The namespaces' metadata.
    pub namespaces: Synced,
}

impl Filled {
    /// Resolves once every cache has been filled.
    pub async fn wait(&self) {
        self.connections.wait().await;
        self.secrets.wait().await;
        self.namespaces.wait().await;
    }
}

/// What the reconciles of every scope of one process take turns at.
pub struct Shares {
    /// The budget of parameter deletions.
    pub deletions: Arc<Budget>,
    /// The work queue, with its workers.
    pub queue: Queue,
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
    /// Cache of the VaultConnections this scope watches.
    pub connections: Connections,
    /// Cache of the opted-in Secrets' resourceVersions.
    pub secrets: Versions,
    /// Cache of the namespaces' metadata (their tier labels).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Whether the caches have been filled.
    pub filled: Filled,
    /// One memo per connection.
    pub memos: Memos,
    /// What this process wrote or proved itself, by parameter.
    pub evidence: Evidence,
    /// The turns of tier admission, per namespace.
    pub admissions: Admissions,
    /// The work queue: asks for a reconcile of a connection (a watch event, drift found, a tier
    /// slot freed, a retry), shared by every scope of the process.
    pub queue: Queue,
    /// Credential verification, when on (shared by every scope of the process).
    pub verification: Option<Arc<Verification>>,
    /// The budget of parameter deletions (shared by every scope of the process).
    pub deletions: Arc<Budget>,
    /// This process's status writes whose echo the watch has not brought back yet.
    pub echoes: Echoes,
}

impl Context {
    /// Builds a context.
    pub fn new(
        client: Client,
        ssm: Ssm,
        settings: Settings,
        metrics: Metrics,
        caches: Caches,
        shares: Shares,
    ) -> Context {
        let Shares { deletions, queue } = shares;
        let Caches {
            connections,
            secrets,
            namespaces,
            filled,
        } = caches;
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
            connections,
            secrets,
            namespaces,
            filled,
            memos: Memos::default(),
            evidence: Evidence::default(),
            admissions: Admissions::default(),
            queue,
            verification: None,
            deletions,
            echoes: Echoes::default(),
        }
    }

    /// Shares `echoes` with the watch of connections, which drops the echoes of status writes.
    pub fn with_echoes(mut self, echoes: Echoes) -> Context {
        self.echoes = echoes;
        self
    }

    /// Turns credential verification on (or leaves it off with `None`).
    pub fn with_verification(mut self, verification: Option<Arc<Verification>>) -> Context {
        self.verification = verification;
        self
    }

    /// Marks `uid` for a full check of SSM on its next reconcile.
    pub fn suspect(&self, uid: &str) {
        self.memos.with(uid, |m| m.suspect = true);
    }

    /// Whether `uid` is marked for a full check; clears the mark.
    pub fn take_suspect(&self, uid: &str) -> bool {
        self.memos.with(uid, |m| std::mem::take(&mut m.suspect))
    }

    /// Keeps the sweep's observation of `uid`'s parameter for status to record.
    pub fn observe(&self, uid: &str, seen: Meta) {
        self.memos.with(uid, |m| m.observed = Some(seen));
    }

    /// The sweep's observation of `uid`'s parameter, if any; clears it.
    pub fn take_observed(&self, uid: &str) -> Option<Meta> {
        self.memos.with(uid, |m| m.observed.take())
    }

    /// The uid of namespace `ns`, from the cache.
    pub fn namespace_uid(&self, ns: &str) -> Option<String> {
        self.namespaces
            .get(&ObjectRef::new(ns))
            .and_then(|n| n.metadata.uid.clone())
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

    /// Drops the memos of connections that are no longer in the cache, and the evidence of
    /// parameters no cached connection records.
    pub fn prune(&self) {
        // Evidence is kept by the parameter name the operator derives: `{prefix}/{cluster}/`,
        // then the connection's namespace and name.
        let prefix = format!("{}/{}/", self.settings.prefix, self.settings.cluster);
        self.evidence.retain(|parameter| {
            let connection = parameter
                .strip_prefix(&prefix)
                .and_then(|n| n.split_once('/'));
            connection.is_some_and(|(ns, name)| self.connections.contains(ns, name))
        });
        self.evidence
            .forget_reads_older_than(super::evidence::READS_KEPT);
        // The uids of every connection, only when something is kept by uid (a fleet at rest
        // keeps nothing).
        let kept = !self.memos.is_empty()
            || !self.echoes.is_empty()
            || self.verification.as_ref().is_some_and(|v| !v.is_empty());
        if !kept {
            return;
        }
        let alive: std::collections::HashSet<String> = self
            .connections
            .scan(None, |_, _, entry, _| entry.uid())
            .into_iter()
            .collect();
        let before = self.memos.len();
        self.memos.retain(|uid| alive.contains(uid));
        self.echoes.retain(|uid| alive.contains(uid));
        self.admissions
            .forget_listings_older_than(super::admissions::SETTLE);
        if let Some(verification) = &self.verification {
            verification.retain(|uid| alive.contains(uid));
        }
        let pruned = before.saturating_sub(self.memos.len());
        if pruned > 0 {
            tracing::debug!(pruned, "forgot connections that are gone");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_memo_per_connection_forgotten_in_one_call_or_pruned_when_gone() {
        let memos = Memos::default();
        memos.with("a", |m| m.failures = 2);
        memos.with("b", |m| m.suspect = true);
        memos.with("c", |m| m.failures = 1);
        assert_eq!(memos.with("a", |m| m.failures), 2);
        memos.forget("a");
        assert_eq!(memos.with("a", |m| m.failures), 0, "forgotten");
        assert_eq!(memos.len(), 2, "an empty memo is not kept");
        memos.retain(|uid| uid == "b");
        assert_eq!(memos.len(), 1);
        assert!(memos.with("b", |m| m.suspect), "kept");
    }
}
