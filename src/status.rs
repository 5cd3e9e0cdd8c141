//! From the outcome of a reconcile to the status it should leave: the `Ready`, `Valid` and
//! `Synced` conditions (Kubernetes conventions), kstatus's `Stalled` and `Reconciling`, the
//! parameter, and the last sync time. Pure: the controller writes the result only when it differs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{ParameterStatus, VaultConnection, VaultConnectionStatus};
use crate::reason::{Reason, Stage};

/// Why a connection is not Ready. `message` comes from a fixed template: never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Condition reason; it also says which condition failed and whether a retry can help.
    pub reason: Reason,
    /// What is wrong and what to do.
    pub message: String,
}

impl Failure {
    /// A failure with `reason` and a message from a fixed template.
    pub fn new(reason: Reason, message: impl Into<String>) -> Failure {
        Failure {
            reason,
            message: message.into(),
        }
    }

    /// Which condition failed.
    pub fn stage(&self) -> Stage {
        self.reason.stage().unwrap_or(Stage::Synced)
    }

    /// Whether a quick retry can help.
    pub fn transient(&self) -> bool {
        self.reason.is_transient()
    }
}

/// The condition that is True while a problem needs a person (kstatus: Failed).
pub const STALLED: &str = "Stalled";
/// The condition that is True while the operator retries a transient failure (kstatus:
/// InProgress).
pub const RECONCILING: &str = "Reconciling";

/// The `Valid` condition's message while the connection is valid.
pub const MESSAGE_VALID: &str = "spec and credentials are valid";
/// The `Synced` condition's message while the connection is not valid.
pub const MESSAGE_NOT_WRITTEN: &str = "nothing written: the connection is not valid";
/// The `Stalled` condition's message while the connection is Ready.
pub const MESSAGE_NOTHING_NEEDED: &str = "nothing needs a person";
/// The `Reconciling` condition's message while the connection is Ready.
pub const MESSAGE_CURRENT: &str = "the parameter holds the current credentials";
/// The `Stalled` condition's message while the operator retries a transient failure.
pub const MESSAGE_RETRYING: &str = "the operator retries by itself";
/// The `Reconciling` condition's message while a person must act.
pub const MESSAGE_NEEDS_A_CHANGE: &str = "retrying cannot help until something changes";
/// Every fixed message a condition can carry (the others name the parameter or the failure).
pub const FIXED_MESSAGES: [&str; 6] = [
    MESSAGE_VALID,
    MESSAGE_NOT_WRITTEN,
    MESSAGE_NOTHING_NEEDED,
    MESSAGE_CURRENT,
    MESSAGE_RETRYING,
    MESSAGE_NEEDS_A_CHANGE,
];
/// The types of the conditions the operator writes, in the order it writes them.
pub const CONDITION_TYPES: [&str; 5] = ["Ready", "Valid", "Synced", STALLED, RECONCILING];

/// What the operator did to the parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing: it already held the current document.
    None,
    /// Created it.
    Created,
    /// Wrote a new version.
    Updated,
    /// Took over a parameter that already held the current document and was ours by tags.
    Adopted,
}

/// The result of one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The parameter holds the current credentials.
    Ready {
        /// The parameter as stored.
        parameter: ParameterStatus,
        /// What was done to get there.
        change: Change,
    },
    /// Something stops the connection from being Ready.
    NotReady(Failure),
}

impl Outcome {
    /// The `Ready` condition's reason.
    pub fn reason(&self) -> Reason {
        match self {
            Outcome::Ready { .. } => Reason::Synced,
            Outcome::NotReady(f) => f.reason,
        }
    }
}

/// A condition of `type_` with `status` ("True", "False" or "Unknown"), keeping the previous
/// transition time while the status stays the same.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: Option<&VaultConnectionStatus>,
    now: &Time,
) -> Condition {
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// The status a reconcile with `outcome` should leave on an object at `generation`.
pub fn next(
    previous: Option<&VaultConnectionStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    now: Time,
) -> VaultConnectionStatus {
    let cond = |t, ok, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        condition(t, status, reason, message, generation, previous, &now)
    };
    let (ready, valid, synced) = match outcome {
        Outcome::Ready { parameter, .. } => {
            let msg = format!(
                "credentials stored in SSM parameter {} (version {})",
                parameter.name, parameter.version
            );
            (
                cond("Ready", true, Reason::Synced.as_str(), msg.clone()),
                cond("Valid", true, "Valid", MESSAGE_VALID.into()),
                cond("Synced", true, Reason::Synced.as_str(), msg),
            )
        }
        Outcome::NotReady(f) => {
            let reason = f.reason.as_str();
            let ready = cond("Ready", false, reason, f.message.clone());
            match f.stage() {
                Stage::Valid => (
                    ready,
                    cond("Valid", false, reason, f.message.clone()),
                    cond("Synced", false, reason, MESSAGE_NOT_WRITTEN.into()),
                ),
                Stage::Synced => (
                    ready,
                    cond("Valid", true, "Valid", MESSAGE_VALID.into()),
                    cond("Synced", false, reason, f.message.clone()),
                ),
            }
        }
    };
    // kstatus's abnormal-true pair: Stalled when a person must act, Reconciling while the
    // operator retries by itself. (A spec change not yet observed shows as observedGeneration
    // below generation, which kstatus reads as in progress on its own.)
    let (stalled, reconciling) = match outcome {
        Outcome::Ready { .. } => (
            cond(
                STALLED,
                false,
                Reason::Synced.as_str(),
                MESSAGE_NOTHING_NEEDED.into(),
            ),
            cond(
                RECONCILING,
                false,
                Reason::Synced.as_str(),
                MESSAGE_CURRENT.into(),
            ),
        ),
        Outcome::NotReady(f) if f.transient() => (
            cond(STALLED, false, f.reason.as_str(), MESSAGE_RETRYING.into()),
            cond(RECONCILING, true, f.reason.as_str(), f.message.clone()),
        ),
        Outcome::NotReady(f) => (
            cond(STALLED, true, f.reason.as_str(), f.message.clone()),
            cond(
                RECONCILING,
                false,
                f.reason.as_str(),
                MESSAGE_NEEDS_A_CHANGE.into(),
            ),
        ),
    };
    let previous_parameter = previous.and_then(|p| p.parameter.clone());
    let previous_sync = previous.and_then(|p| p.last_sync_time.clone());
    let (parameter, last_sync_time) = match outcome {
        Outcome::Ready { parameter, change } => {
            let synced_now = *change != Change::None || previous_sync.is_none();
            (
                Some(parameter.clone()),
                if synced_now {
                    Some(now.clone())
                } else {
                    previous_sync
                },
            )
        }
        Outcome::NotReady(_) => (previous_parameter, previous_sync),
    };
    VaultConnectionStatus {
        observed_generation: generation,
        conditions: vec![ready, valid, synced, stalled, reconciling],
        parameter,
        last_sync_time,
        verification: previous.and_then(|p| p.verification.clone()),
    }
}

/// Drops what a cache need not hold of a Ready status: the messages of its five standard
/// conditions, which follow from their reasons and the parameter (`next` writes them again on
/// every patch). A status that is not Ready keeps everything: its messages say what to fix.
/// Compare a fresh status with a cached one only after passing both through this.
pub fn drop_derived_messages(status: &mut VaultConnectionStatus) {
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return;
    }
    for c in &mut status.conditions {
        if CONDITION_TYPES.contains(&c.type_.as_str()) {
            c.message = String::new();
        }
    }
}

/// A connection's Ready condition, if it has one.
pub fn ready_condition(vc: &VaultConnection) -> Option<&Condition> {
    vc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The reason of a connection's Ready condition, if it has one.
pub fn ready_reason(vc: &VaultConnection) -> Option<&str> {
    ready_condition(vc).map(|c| c.reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    fn parameter(version: i64) -> ParameterStatus {
        ParameterStatus {
            name: "/p/c/ns/n".into(),
            version,
            tier: "Standard".into(),
            kms_key_id: Some("alias/aws/ssm".into()),
            ..ParameterStatus::default()
        }
    }

    fn ready(version: i64, change: Change) -> Outcome {
        Outcome::Ready {
            parameter: parameter(version),
            change,
        }
    }

    fn failure(reason: Reason) -> Outcome {
        Outcome::NotReady(Failure::new(reason, "m"))
    }

    fn get<'a>(s: &'a VaultConnectionStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn ready_sets_all_three_conditions_true_with_observed_generation() {
        let s = next(None, Some(3), &ready(1, Change::Created), t(10));
        for c in ["Ready", "Valid", "Synced"] {
            assert_eq!(get(&s, c).status, "True");
            assert_eq!(get(&s, c).observed_generation, Some(3));
        }
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.last_sync_time, Some(t(10)));
        assert_eq!(s.parameter, Some(parameter(1)));
    }

    #[test]
    fn an_unchanged_outcome_gives_an_identical_status() {
        let first = next(None, Some(1), &ready(1, Change::Created), t(10));
        let again = next(Some(&first), Some(1), &ready(1, Change::None), t(99));
        assert_eq!(first, again, "no status write when nothing changed");
    }

    #[test]
    fn a_validation_failure_marks_valid_and_synced_false_and_keeps_the_parameter() {
        let first = next(None, Some(1), &ready(4, Change::Created), t(10));
        let s = next(Some(&first), Some(2), &failure(Reason::MissingKey), t(20));
        assert_eq!(get(&s, "Ready").reason, "MissingKey");
        assert_eq!(get(&s, "Valid").status, "False");
        assert_eq!(get(&s, "Synced").status, "False");
        assert_eq!(get(&s, "Ready").last_transition_time, t(20));
        assert_eq!(
            s.parameter,
            Some(parameter(4)),
            "last known parameter is kept"
        );
        assert_eq!(s.last_sync_time, Some(t(10)));
    }

    #[test]
    fn a_sync_failure_keeps_valid_true() {
        let s = next(None, Some(1), &failure(Reason::Throttled), t(5));
        assert_eq!(get(&s, "Valid").status, "True");
        assert_eq!(get(&s, "Synced").reason, "Throttled");
        assert_eq!(get(&s, "Ready").status, "False");
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let a = next(None, Some(1), &failure(Reason::SecretNotFound), t(1));
        let b = next(Some(&a), Some(1), &failure(Reason::MissingKey), t(2));
        assert_eq!(get(&b, "Ready").last_transition_time, t(1));
        assert_eq!(get(&b, "Ready").reason, "MissingKey");
    }

    #[test]
    fn every_failure_reason_lands_on_ready_and_on_its_own_condition() {
        for reason in Reason::ALL {
            let Some(stage) = reason.stage() else {
                continue;
            };
            let s = next(None, Some(1), &failure(reason), t(1));
            assert_eq!(get(&s, "Ready").reason, reason.as_str());
            assert_eq!(get(&s, "Ready").status, "False");
            let own = match stage {
                Stage::Valid => "Valid",
                Stage::Synced => "Synced",
            };
            assert_eq!(get(&s, own).reason, reason.as_str(), "{reason}");
            assert_eq!(get(&s, own).status, "False", "{reason}");
        }
    }

    #[test]
    fn ready_is_neither_stalled_nor_reconciling() {
        let s = next(None, Some(2), &ready(1, Change::Created), t(1));
        for c in [STALLED, RECONCILING] {
            assert_eq!(get(&s, c).status, "False", "{c}");
            assert_eq!(get(&s, c).observed_generation, Some(2), "{c}");
        }
    }

    #[test]
    fn a_permanent_failure_stalls_and_a_transient_one_reconciles() {
        for reason in Reason::ALL.into_iter().filter(|r| r.stage().is_some()) {
            let s = next(None, Some(3), &failure(reason), t(1));
            let (stalled, reconciling) = (get(&s, STALLED), get(&s, RECONCILING));
            let expect = |transient: bool| if transient { "True" } else { "False" };
            assert_eq!(stalled.status, expect(!reason.is_transient()), "{reason}");
            assert_eq!(
                reconciling.status,
                expect(reason.is_transient()),
                "{reason}"
            );
            for c in [stalled, reconciling] {
                assert_eq!(c.reason, reason.as_str());
                assert_eq!(c.observed_generation, Some(3));
            }
            let on = if reason.is_transient() {
                reconciling
            } else {
                stalled
            };
            assert_eq!(
                on.message, "m",
                "the True one carries the failure's message"
            );
        }
    }

    #[test]
    fn a_new_version_updates_last_sync_time() {
        let a = next(None, Some(1), &ready(1, Change::Created), t(1));
        let b = next(Some(&a), Some(1), &ready(2, Change::Updated), t(2));
        assert_eq!(b.last_sync_time, Some(t(2)));
        assert_eq!(b.parameter.unwrap().version, 2);
    }

    #[test]
    fn a_ready_status_caches_without_derived_messages_and_compares_equal() {
        let first = next(None, Some(1), &ready(3, Change::Created), t(10));
        let mut cached = first.clone();
        drop_derived_messages(&mut cached);
        assert!(cached.conditions.iter().all(|c| c.message.is_empty()));
        assert_eq!(cached.parameter, first.parameter, "only messages go");
        // A later reconcile with nothing changed computes the same status from the cached one.
        let mut again = next(Some(&cached), Some(1), &ready(3, Change::None), t(20));
        drop_derived_messages(&mut again);
        assert_eq!(again, cached);
        // A new version is a difference.
        let mut rotated = next(Some(&cached), Some(1), &ready(4, Change::Updated), t(30));
        drop_derived_messages(&mut rotated);
        assert_ne!(rotated, cached);
        // A status that is not Ready keeps its messages.
        let failure = Failure::new(Reason::SecretNotFound, "Secret s not found");
        let mut failed = next(Some(&first), Some(1), &Outcome::NotReady(failure), t(40));
        let kept = failed.clone();
        drop_derived_messages(&mut failed);
        assert_eq!(failed, kept);
    }
}
