//! From the outcome of a reconcile to the status it should leave: the `Ready`, `Valid` and
//! `Synced` conditions (Kubernetes conventions, kstatus-compatible), the parameter, and the
//! last sync time. Pure: the controller writes the result only when it differs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{ParameterStatus, VaultConnectionStatus};

/// Which condition a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The spec, the Secret or the credentials (`Valid`).
    Valid,
    /// Storing the parameter (`Synced`).
    Synced,
}

/// Why a connection is not Ready. `message` comes from a fixed template: never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Where it failed.
    pub stage: Stage,
    /// Condition reason, e.g. `SecretNotFound`.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
    /// Whether a quick retry can help.
    pub transient: bool,
}

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
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Ready { .. } => "Synced",
            Outcome::NotReady(f) => f.reason,
        }
    }
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: Option<&VaultConnectionStatus>,
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    // Keep the transition time while the status stays the same.
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
        condition(t, ok, reason, message, generation, previous, &now)
    };
    let (ready, valid, synced) = match outcome {
        Outcome::Ready { parameter, .. } => {
            let msg = format!(
                "credentials stored in SSM parameter {} (version {})",
                parameter.name, parameter.version
            );
            (
                cond("Ready", true, "Synced", msg.clone()),
                cond(
                    "Valid",
                    true,
                    "Valid",
                    "spec and credentials are valid".into(),
                ),
                cond("Synced", true, "Synced", msg),
            )
        }
        Outcome::NotReady(f) => {
            let ready = cond("Ready", false, f.reason, f.message.clone());
            match f.stage {
                Stage::Valid => (
                    ready,
                    cond("Valid", false, f.reason, f.message.clone()),
                    cond(
                        "Synced",
                        false,
                        f.reason,
                        "nothing written: the connection is not valid".into(),
                    ),
                ),
                Stage::Synced => (
                    ready,
                    cond(
                        "Valid",
                        true,
                        "Valid",
                        "spec and credentials are valid".into(),
                    ),
                    cond("Synced", false, f.reason, f.message.clone()),
                ),
            }
        }
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
        conditions: vec![ready, valid, synced],
        parameter,
        last_sync_time,
        verification: previous.and_then(|p| p.verification.clone()),
    }
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
        }
    }

    fn ready(version: i64, change: Change) -> Outcome {
        Outcome::Ready {
            parameter: parameter(version),
            change,
        }
    }

    fn failure(stage: Stage, reason: &'static str) -> Outcome {
        Outcome::NotReady(Failure {
            stage,
            reason,
            message: "m".into(),
            transient: false,
        })
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
        let s = next(
            Some(&first),
            Some(2),
            &failure(Stage::Valid, "MissingKey"),
            t(20),
        );
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
        let s = next(None, Some(1), &failure(Stage::Synced, "Throttled"), t(5));
        assert_eq!(get(&s, "Valid").status, "True");
        assert_eq!(get(&s, "Synced").reason, "Throttled");
        assert_eq!(get(&s, "Ready").status, "False");
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let a = next(
            None,
            Some(1),
            &failure(Stage::Valid, "SecretNotFound"),
            t(1),
        );
        let b = next(
            Some(&a),
            Some(1),
            &failure(Stage::Valid, "MissingKey"),
            t(2),
        );
        assert_eq!(get(&b, "Ready").last_transition_time, t(1));
        assert_eq!(get(&b, "Ready").reason, "MissingKey");
    }

    #[test]
    fn a_new_version_updates_last_sync_time() {
        let a = next(None, Some(1), &ready(1, Change::Created), t(1));
        let b = next(Some(&a), Some(1), &ready(2, Change::Updated), t(2));
        assert_eq!(b.last_sync_time, Some(t(2)));
        assert_eq!(b.parameter.unwrap().version, 2);
    }
}
