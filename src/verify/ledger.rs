//! What verification remembers, so the provider is asked as rarely as the policy allows: a
//! verdict holds for one version of the credentials — one (Secret `resourceVersion`, spec
//! `generation`) pair. Accepted and rejected verdicts are final for that pair (a rejected one is
//! never retried: Infisical locks identities out after repeated failed logins); an unavailable
//! provider is asked again after a delay that doubles from the retry interval up to an hour.
//!
//! Pure bookkeeping with an explicit clock, so the policy is unit-tested here; the reconciler
//! also records final verdicts in status (metadata only) to survive restarts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Verdict;

/// The longest wait between two attempts while a provider stays unavailable.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// One version of a connection's credentials: the Secret's `resourceVersion` and the spec's
/// `generation`, and the value of the connection's `vaultconnections.io/reverify` annotation.
/// Any change of these is new credentials (or a new scope, or a request to ask again) to verify.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// The Secret's `metadata.resourceVersion`.
    pub secret: Option<String>,
    /// The VaultConnection's `metadata.generation`.
    pub generation: Option<i64>,
    /// The connection's request to verify again (the reverify annotation's value).
    pub request: Option<String>,
}

#[derive(Debug, Clone)]
enum Entry {
    Final(Verdict),
    Waiting {
        last: Verdict,
        attempts: u32,
        next: Instant,
    },
}

/// What to do about a connection's credentials now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ask the provider.
    Ask,
    /// Do not ask: this is the answer (final, or the last "unavailable" while waiting to retry).
    Known(Verdict),
}

/// Verdicts by connection uid, each for one credentials [`Version`].
#[derive(Debug)]
pub struct Ledger {
    retry_base: Duration,
    entries: Mutex<HashMap<String, (Version, Entry)>>,
}

impl Ledger {
    /// A ledger whose first retry after an unavailable provider comes `retry_base` later.
    pub fn new(retry_base: Duration) -> Ledger {
        Ledger {
            retry_base,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Version, Entry)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether to ask the provider about `uid`'s credentials at `version`. `recorded` is a final
    /// verdict status holds for this same version (it survives restarts).
    pub fn decide(
        &self,
        uid: &str,
        version: &Version,
        recorded: Option<Verdict>,
        now: Instant,
    ) -> Decision {
        let mut entries = self.entries();
        match entries.get(uid) {
            Some((v, Entry::Final(verdict))) if v == version => {
                return Decision::Known(verdict.clone());
            }
            Some((v, Entry::Waiting { last, next, .. })) if v == version && now < *next => {
                return Decision::Known(last.clone());
            }
            _ => {}
        }
        if let Some(verdict) = recorded.filter(|v| !v.is_transient()) {
            entries.insert(
                uid.to_owned(),
                (version.clone(), Entry::Final(verdict.clone())),
            );
            return Decision::Known(verdict);
        }
        Decision::Ask
    }

    /// Records the provider's answer for `uid` at `version`; for an unavailable provider,
    /// returns how long until it may be asked again.
    pub fn record(
        &self,
        uid: &str,
        version: &Version,
        verdict: &Verdict,
        now: Instant,
    ) -> Option<Duration> {
        let mut entries = self.entries();
        if !verdict.is_transient() {
            entries.insert(
                uid.to_owned(),
                (version.clone(), Entry::Final(verdict.clone())),
            );
            return None;
        }
        let attempts = match entries.get(uid) {
            Some((v, Entry::Waiting { attempts, .. })) if v == version => attempts + 1,
            _ => 1,
        };
        let delay = self
            .retry_base
            .saturating_mul(1u32 << (attempts - 1).min(16))
            .min(MAX_RETRY_DELAY.max(self.retry_base));
        entries.insert(
            uid.to_owned(),
            (
                version.clone(),
                Entry::Waiting {
                    last: verdict.clone(),
                    attempts,
                    next: now + delay,
                },
            ),
        );
        Some(delay)
    }

    /// How long until `uid`'s unavailable verdict may be retried, if it is waiting.
    pub fn retry_in(&self, uid: &str, now: Instant) -> Option<Duration> {
        match self.entries().get(uid) {
            Some((_, Entry::Waiting { next, .. })) => Some(next.saturating_duration_since(now)),
            _ => None,
        }
    }

    /// Forgets `uid` (the connection was deleted).
    pub fn forget(&self, uid: &str) {
        self.entries().remove(uid);
    }

    /// Keeps only the entries of uids `alive` says still exist.
    pub fn retain(&self, alive: impl Fn(&str) -> bool) {
        self.entries().retain(|uid, _| alive(uid));
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::VaultType;
    use crate::providers::infisical;
    use crate::verify::Cause;

    fn version(secret: &str, generation: i64) -> Version {
        Version {
            secret: Some(secret.into()),
            generation: Some(generation),
            request: None,
        }
    }

    fn accepted() -> Verdict {
        Verdict::Accepted {
            provider: VaultType::Infisical,
        }
    }

    fn rejected() -> Verdict {
        Verdict::Rejected {
            provider: VaultType::Infisical,
            check: infisical::LOGIN,
            status: 401,
        }
    }

    fn unavailable() -> Verdict {
        Verdict::Unavailable {
            provider: VaultType::Infisical,
            check: infisical::LOGIN,
            cause: Cause::RateLimited,
        }
    }

    #[test]
    fn an_accepted_or_rejected_verdict_is_final_for_the_same_credentials() {
        let ledger = Ledger::new(Duration::from_secs(900));
        let t = Instant::now();
        for verdict in [accepted(), rejected()] {
            let v = version("10", 1);
            assert_eq!(ledger.decide("uid", &v, None, t), Decision::Ask);
            assert_eq!(ledger.record("uid", &v, &verdict, t), None);
            let much_later = t + Duration::from_secs(86_400 * 30);
            assert_eq!(
                ledger.decide("uid", &v, None, much_later),
                Decision::Known(verdict)
            );
            ledger.forget("uid");
        }
    }

    #[test]
    fn a_new_secret_version_or_spec_generation_is_asked_again() {
        let ledger = Ledger::new(Duration::from_secs(900));
        let t = Instant::now();
        ledger.record("uid", &version("10", 1), &rejected(), t);
        assert_eq!(
            ledger.decide("uid", &version("11", 1), None, t),
            Decision::Ask
        );
        assert_eq!(
            ledger.decide("uid", &version("10", 2), None, t),
            Decision::Ask
        );
    }

    #[test]
    fn a_verdict_recorded_in_status_is_used_after_a_restart() {
        let ledger = Ledger::new(Duration::from_secs(900));
        let t = Instant::now();
        let v = version("10", 1);
        assert_eq!(
            ledger.decide("uid", &v, Some(rejected()), t),
            Decision::Known(rejected())
        );
        assert_eq!(
            ledger.decide("uid", &v, Some(unavailable()), t),
            Decision::Known(rejected()),
            "remembered in memory from then on"
        );
        let fresh = Ledger::new(Duration::from_secs(900));
        assert_eq!(
            fresh.decide("uid", &v, Some(unavailable()), t),
            Decision::Ask
        );
    }

    #[test]
    fn an_unavailable_provider_is_retried_with_doubling_delays_capped_at_an_hour() {
        let ledger = Ledger::new(Duration::from_secs(900));
        let v = version("10", 1);
        let mut t = Instant::now();
        let mut delays = vec![];
        let mut asked = 0;
        // Simulate a day of reconciles every minute while the provider stays down.
        for _ in 0..(24 * 60) {
            if ledger.decide("uid", &v, None, t) == Decision::Ask {
                asked += 1;
                delays.push(ledger.record("uid", &v, &unavailable(), t).unwrap());
            }
            t += Duration::from_secs(60);
        }
        let minutes: Vec<u64> = delays.iter().take(4).map(|d| d.as_secs() / 60).collect();
        assert_eq!(minutes, [15, 30, 60, 60]);
        assert!(asked <= 4 + 24, "at most a few attempts an hour: {asked}");
        assert_eq!(
            ledger.decide("uid", &v, None, t),
            Decision::Known(unavailable()),
            "waiting: the last verdict stands"
        );
        assert!(ledger.retry_in("uid", t).is_some());
    }

    #[test]
    fn success_after_unavailability_is_final() {
        let ledger = Ledger::new(Duration::from_secs(1));
        let v = version("10", 1);
        let t = Instant::now();
        ledger.record("uid", &v, &unavailable(), t);
        let later = t + Duration::from_secs(2);
        assert_eq!(ledger.decide("uid", &v, None, later), Decision::Ask);
        ledger.record("uid", &v, &accepted(), later);
        assert_eq!(ledger.retry_in("uid", later), None);
        assert_eq!(
            ledger.decide("uid", &v, None, later),
            Decision::Known(accepted())
        );
    }
}
