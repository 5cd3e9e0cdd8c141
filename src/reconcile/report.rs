//! Step 7, report: the status the outcome calls for (patched only when it differs), an event on
//! every change of state, metrics and a log line, and when to look again.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};

use super::context::{Context, MANAGED_BY};
use super::error::Error;
use crate::api::{VaultConnection, VaultConnectionStatus};
use crate::backoff;
use crate::reason::{Reason, Stage};
use crate::status::{self, Change, Outcome, ready_reason};
use crate::verify::step::{self, Checked, VERIFIED};

/// Writes the status `outcome` calls for, and an event when the state changed. Returns the
/// connection's resourceVersion afterwards (the write's, or the one it had if nothing changed).
pub async fn status(
    vc: &VaultConnection,
    outcome: &Outcome,
    checked: Option<&Checked>,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let now = Time(jiff::Timestamp::now());
    let mut next = status::next(
        vc.status.as_ref(),
        vc.metadata.generation,
        outcome,
        now.clone(),
    );
    verified(&mut next, vc, checked, ctx.verification.is_some(), &now);
    // The cache holds a Ready status without its derived messages: compare like with like.
    let mut cached_form = next.clone();
    status::drop_derived_messages(&mut cached_form);
    if vc.status.as_ref() == Some(&cached_form) {
        return Ok(vc.resource_version());
    }
    let api: Api<VaultConnection> =
        Api::namespaced(ctx.client.clone(), &vc.namespace().unwrap_or_default());
    let patch = serde_json::json!({ "status": next });
    // Its echo on the watch wakes nobody: this reconcile already acted on everything in it.
    let mut after = vc.clone();
    after.status = Some(cached_form);
    ctx.echoes.expect(&after);
    let written = api
        .patch_status(
            &vc.name_any(),
            &PatchParams {
                field_manager: Some(MANAGED_BY.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await;
    let written = match written {
        Ok(written) => written,
        Err(e) => {
            ctx.echoes.forget(&vc.uid().unwrap_or_default());
            return Err(e.into());
        }
    };
    publish(vc, event_for(vc, outcome), ctx).await;
    Ok(written.resource_version())
}

/// Adds the `Verified` condition and record: this reconcile's answer, else (the pipeline stopped
/// before verifying) the previous condition unchanged; none at all with verification off.
fn verified(
    next: &mut VaultConnectionStatus,
    vc: &VaultConnection,
    checked: Option<&Checked>,
    on: bool,
    now: &Time,
) {
    let previous = vc.status.as_ref();
    match checked {
        Some(c) => {
            next.conditions.push(step::condition(
                &c.verdict,
                vc.metadata.generation,
                previous,
                now,
            ));
            next.verification = c.record.clone().map(Box::new);
        }
        None if on => next.conditions.extend(
            previous
                .and_then(|p| p.conditions.iter().find(|c| c.type_ == VERIFIED))
                .cloned(),
        ),
        None => next.verification = None,
    }
}

/// Counts the reconcile and logs its result.
pub fn record(vc: &VaultConnection, outcome: &Outcome, ctx: &Context, started: Instant) {
    let error = matches!(outcome, Outcome::NotReady(f) if f.transient());
    ctx.metrics
        .reconciled(outcome.reason().as_str(), error, started.elapsed());
    tracing::info!(
        namespace = vc.namespace().unwrap_or_default(),
        name = vc.name_any(),
        reason = outcome.reason().as_str(),
        "reconciled"
    );
}

/// How long after `outcome` to reconcile again, unless a change comes first (`None`: only for a
/// change); with an unavailable provider, no later than verification may be retried.
pub fn requeue(
    vc: &VaultConnection,
    outcome: &Outcome,
    checked: Option<&Checked>,
    ctx: &Context,
) -> Option<Duration> {
    let uid = vc.uid().unwrap_or_default();
    let interval = ctx.settings.drift_interval;
    let drift = backoff::spread(interval);
    if let (Outcome::Ready { .. }, Some(retry)) = (outcome, checked.and_then(|c| c.retry_in)) {
        ctx.succeeded(&uid);
        return Some(retry.min(drift));
    }
    match outcome {
        // Drift is the sweep's job: a Ready connection waits for a change, or for the sweep.
        Outcome::Ready { .. } => {
            ctx.succeeded(&uid);
            None
        }
        Outcome::NotReady(f) if f.transient() => {
            let n = ctx.failed(&uid);
            Some(backoff::jittered(
                n,
                Duration::from_secs(1),
                Duration::from_secs(120),
            ))
        }
        // Refused for the tier: no timer. A freed slot in the namespace (a sibling's parameter
        // deleted), a change of the tier label, of the connection or of its Secret re-checks it.
        Outcome::NotReady(f) if f.reason == Reason::TierLimitExceeded => None,
        // SSM problems that need a change elsewhere (IAM, KMS, tags): retry slowly.
        Outcome::NotReady(f) if f.stage() == Stage::Synced => {
            let n = ctx.failed(&uid);
            Some(backoff::jittered(n, Duration::from_secs(30), interval).min(drift))
        }
        // Spec, Secret and tier problems: the watches bring the fix.
        Outcome::NotReady(_) => None,
    }
}

/// The event for a new state, or `None` when the state did not change.
fn event_for(vc: &VaultConnection, outcome: &Outcome) -> Option<Event> {
    let previous = ready_reason(vc).and_then(Reason::parse);
    match outcome {
        Outcome::Ready { parameter, change } => {
            let (reason, verb) = match change {
                Change::Created => ("Created", "created"),
                Change::Updated => ("Updated", "updated"),
                Change::Adopted => ("Adopted", "adopted"),
                Change::None if previous == Some(Reason::Synced) => return None,
                Change::None => (Reason::Synced.as_str(), "confirmed"),
            };
            Some(Event {
                type_: EventType::Normal,
                reason: reason.into(),
                note: Some(format!(
                    "SSM parameter {} {verb} (version {}, {})",
                    parameter.name, parameter.version, parameter.tier
                )),
                action: "Sync".into(),
                secondary: None,
            })
        }
        Outcome::NotReady(f) if previous == Some(f.reason) => None,
        Outcome::NotReady(f) => Some(Event {
            type_: EventType::Warning,
            reason: f.reason.as_str().into(),
            note: Some(f.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        }),
    }
}

/// Publishes `event` about `vc`, if any; a failure to publish is logged, not fatal.
pub async fn publish(vc: &VaultConnection, event: Option<Event>, ctx: &Context) {
    let Some(event) = event else { return };
    if let Err(e) = ctx.recorder.publish(&event, &vc.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}
