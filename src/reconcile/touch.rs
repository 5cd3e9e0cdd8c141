//! A Secret touched but not changed: any metadata change of a credentials Secret (an annotation,
//! a label another tool sets) gives it a new resourceVersion, and every connection naming it is
//! reconciled. When the document its data renders to is the one this process last wrote into the
//! parameter — the same salted, in-memory digest ([`super::evidence`]), the same key and tier —
//! and status records that very write, nothing is done: no SSM call and no status patch (status
//! keeps the Secret version the value was rendered from, which is still true of the value).
//!
//! The digest never leaves the process and is not a record of the value anywhere: a restarted
//! process has none. So that a restart still reads no Secret and decrypts nothing, status does
//! record the Secret's new version — but at most once per drift interval per connection: the
//! first touch is recorded at once, later ones within the interval are not, and one deferred
//! reconcile at the end of the interval records the latest (an annotate loop costs a connection
//! one status patch per interval, however fast it runs). A restart inside that window costs the
//! touched connections one full check each.
//!
//! The Secret itself is read once per touch, not once per connection naming it: the first
//! connection to wake reads it and the process remembers the digest of the data at that version
//! ([`super::evidence`]); every other connection whose parameter this process wrote from data of
//! the same digest is answered without a read (`read::unread`).

use std::time::Instant;

use kube::ResourceExt;

use super::at_rest::{Recorded, unchanged};
use super::context::Context;
use super::desired::Desired;
use crate::api::{ParameterStatus, VaultConnection};

/// The parameter as status records it, when the only input that differs is the Secret's
/// resourceVersion and its data renders to what this process wrote last.
pub fn untouched(vc: &VaultConnection, want: &Desired, ctx: &Context) -> Option<ParameterStatus> {
    // With verification on, the provider's answer is recorded per Secret version: a touch is
    // verified again, as before (the verification step spares SSM the same way).
    if ctx.verification.is_some() {
        return None;
    }
    let recorded = vc.status.as_ref()?.parameter.as_ref()?;
    let rendered_from = recorded.secret_resource_version.as_deref()?;
    // Everything else status records is as it is now: spec generation, key, format, policy.
    let Recorded::Same(recorded) = unchanged(
        vc,
        &want.name,
        &want.kms_key_id,
        rendered_from,
        ctx.verification.is_some(),
        &ctx.settings.policy.fingerprint(),
    ) else {
        return None;
    };
    // What this process wrote (the drift sweep forgets it on any change in SSM), and the write
    // status records.
    let known = ctx.evidence.get(&want.name, &want.identity.owner())?;
    let same = known.digest == want.digest
        && known.kms_key_id == want.kms_key_id
        && known.tier == known.tier.max(want.tier)
        && known.meta.version == recorded.version
        && known.meta.modified.is_some()
        && known.meta.modified == recorded.last_modified;
    same.then_some(recorded)
}

/// The status record of an untouched connection: with the Secret's new version `secret_version`
/// when no touch was recorded within the drift interval, else as it is (and one reconcile is
/// scheduled for the end of the interval, to record the latest version then).
pub fn record(
    vc: &VaultConnection,
    ctx: &Context,
    mut parameter: ParameterStatus,
    secret_version: Option<String>,
) -> ParameterStatus {
    let window = ctx.settings.drift_interval;
    let now = Instant::now();
    let deferred = ctx
        .memos
        .with(&vc.uid().unwrap_or_default(), |m| match m.touch {
            Some((at, scheduled)) if now.duration_since(at) < window => {
                m.touch = Some((at, true));
                Some((window.saturating_sub(now.duration_since(at)), !scheduled))
            }
            _ => {
                m.touch = Some((now, false));
                None
            }
        });
    match deferred {
        None => parameter.secret_resource_version = secret_version,
        Some((wait, true)) => {
            let (ns, name) = (vc.namespace().unwrap_or_default(), vc.name_any());
            ctx.queue.push_after(&ns, &name, wait);
        }
        Some((_, false)) => {}
    }
    parameter
}
