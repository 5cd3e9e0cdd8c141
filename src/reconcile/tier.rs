//! Step 3, admit: a namespace's tier bounds the SSM parameters it holds — every parameter under
//! its path tagged with its namespace uid, so retained parameters and those left behind by a
//! finalizer removed by hand count too, while those an earlier namespace of the same name left
//! do not (they count for the account's quota only). A connection whose parameter exists keeps
//! its slot (a tier downgrade or a newer sibling never displaces it); a connection without one is
//! admitted only while the namespace holds fewer than its limit. What counts is what SSM lists
//! plus what this process wrote a moment ago — never status, which others can edit. Admissions in
//! one namespace take turns, and the parameters admitted a moment ago count even before SSM's
//! listing shows them, so two connections can never both take the last slot. A listing that
//! found the namespace full answers for it until a slot is taken or freed there (or a minute
//! has passed), so refused connections woken by a touch of their Secret cost no SSM call.

use std::collections::HashMap;
use std::time::Instant;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::OwnedMutexGuard;

use super::admissions::{Full, Recent, SETTLE};
use super::connections::Connections;
use super::context::Context;
use crate::api::{TIER_LABEL, VaultConnection};
use crate::ownership::NAMESPACE_UID_TAG;
use crate::reason::Reason;
use crate::status::{Failure, Outcome};
use crate::tiers::{Applied, admits};

/// A connection's place under its namespace's tier.
pub enum Place {
    /// It holds its parameter, or no limit applies.
    Kept,
    /// It may write: the turn of admission is held until the write is done.
    Admitted(OwnedMutexGuard<Recent>),
}

impl Place {
    /// Whether it was admitted (not already holding a slot).
    pub fn admitted(&self) -> bool {
        matches!(self, Place::Admitted(_))
    }

    /// Its write of `parameter` succeeded: the parameter counts as held from now on, even
    /// before SSM's listing shows it.
    pub fn taken(&mut self, parameter: &str) {
        if let Place::Admitted(turn) = self {
            turn.gone.retain(|(name, _)| name != parameter);
            turn.taken.push((parameter.to_owned(), Instant::now()));
            turn.full = None;
        }
    }
}

/// The tier's answer for `vc` in the namespace with uid `namespace_uid`, whose parameter is
/// `parameter`.
pub async fn place(
    vc: &VaultConnection,
    namespace_uid: &str,
    parameter: &str,
    ctx: &Context,
) -> Result<Place, Failure> {
    let ns = vc.namespace().unwrap_or_default();
    let ns = ns.as_str();
    let namespace = ctx.namespaces.get(&ObjectRef::new(ns));
    let label = namespace
        .as_ref()
        .and_then(|n| n.labels().get(TIER_LABEL))
        .map(String::as_str);
    let applied = ctx
        .settings
        .tiers
        .applied(label, &ctx.settings.default_tier);
    // This process wrote it (or proved it this connection's) and has not seen it go: its slot
    // is held.
    let owner = (vc.uid().unwrap_or_default(), namespace_uid.to_owned());
    let known = ctx.evidence.get(parameter, &owner).is_some();
    let Some(limit) = applied.limit.filter(|_| !known) else {
        return Ok(Place::Kept);
    };
    // Turns are the namespace's, not its name's: a namespace created again under the same name
    // inherits nothing admitted in the earlier one.
    let mut turn = ctx.admissions.turn(namespace_uid).await;
    // The namespace found full a moment ago with nothing taken or freed since, and the
    // connection unchanged since that listing was taken (cached at this version then) or since
    // the listing answered it (refused, then woken by its Secret, say): the same answer, without
    // listing SSM again. A change of the connection itself lists again.
    let uid = vc.uid().unwrap_or_default();
    let version = vc.metadata.resource_version.as_deref();
    let refused_at = ctx.memos.with(&uid, |m| m.refused_at.clone());
    if let Some(full) = turn.full.as_ref().filter(|f| {
        let unchanged = refused_at.as_deref().is_some_and(|at| version == Some(at))
            || f.cached
                .get(&uid)
                .is_some_and(|v| version == Some(v.as_str()));
        unchanged && f.limit == limit && f.at.elapsed() < SETTLE
    }) {
        if full.held.contains(parameter) {
            return Ok(Place::Kept);
        }
        return Err(refusal(ns, &applied, limit));
    }
    // What the cache holds now, before the listing: a change that reaches the cache after this
    // point may postdate the listing, and lists again.
    let cached = versions_in(&ctx.connections, ns);
    let path = parameter.rsplit_once('/').map_or("", |(p, _)| p);
    let mut held = ctx
        .ssm
        .names_under(path, (NAMESPACE_UID_TAG, namespace_uid))
        .await?;
    // Once the listing shows a name it needs no remembering (and once deleted it must not be).
    turn.taken
        .retain(|(name, at)| at.elapsed() < SETTLE && !held.contains(name));
    // A name this process deleted a moment ago is free even while the listing still shows it:
    // the refused connection woken by the delete is checked once, and must not be refused by a
    // stale listing (nothing would wake it again).
    turn.gone.retain(|(_, at)| at.elapsed() < SETTLE);
    held.retain(|name| !turn.gone.iter().any(|(gone, _)| gone == name));
    held.extend(turn.taken.iter().map(|(name, _)| name.clone()));
    if held.contains(parameter) {
        return Ok(Place::Kept);
    }
    if admits(&held, parameter, limit) {
        return Ok(Place::Admitted(turn));
    }
    turn.full = Some(Full {
        limit,
        held,
        at: Instant::now(),
        cached,
    });
    Err(refusal(ns, &applied, limit))
}

/// The resourceVersion of each connection of `ns` in the cache, by uid.
fn versions_in(connections: &Connections, ns: &str) -> HashMap<String, String> {
    let versions = connections.scan(Some(ns), |_, _, entry, _| {
        Some((entry.uid()?, entry.resource_version()?))
    });
    versions.into_iter().collect()
}

/// The refusal of a connection in `ns`, which holds `limit` parameters under tier `applied`.
fn refusal(ns: &str, applied: &Applied, limit: u32) -> Failure {
    let unknown = if applied.unknown_label {
        format!(" (its {TIER_LABEL} label names no configured tier, so the default applies)")
    } else {
        String::new()
    };
    Failure::new(
        Reason::TierLimitExceeded,
        format!(
            "namespace {ns} is on tier {}{unknown}, which allows {limit} SSM parameter(s), and already holds \
             that many (retained parameters included), so nothing was written: delete a connection whose \
             deletionPolicy is Delete, remove a retained parameter, or ask a cluster admin to raise the tier",
            applied.tier
        ),
    )
}

/// Remembers whether `vc`'s reconcile ended refused for the tier, at `version` (its
/// resourceVersion after the status write).
pub fn refused_at(vc: &VaultConnection, outcome: &Outcome, version: Option<String>, ctx: &Context) {
    let refused = outcome.reason() == Reason::TierLimitExceeded;
    let uid = vc.uid().unwrap_or_default();
    ctx.memos
        .with(&uid, |m| m.refused_at = version.filter(|_| refused));
}

/// A slot freed in `ns` (its parameter `parameter` was deleted by this process): the name counts
/// as free from now on, and the oldest connection refused for the tier is checked again — one,
/// not every refused sibling, so a delete costs one reconcile. If it is admitted, it wakes the
/// next one in turn ([`next_refused`]), so several freed slots are all filled.
pub async fn slot_freed(ctx: &Context, ns: &str, namespace_uid: &str, parameter: &str) {
    let mut turn = ctx.admissions.turn(namespace_uid).await;
    turn.gone.push((parameter.to_owned(), Instant::now()));
    turn.full = None;
    drop(turn);
    next_refused(ctx, ns, None);
}

/// Asks for a check of the oldest connection in `ns` refused for the tier (other than `admitted`,
/// the one just admitted, whose cached status may still say refused). Refused connections are
/// never checked on a timer: they wait for this, or for a change of their own, of their Secret
/// or of their namespace's tier label.
pub fn next_refused(ctx: &Context, ns: &str, admitted: Option<&str>) {
    let refused = ctx.connections.scan(Some(ns), |_, name, entry, _| {
        let waiting = !entry.deleting()
            && (admitted.is_none() || entry.uid().as_deref() != admitted)
            && entry.readiness()?.reason == Reason::TierLimitExceeded.as_str();
        waiting.then(|| (entry.created().cloned(), name.to_owned()))
    });
    if let Some((_, name)) = refused.into_iter().min() {
        ctx.queue.push(ns, &name);
    }
}
