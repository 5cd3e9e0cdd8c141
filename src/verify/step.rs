//! The verification step of a reconcile: decides from the ledger (and the record in status)
//! whether the provider must be asked, asks it at most once, and says what the reconcile should
//! do with the answer — stop before writing (rejected), or write and retry verification later
//! (unavailable), or just write. Also builds the `Verified` condition.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::ledger::{Decision, Ledger, Version};
use super::{Verdict, Verifier};
pub use crate::api::reverify_request;
use crate::api::{VaultConnection, VaultConnectionStatus, VerificationStatus};
use crate::providers::Provider;

/// The condition type verification reports.
pub const VERIFIED: &str = "Verified";

/// Verification as the reconciler holds it: the client and what it remembers.
pub struct Verification {
    /// Asks the providers.
    pub verifier: Verifier,
    /// Remembers their answers.
    pub ledger: Ledger,
}

/// The answer for one reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The verdict (asked now, or remembered).
    pub verdict: Verdict,
    /// What `status.verification` should hold afterwards.
    pub record: Option<VerificationStatus>,
    /// For an unavailable provider: when verification may be tried again.
    pub retry_in: Option<Duration>,
}

impl Checked {
    /// Whether the credentials must not be written.
    pub fn blocks_write(&self) -> bool {
        matches!(self.verdict, Verdict::Rejected { .. })
    }
}

impl Verification {
    /// A verification step with `verifier`, retrying an unavailable provider after
    /// `retry_interval` (doubling up to an hour).
    pub fn new(verifier: Verifier, retry_interval: Duration) -> Verification {
        Verification {
            verifier,
            ledger: Ledger::new(retry_interval),
        }
    }

    /// Verifies `provider`'s credentials for `vc`, whose Secret is at `secret_version` — or
    /// recalls the answer for these same credentials.
    pub async fn check(
        &self,
        vc: &VaultConnection,
        provider: &Provider,
        secret_version: Option<&str>,
    ) -> Checked {
        let uid = vc.uid().unwrap_or_default();
        let version = Version {
            secret: secret_version.map(str::to_owned),
            generation: vc.metadata.generation,
            request: reverify_request(vc),
        };
        let previous = vc
            .status
            .as_ref()
            .and_then(|s| s.verification.as_deref().cloned());
        let recorded = previous
            .as_ref()
            .and_then(|r| Verdict::from_record(r, provider.vault_type(), &version));
        let now = Instant::now();
        let verdict = match self.ledger.decide(&uid, &version, recorded, now) {
            Decision::Known(verdict) => verdict,
            Decision::Ask => {
                let verdict = self.verifier.verify(provider).await;
                self.ledger.record(&uid, &version, &verdict, Instant::now());
                tracing::info!(
                    namespace = vc.namespace().unwrap_or_default(),
                    name = vc.name_any(),
                    verdict = verdict.reason(),
                    "asked the provider about the credentials"
                );
                verdict
            }
        };
        Checked {
            record: verdict.to_record(&version).or(previous),
            retry_in: self.ledger.retry_in(&uid, Instant::now()),
            verdict,
        }
    }

    /// Forgets `vc` (deleted).
    pub fn forget(&self, uid: &str) {
        self.ledger.forget(uid);
    }

    /// Keeps only what it knows of uids `alive` says still exist.
    pub fn retain(&self, alive: impl Fn(&str) -> bool) {
        self.ledger.retain(alive);
    }

    /// Whether it knows nothing of any connection.
    pub fn is_empty(&self) -> bool {
        self.ledger.is_empty()
    }
}

/// The `Verified` condition for `verdict` on an object at `generation`, keeping the transition
/// time while the status stays the same.
pub fn condition(
    verdict: &Verdict,
    generation: Option<i64>,
    previous: Option<&VaultConnectionStatus>,
    now: &Time,
) -> Condition {
    crate::status::condition(
        VERIFIED,
        verdict.condition_status(),
        verdict.reason(),
        verdict.message(),
        generation,
        previous,
        now,
    )
}
