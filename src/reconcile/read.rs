//! Step 1, read: the spec (checked by the pure core), the credentials Secret (its data only when
//! it opts in with the label) and the namespace's tier. Everything a person must fix is a
//! [`Failure`]; only Kubernetes API errors are errors.

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::context::Context;
use super::error::Error;
use crate::api::{CREDENTIALS_LABEL, TIER_LABEL, VaultConnection};
use crate::document::parameter_name;
use crate::reason::Reason;
use crate::status::Failure;
use crate::tiers::position;
use crate::validation::{SecretData, ValidSpec, check_kms_key, summarize, validate_spec};

/// What the later steps need, read and checked.
pub struct Inputs {
    /// The checked spec.
    pub spec: ValidSpec,
    /// The parameter's name.
    pub parameter: String,
    /// The Secret's data (credentials: dropped as soon as the document is rendered).
    pub secret: SecretData,
    /// The Secret's resourceVersion.
    pub secret_version: Option<String>,
}

/// Reads and checks, in the order a person fixes things: spec, Secret, tier.
pub async fn inputs(vc: &VaultConnection, ctx: &Context) -> Result<Result<Inputs, Failure>, Error> {
    let name = vc.name_any();
    let ns = vc.namespace().ok_or(Error::NoNamespace)?;
    let spec = match validate_spec(&name, &vc.spec) {
        Ok(spec) => spec,
        Err(errors) => return Ok(Err(Failure::new(Reason::InvalidSpec, summarize(&errors)))),
    };
    if let Err(e) = check_kms_key(&spec, &ctx.settings.policy) {
        return Ok(Err(Failure::new(e.kind.reason(), e.to_string())));
    }
    let s = &ctx.settings;
    let parameter = match parameter_name(&s.prefix, &s.cluster, &ns, &name) {
        Ok(p) => p,
        Err(e) => return Ok(Err(Failure::new(Reason::InvalidSpec, e.to_string()))),
    };
    let (secret, secret_version) = match read_secret(ctx, &ns, &spec.secret_name).await? {
        Ok(found) => found,
        Err(failure) => return Ok(Err(failure)),
    };
    if let Some(failure) = tier_check(vc, &ns, ctx).await? {
        return Ok(Err(failure));
    }
    Ok(Ok(Inputs {
        spec,
        parameter,
        secret,
        secret_version,
    }))
}

/// Reads the Secret's data, but only when it carries the opt-in label: a Secret without it is
/// never read.
async fn read_secret(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Result<(SecretData, Option<String>), Failure>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let labelled = ListParams::default()
        .labels(&format!("{CREDENTIALS_LABEL}=true"))
        .fields(&format!("metadata.name={name}"));
    if let Some(secret) = secrets.list(&labelled).await?.items.into_iter().next() {
        let version = secret.metadata.resource_version.clone();
        let mut data: SecretData = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in secret.string_data.unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        return Ok(Ok((data, version)));
    }
    // Tell "missing" from "not labelled" by metadata alone.
    Ok(Err(match secrets.get_metadata_opt(name).await? {
        None => Failure::new(
            Reason::SecretNotFound,
            format!(
                "Secret {name} not found in namespace {ns}; create it with the label {CREDENTIALS_LABEL}: \"true\""
            ),
        ),
        Some(_) => Failure::new(
            Reason::SecretNotLabeled,
            format!(
                "Secret {name} lacks the label {CREDENTIALS_LABEL}: \"true\"; the operator reads only Secrets that opt in"
            ),
        ),
    }))
}

/// Applies the namespace's tier limit: the oldest connections within it are served.
async fn tier_check(
    vc: &VaultConnection,
    ns: &str,
    ctx: &Context,
) -> Result<Option<Failure>, Error> {
    let namespace = Api::<Namespace>::all(ctx.client.clone())
        .get_metadata(ns)
        .await?;
    let label = namespace.labels().get(TIER_LABEL).map(String::as_str);
    let applied = ctx
        .settings
        .tiers
        .applied(label, &ctx.settings.default_tier);
    let Some(limit) = applied.limit else {
        return Ok(None);
    };
    let created = |o: &VaultConnection| o.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let state = ctx.store.state();
    let siblings: Vec<_> = state
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns) && o.metadata.deletion_timestamp.is_none())
        .map(|o| (created(o), o.metadata.name.as_deref().unwrap_or_default()))
        .collect();
    let name = vc.name_any();
    let pos = position(&siblings, &(created(vc), name.as_str()));
    if pos < limit as usize {
        return Ok(None);
    }
    let unknown = if applied.unknown_label {
        format!(" (its {TIER_LABEL} label names no configured tier, so the default applies)")
    } else {
        String::new()
    };
    Ok(Some(Failure::new(
        Reason::TierLimitExceeded,
        format!(
            "namespace {ns} is on tier {}{unknown}, which allows {limit} connection(s); this is number {} by \
             creation time, so nothing was written: delete another connection or ask a cluster admin to raise the tier",
            applied.tier,
            pos + 1
        ),
    )))
}
