//! What the caches keep of each object: only what the reconciler reads. Applied to every watch
//! event before it is cached, so a namespace admin cannot inflate the operator's memory with
//! padded objects (an annotation can be up to 256 KiB) and a fleet at rest costs as little per
//! connection as the fields the reconciler needs.

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;

use crate::api::{MAX_ANNOTATION_VALUE, OPERATOR_ANNOTATIONS, TIER_LABEL, VaultConnection};
use crate::status::drop_derived_messages;

/// A connection: drops managedFields, labels, annotations but the operator's own requests (each
/// kept only when short), and the messages a Ready status can derive.
pub fn connection(vc: &mut VaultConnection) {
    vc.metadata.managed_fields = None;
    vc.metadata.annotations = vc.metadata.annotations.take().and_then(|mut a| {
        a.retain(|k, v| {
            OPERATOR_ANNOTATIONS.contains(&k.as_str()) && v.len() <= MAX_ANNOTATION_VALUE
        });
        (!a.is_empty()).then_some(a)
    });
    vc.metadata.labels = None;
    if let Some(finalizers) = vc.metadata.finalizers.as_mut() {
        finalizers.shrink_to_fit();
    }
    if let Some(status) = vc.status.as_mut() {
        drop_derived_messages(status);
        // Parsed lists grow by doubling: five conditions would hold room for eight.
        status.conditions.shrink_to_fit();
    }
}

/// A credentials Secret, watched by metadata only: its name, namespace and resourceVersion.
pub fn secret(s: &mut PartialObjectMeta<Secret>) {
    s.types = None;
    meta(&mut s.metadata, None, false);
}

/// A namespace: its name, uid (its identity) and tier label.
pub fn namespace(n: &mut PartialObjectMeta<Namespace>) {
    n.types = None;
    meta(&mut n.metadata, Some(TIER_LABEL), true);
}

/// Drops what the reconciler never reads from cached metadata: managedFields, creation time,
/// annotations (a Secret's last-applied annotation would even hold its data), owners,
/// finalizers, every label but `keep`, and the uid unless `uid`.
fn meta(meta: &mut ObjectMeta, keep: Option<&str>, uid: bool) {
    meta.managed_fields = None;
    if !uid {
        meta.uid = None;
    }
    meta.creation_timestamp = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
    meta.labels = match (meta.labels.take(), keep) {
        (Some(mut labels), Some(key)) => {
            labels.retain(|k, _| k == key);
            (!labels.is_empty()).then_some(labels)
        }
        _ => None,
    };
}
