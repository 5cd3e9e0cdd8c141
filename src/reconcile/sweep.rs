//! The drift sweep: once per drift interval, compare the version and modification time of every
//! Ready connection's parameter in SSM with those of the operator's own last write — ten names
//! per `GetParameters` call, without decryption (no KMS call; the encrypted values are dropped
//! unread). Every write changes the pair, and a version alone can repeat (a parameter deleted and
//! put again restarts at version 1) but not with the same time, so a parameter changed, deleted,
//! replaced or restored out of band shows up here, and only its connection gets the full check
//! (tags first, then repair — or `ParameterNotOwned` when it is no longer tagged ours). What
//! this process wrote itself is compared with its own memory; status is the record at rest
//! (after a restart). A fleet at rest costs one SSM call per ten connections per interval.
//!
//! The first sweep after start runs at once, as fast as the read budget allows: it is how a
//! restarted operator learns that nothing changed while it was away. Later sweeps spread their
//! calls over the interval, so rotations never queue behind a burst of checks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use super::compact::{Common, Compact};
use super::context::Context;
use crate::api::VaultConnection;
use crate::ssm::{Meta, SsmError, VERSIONS_PER_CALL};

/// A parameter the sweep compares: its connection and what status records of the last write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The connection.
    pub connection: ObjectRef<VaultConnection>,
    /// The parameter's name.
    pub parameter: String,
    /// The version and modification time status records.
    pub recorded: Meta,
}

/// What the sweep found for one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// SSM holds the operator's last write (same version and modification time).
    Unchanged,
    /// SSM holds the recorded version, and the record (from a release that kept no times) has
    /// no modification time: status is completed with the time SSM shows.
    Unrecorded,
    /// SSM holds another write: someone else's.
    Changed,
    /// The parameter is gone.
    Missing,
}

impl Found {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Found::Unchanged | Found::Unrecorded => "unchanged",
            Found::Changed => "changed",
            Found::Missing => "missing",
        }
    }
}

/// The parameter the status of connection `name` in `ns` (cached as `entry`) says it synced,
/// if the connection is Ready and alive.
pub fn due(ns: &str, name: &str, entry: &Compact, common: &Common) -> Option<Due> {
    if entry.deleting() || !entry.readiness()?.ready {
        return None;
    }
    let p = entry.parameter(ns, name, common)?;
    Some(Due {
        connection: ObjectRef::new(name).within(ns),
        parameter: p.name,
        recorded: Meta {
            version: p.version,
            modified: p.last_modified,
        },
    })
}

/// Compares what SSM holds for one parameter (`None`: missing) with the last write as expected.
pub fn compare(expected: &Meta, in_ssm: Option<&Meta>) -> Found {
    match in_ssm {
        None => Found::Missing,
        Some(seen) if seen.version != expected.version => Found::Changed,
        Some(seen) => match (&expected.modified, &seen.modified) {
            (Some(e), Some(s)) if e == s => Found::Unchanged,
            (None, _) => Found::Unrecorded,
            _ => Found::Changed,
        },
    }
}

/// Runs the sweep for as long as the controller runs: every connection whose parameter differs
/// is marked for a full check and handed to the controller. Memos of connections that are gone are
/// dropped after each sweep.
pub async fn run(ctx: Arc<Context>) {
    ctx.filled.wait().await;
    let interval = ctx.settings.drift_interval;
    let mut spread = false;
    loop {
        let started = Instant::now();
        sweep(&ctx, spread.then_some(interval)).await;
        ctx.prune();
        spread = true;
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
}

/// One sweep over every Ready connection in the cache, its calls spread over `within` (or as
/// fast as the read budget allows with `None`).
async fn sweep(ctx: &Context, within: Option<Duration>) {
    // The names of every cached connection (shared with the cache, not copied), each made a
    // `Due` only when its batch comes: a sweep of a large fleet holds one batch of records at a
    // time, not one per connection.
    let listed = ctx.connections.keys();
    let due_now = |(ns, name): &(Arc<str>, Arc<str>)| {
        let found = ctx
            .connections
            .with(ns, name, |entry, common| due(ns, name, entry, common));
        found.flatten()
    };
    let ready = ctx.connections.scan(None, |ns, name, entry, common| {
        due(ns, name, entry, common).map(drop)
    });
    let batches = ready.len().div_ceil(VERSIONS_PER_CALL);
    // Nine tenths of the interval, so one sweep ends before the next begins.
    let gap = within.map_or(Duration::ZERO, |w| {
        w.mul_f64(0.9) / u32::try_from(batches.max(1)).unwrap_or(u32::MAX)
    });
    // Batches keep a schedule (the k-th k × gap after the start), so the calls' own round trips
    // do not stretch a sweep past its interval: a batch that is behind goes at once.
    let started = tokio::time::Instant::now();
    let mut next = started;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut pending = listed.iter().filter_map(due_now);
    let mut checked = 0;
    loop {
        let batch: Vec<Due> = pending.by_ref().take(VERSIONS_PER_CALL).collect();
        if batch.is_empty() {
            break;
        }
        checked += batch.len();
        let names: Vec<String> = batch.iter().map(|d| d.parameter.clone()).collect();
        let held = match ctx.ssm.metadata(&names).await {
            Ok(v) => v,
            Err(e) => {
                // These are checked again next sweep; a throttled account gets a breather.
                tracing::warn!(error = %e, "drift check failed for {} parameters", names.len());
                if matches!(e, SsmError::Throttled { .. }) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        for d in &batch {
            // Compare with this process's own write when it made one, else with the freshest
            // status (a rotation may have landed since the listing).
            let (ns, name) = (
                d.connection.namespace.as_deref().unwrap_or_default(),
                &d.connection.name,
            );
            let cached = ctx.connections.with(ns, name, |entry, common| {
                (
                    due(ns, name, entry, common),
                    entry.uid().unwrap_or_default(),
                )
            });
            let expected = ctx.evidence.meta(&d.parameter).unwrap_or_else(|| {
                cached
                    .as_ref()
                    .and_then(|(now, _)| now.as_ref())
                    .filter(|now| now.parameter == d.parameter)
                    .map_or_else(|| d.recorded.clone(), |now| now.recorded.clone())
            });
            let seen = held.get(&d.parameter);
            let found = compare(&expected, seen);
            ctx.metrics.drift_checked(found.as_str());
            *counts.entry(found.as_str()).or_default() += 1;
            let Some((_, uid)) = cached else { continue };
            match found {
                Found::Unchanged => continue,
                Found::Unrecorded => {
                    if let Some(seen) = seen {
                        ctx.observe(&uid, seen.clone());
                    }
                }
                Found::Changed | Found::Missing => {
                    ctx.evidence.forget(&d.parameter);
                    ctx.suspect(&uid);
                    tracing::warn!(
                        namespace = d.connection.namespace.as_deref().unwrap_or_default(),
                        name = d.connection.name,
                        parameter = d.parameter,
                        found = found.as_str(),
                        "drift: the parameter is not the operator's last write; checking it in full"
                    );
                }
            }
            ctx.queue.push_ref(&d.connection);
        }
        next += gap;
        tokio::time::sleep_until(next).await;
    }
    tracing::debug!(
        connections = checked,
        calls = checked.div_ceil(VERSIONS_PER_CALL),
        took_ms = started.elapsed().as_millis() as u64,
        ?counts,
        "drift sweep done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(version: i64, modified: Option<&str>) -> Meta {
        Meta {
            version,
            modified: modified.map(str::to_owned),
        }
    }

    #[test]
    fn anything_but_the_last_write_itself_means_a_full_check() {
        let ours = meta(3, Some("2026-01-01T00:00:00.25Z"));
        assert_eq!(compare(&ours, Some(&ours)), Found::Unchanged);
        assert_eq!(
            compare(&ours, Some(&meta(4, Some("2026-01-01T00:09:00Z")))),
            Found::Changed
        );
        assert_eq!(
            compare(&ours, Some(&meta(2, Some("2026-01-01T00:09:00Z")))),
            Found::Changed,
            "an older value restored"
        );
        assert_eq!(
            compare(&ours, Some(&meta(3, Some("2026-01-01T00:09:00Z")))),
            Found::Changed,
            "deleted and put again until the version repeats"
        );
        assert_eq!(compare(&ours, Some(&meta(3, None))), Found::Changed);
        assert_eq!(compare(&ours, None), Found::Missing);
    }

    #[test]
    fn a_record_without_a_time_is_completed_only_when_the_version_is_the_same() {
        let old = meta(3, None);
        let seen = meta(3, Some("2026-01-01T00:00:00Z"));
        assert_eq!(compare(&old, Some(&seen)), Found::Unrecorded);
        assert_eq!(Found::Unrecorded.as_str(), "unchanged");
        assert_eq!(
            compare(&old, Some(&meta(4, Some("2026-01-01T00:00:00Z")))),
            Found::Changed
        );
    }

    #[test]
    fn only_ready_live_connections_with_a_recorded_parameter_are_due() {
        let spec = serde_json::from_value(serde_json::json!({
            "vaultType": "onepassword",
            "credentialsSecretRef": {"name": "s"}
        }))
        .unwrap();
        let mut vc = VaultConnection::new("db", spec);
        vc.metadata.namespace = Some("team".into());
        let common = Common::default();
        let due = |vc: &VaultConnection| due("team", "db", &Compact::new(vc, &common), &common);
        assert_eq!(due(&vc), None, "no status");
        let condition = |status: &str| k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: "Synced".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::UNIX_EPOCH,
            ),
        };
        vc.status = Some(crate::api::VaultConnectionStatus {
            conditions: vec![condition("True")],
            parameter: Some(crate::api::ParameterStatus {
                name: "/p/c/team/db".into(),
                version: 7,
                ..Default::default()
            }),
            ..Default::default()
        });
        let d = due(&vc).expect("due");
        assert_eq!(
            (d.parameter.as_str(), d.recorded.version),
            ("/p/c/team/db", 7)
        );
        assert_eq!(d.connection.namespace.as_deref(), Some("team"));
        if let Some(s) = vc.status.as_mut() {
            s.conditions = vec![condition("False")];
        }
        assert_eq!(due(&vc), None, "not Ready");
        if let Some(s) = vc.status.as_mut() {
            s.conditions = vec![condition("True")];
        }
        vc.metadata.deletion_timestamp = vc.status.as_ref().map(|_| {
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH)
        });
        assert_eq!(due(&vc), None, "being deleted");
    }
}
