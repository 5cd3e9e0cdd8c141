//! The drift sweep: once per drift interval, compare the version of every Ready connection's
//! parameter in SSM with the version its status records — ten names per `GetParameters` call,
//! without decryption (no KMS call; the encrypted values are dropped unread). Every `PutParameter`
//! bumps the version, so a parameter changed or deleted out of band shows up here, and only its
//! connection gets the full check (decrypting read, tags, repair). A fleet at rest costs one
//! SSM call per ten connections per interval and nothing else.
//!
//! The first sweep after start runs at once, as fast as the read budget allows: it is how a
//! restarted operator learns that nothing changed while it was away. Later sweeps spread their
//! calls over the interval, so rotations never queue behind a burst of checks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::context::Context;
use crate::api::VaultConnection;
use crate::ssm::{SsmError, VERSIONS_PER_CALL};
use crate::status::ready_condition;

/// A parameter the sweep compares: its connection and the version status records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The connection.
    pub connection: ObjectRef<VaultConnection>,
    /// The parameter's name.
    pub parameter: String,
    /// The version status records.
    pub version: i64,
}

/// What the sweep found for one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// SSM holds the version status records.
    Unchanged,
    /// SSM holds another version: written by someone else.
    Changed,
    /// The parameter is gone.
    Missing,
}

impl Found {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Found::Unchanged => "unchanged",
            Found::Changed => "changed",
            Found::Missing => "missing",
        }
    }
}

/// The parameter a connection's status says it synced, if the connection is Ready and alive.
pub fn due(vc: &VaultConnection) -> Option<Due> {
    if vc.metadata.deletion_timestamp.is_some()
        || ready_condition(vc).is_none_or(|c| c.status != "True")
    {
        return None;
    }
    let p = vc.status.as_ref()?.parameter.as_ref()?;
    Some(Due {
        connection: ObjectRef::from_obj(vc),
        parameter: p.name.clone(),
        version: p.version,
    })
}

/// Compares one parameter's version in SSM (`None`: missing) with the one status records.
pub fn compare(recorded: i64, in_ssm: Option<i64>) -> Found {
    match in_ssm {
        None => Found::Missing,
        Some(v) if v == recorded => Found::Unchanged,
        Some(_) => Found::Changed,
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
    let listed: Vec<Due> = ctx.store.state().iter().filter_map(|vc| due(vc)).collect();
    let batches = listed.len().div_ceil(VERSIONS_PER_CALL);
    // Nine tenths of the interval, so one sweep ends before the next begins.
    let gap = within.map_or(Duration::ZERO, |w| {
        w.mul_f64(0.9) / u32::try_from(batches.max(1)).unwrap_or(u32::MAX)
    });
    let started = Instant::now();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for batch in listed.chunks(VERSIONS_PER_CALL) {
        let names: Vec<String> = batch.iter().map(|d| d.parameter.clone()).collect();
        let versions = match ctx.ssm.versions(&names).await {
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
        for d in batch {
            // Compare with the freshest status: a rotation may have landed since the listing.
            let cached = ctx.store.get(&d.connection);
            let recorded = cached
                .as_deref()
                .and_then(due)
                .filter(|now| now.parameter == d.parameter)
                .map_or(d.version, |now| now.version);
            let found = compare(recorded, versions.get(&d.parameter).copied());
            ctx.metrics.drift_checked(found.as_str());
            *counts.entry(found.as_str()).or_default() += 1;
            if found != Found::Unchanged
                && let Some(vc) = cached
            {
                ctx.suspect(&vc.uid().unwrap_or_default());
                tracing::info!(
                    namespace = d.connection.namespace.as_deref().unwrap_or_default(),
                    name = d.connection.name,
                    parameter = d.parameter,
                    found = found.as_str(),
                    "drift: parameter differs from status; checking it in full"
                );
                // The controller is gone only while shutting down.
                let _ = ctx.trigger.unbounded_send(d.connection.clone());
            }
        }
        tokio::time::sleep(gap).await;
    }
    tracing::debug!(
        connections = listed.len(),
        calls = batches,
        took_ms = started.elapsed().as_millis() as u64,
        ?counts,
        "drift sweep done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_other_than_the_recorded_one_or_none_means_a_full_check() {
        assert_eq!(compare(3, Some(3)), Found::Unchanged);
        assert_eq!(compare(3, Some(4)), Found::Changed);
        assert_eq!(compare(3, Some(2)), Found::Changed);
        assert_eq!(compare(3, None), Found::Missing);
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
        assert_eq!((d.parameter.as_str(), d.version), ("/p/c/team/db", 7));
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
