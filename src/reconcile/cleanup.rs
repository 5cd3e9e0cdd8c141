//! The step of a deleted connection: remove its parameter (policy `Delete`, and only if its tags
//! prove it ours) before the finalizer goes — unless deleting would do harm:
//! - the connection's `vaultconnections.io/skip-cleanup: "true"` annotation asks to keep it;
//! - the CRD itself is being deleted (which deletes every connection: an uninstall gone wrong,
//!   a pruning GitOps tool), so every connection is treated as `Retain`;
//! - more parameters were deleted lately than the deletion budget allows (`--max-deletions` per
//!   `--deletion-window`): the deletion waits, the finalizer stays, and the held count is a
//!   metric the chart alerts on.
//!
//! Never reads the Secret.

use std::time::Instant;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};

use super::context::Context;
use super::error::Error;
use super::{desired, report, tier, write};
use crate::api::{CRD_NAME, DeletionPolicy, SKIP_CLEANUP_ANNOTATION, VaultConnection};
use crate::document::parameter_name;
use crate::ownership::Removal;

/// Whether the VaultConnection CRD is being deleted (or is gone already).
async fn crd_going(ctx: &Context) -> Result<bool, Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    Ok(match crds.get_metadata_opt(CRD_NAME).await? {
        None => true,
        Some(crd) => crd.metadata.deletion_timestamp.is_some(),
    })
}

/// Cleans up after the deleted connection `vc`; `Err` keeps its finalizer for a retry.
pub async fn cleanup(vc: &VaultConnection, ctx: &Context) -> Result<Action, Error> {
    let ns = vc.namespace().ok_or(Error::NoNamespace)?;
    let name = vc.name_any();
    let uid = vc.uid().unwrap_or_default();
    let s = &ctx.settings;
    let skip = vc
        .annotations()
        .get(SKIP_CLEANUP_ANNOTATION)
        .is_some_and(|v| v == "true");
    let note = match (
        vc.spec.deletion_policy,
        parameter_name(&s.prefix, &s.cluster, &ns, &name),
    ) {
        (_, Err(_)) => None, // no valid name: nothing can have been written
        (DeletionPolicy::Retain, Ok(param)) => Some((
            EventType::Normal,
            "Retained",
            format!("SSM parameter {param} retained (deletionPolicy: Retain)"),
        )),
        (DeletionPolicy::Delete, Ok(param)) if skip => Some((
            EventType::Warning,
            "CleanupSkipped",
            format!(
                "SSM parameter {param} left in place: the connection's {SKIP_CLEANUP_ANNOTATION} \
                 annotation asks so; delete it in SSM when it is no longer needed"
            ),
        )),
        (DeletionPolicy::Delete, Ok(param)) if crd_going(ctx).await? => {
            tracing::warn!(
                namespace = ns,
                name,
                parameter = param,
                "the VaultConnection CRD is being deleted: the parameter is kept"
            );
            Some((
                EventType::Warning,
                "Retained",
                format!(
                    "SSM parameter {param} kept: the VaultConnection CRD is being deleted, which \
                     deletes every connection, so the operator treats them all as Retain; create \
                     the connection again to take the parameter back"
                ),
            ))
        }
        (DeletionPolicy::Delete, Ok(param)) => {
            if !ctx.deletions.take(&uid, Instant::now()) {
                ctx.metrics.set_deletions_held(ctx.deletions.held());
                return Err(Error::DeletionHeld(param));
            }
            ctx.metrics.set_deletions_held(ctx.deletions.held());
            let namespace_uid = ctx
                .namespace_uid(&ns)
                .ok_or_else(|| Error::NamespaceNotCached(ns.clone()))?;
            let me = desired::identity(vc, namespace_uid, s);
            match write::remove(ctx, &param, &me, desired::takeover(vc, s)).await? {
                Removal::Nothing => None,
                Removal::NotOwned(why) => Some((
                    EventType::Warning,
                    "ParameterNotOwned",
                    format!(
                        "SSM parameter {param} is not this connection's ({}); left in place",
                        why.explain()
                    ),
                )),
                Removal::Delete => {
                    tier::slot_freed(ctx, &ns, &me.namespace_uid, &param).await;
                    Some((
                        EventType::Normal,
                        "Deleted",
                        format!("SSM parameter {param} deleted"),
                    ))
                }
            }
        }
    };
    let event = note.map(|(type_, reason, note)| Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Delete".into(),
        secondary: None,
    });
    report::publish(vc, event, ctx).await;
    if let Ok(param) = parameter_name(&s.prefix, &s.cluster, &ns, &name) {
        ctx.evidence.forget(&param); // the connection is gone, whatever its parameter's fate
    }
    ctx.deletions.release(&uid);
    ctx.metrics.set_deletions_held(ctx.deletions.held());
    ctx.memos.forget(&uid);
    if let Some(verification) = &ctx.verification {
        verification.forget(&uid);
    }
    tracing::info!(namespace = ns, name, "cleaned up");
    Ok(Action::await_change())
}
