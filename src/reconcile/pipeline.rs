//! The driver of one reconcile: the finalizer, then the pipeline in run order (read → desire →
//! admit → verify → write, which plans) and the report; and the retry policy of a failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};

use super::context::Context;
use super::error::Error;
use super::read::{self, Read};
use super::{cleanup, desired, report, tier, touch, verify, write};
use crate::api::{FINALIZER, VaultConnection};
use crate::backoff;
use crate::fair;
use crate::reason::{Reason, Stage};
use crate::status::{self, Change, Failure, Outcome};
use crate::verify::step::Checked;

/// Reconciles one VaultConnection: what a worker runs once the work queue has handed it the
/// connection in its namespace's turn ([`super::workers`]). It runs with the namespace as the
/// tenant of its SSM calls (see [`crate::fair`]); when to look again, if not at the next change,
/// is asked of the queue.
pub async fn reconcile(vc: Arc<VaultConnection>, ctx: Arc<Context>) -> Result<(), Error> {
    let ns = vc.namespace().ok_or(Error::NoNamespace)?;
    let tenant: Arc<str> = Arc::from(ns.as_str());
    fair::as_tenant(tenant, reconcile_now(vc, ctx, ns)).await
}

async fn reconcile_now(
    vc: Arc<VaultConnection>,
    ctx: Arc<Context>,
    ns: String,
) -> Result<(), Error> {
    let start = Instant::now();
    let name = vc.name_any();
    let api: Api<VaultConnection> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, vc, |event| async {
        match event {
            FinalizerEvent::Apply(vc) => apply(&vc, &ctx).await,
            FinalizerEvent::Cleanup(vc) => cleanup::cleanup(&vc, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    });
    if let Err(Error::Finalizer(e)) = &result
        && stale_cache(e)
    {
        // Soon, from the cache the newer object will have reached (its event may be the echo
        // of our own status write, which wakes nobody).
        ctx.queue.push_after(&ns, &name, Duration::from_secs(1));
        return Ok(());
    }
    if let Err(e) = &result {
        ctx.metrics
            .reconciled(e.metric_label(), true, start.elapsed());
    }
    result.map(drop)
}

/// Whether the finalizer patch was refused because the cached object is older than the one
/// stored: the patch tests the cached finalizer list, so when a reconcile runs before the watch
/// has delivered our own previous write, the API server answers 422 (test failed) or 409. That
/// is not a failure: the newer object is on its way, and a retry a second later reads it.
fn stale_cache(e: &kube::runtime::finalizer::Error<Error>) -> bool {
    use kube::runtime::finalizer::Error as F;
    matches!(
        e,
        F::AddFinalizer(kube::Error::Api(s)) | F::RemoveFinalizer(kube::Error::Api(s))
            if s.code == 409 || s.code == 422
    )
}

/// Retries a failed reconcile with jittered exponential backoff (through the work queue).
pub fn error_policy(vc: &VaultConnection, error: &Error, ctx: &Context) {
    let n = ctx.failed(&vc.uid().unwrap_or_default());
    let (ns, name) = (vc.namespace().unwrap_or_default(), vc.name_any());
    tracing::warn!(
        namespace = ns,
        name = name,
        error = %error,
        attempt = n,
        "reconcile failed"
    );
    let retry = backoff::jittered(n, Duration::from_secs(1), Duration::from_secs(300));
    ctx.queue.push_after(&ns, &name, retry);
}

/// One reconcile of a live connection: the pipeline, then the report.
async fn apply(vc: &VaultConnection, ctx: &Context) -> Result<Action, Error> {
    let start = Instant::now();
    let (outcome, checked) = pipeline(vc, ctx).await?;
    let version = report::status(vc, &outcome, checked.as_ref(), ctx).await?;
    tier::refused_at(vc, &outcome, version, ctx);
    report::record(vc, &outcome, ctx, start);
    if let Some(after) = report::requeue(vc, &outcome, checked.as_ref(), ctx) {
        ctx.queue
            .push_after(&vc.namespace().unwrap_or_default(), &vc.name_any(), after);
    }
    Ok(Action::await_change())
}

/// read → desire → admit (tier) → verify → write. `Err` only for Kubernetes API errors;
/// everything else is an [`Outcome`], with the verification answer when one was asked for.
async fn pipeline(
    vc: &VaultConnection,
    ctx: &Context,
) -> Result<(Outcome, Option<Checked>), Error> {
    let stop = |failure| Ok((Outcome::NotReady(failure), None));
    let inputs = match read::inputs(vc, ctx).await? {
        Err(failure) => return stop(left_in_place(vc, failure)),
        Ok(Read::Unchanged(parameter)) => {
            let change = Change::None;
            return Ok((Outcome::Ready { parameter, change }, None));
        }
        Ok(Read::Touched {
            parameter,
            secret_version,
        }) => {
            let parameter = touch::record(vc, ctx, parameter, Some(secret_version));
            let change = Change::None;
            return Ok((Outcome::Ready { parameter, change }, None));
        }
        Ok(Read::Changed(inputs)) => *inputs,
    };
    // Recorded under another policy, from this very Secret version: only checking is left.
    let stored = inputs
        .stored
        .clone()
        .filter(|p| p.secret_resource_version == inputs.secret_version);
    let want = match desired::desired(vc, inputs, &ctx.settings, &ctx.evidence) {
        Err(failure) => return stop(left_in_place(vc, failure)),
        Ok(want) => want,
    };
    if let Some(mut parameter) = stored {
        // Valid under today's rules: SSM holds what these credentials render to.
        parameter.policy = Some(ctx.settings.policy.fingerprint());
        read::complete(&mut parameter, &vc.uid().unwrap_or_default(), ctx);
        let change = Change::None;
        return Ok((Outcome::Ready { parameter, change }, None));
    }
    // The Secret was touched, not changed: its data renders to what was written last.
    if let Some(parameter) = touch::untouched(vc, &want, ctx) {
        let parameter = touch::record(vc, ctx, parameter, want.secret_version.clone());
        let change = Change::None;
        return Ok((Outcome::Ready { parameter, change }, None));
    }
    // A new connection's turn of tier admission is held until its write is done.
    let mut place = match tier::place(vc, &want.identity.namespace_uid, &want.name, ctx).await {
        Err(failure) => return stop(failure),
        Ok(place) => place,
    };
    let (checked, refused) = verify::check(ctx, vc, &want).await;
    if let Some(failure) = refused {
        return Ok((Outcome::NotReady(failure), checked));
    }
    let outcome = write::sync(ctx, &want).await;
    if matches!(outcome, Outcome::Ready { .. }) {
        place.taken(&want.name);
        if place.admitted() && status::ready_reason(vc) == Some(Reason::TierLimitExceeded.as_str())
        {
            // Woken from a refusal by a freed slot: another may be free for the next refused
            // sibling (checked after this turn). A fresh create wakes nobody (no scan).
            tier::next_refused(
                ctx,
                &vc.namespace().unwrap_or_default(),
                vc.uid().as_deref(),
            );
        }
    }
    Ok((outcome, checked))
}

/// A connection that stored credentials and is now invalid (a changed Secret or spec, or rules
/// made stricter) says that what it stored stays: removing a live credential is not the
/// operator's call.
fn left_in_place(vc: &VaultConnection, mut failure: Failure) -> Failure {
    if failure.stage() == Stage::Valid
        && let Some(p) = vc.status.as_ref().and_then(|s| s.parameter.as_ref())
    {
        failure.message = format!(
            "{}. The credentials stored earlier stay in SSM parameter {} (the operator does not              remove a live credential): fix the connection, or delete it to remove them",
            failure.message.trim_end_matches('.'),
            p.name
        );
    }
    failure
}
