//! Step 1, read: the spec (checked by the pure core), the namespace's identity and the
//! credentials Secret. The Secret's resourceVersion and the namespace's uid come from the watch
//! caches, so a connection whose status already records a sync of this spec and this Secret version
//! under this validation policy costs no read at all; the Secret's data is read (only when it
//! opts in with the label) when it changed, when the policy changed (to check the stored
//! credentials again), or when the drift sweep asks for a full check. Everything a person must
//! fix is a [`Failure`]; only Kubernetes API errors are errors.

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::at_rest::{Recorded, kms_key_for, unchanged};
use super::context::Context;
use super::error::Error;
use super::evidence::Digest;
use crate::api::{CREDENTIALS_LABEL, ParameterStatus, VaultConnection};
use crate::document::parameter_name;
use crate::reason::Reason;
use crate::status::Failure;
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
    /// The salted digest of the Secret's data in this process (see `evidence`).
    pub source: Digest,
    /// The KMS key the parameter is encrypted with: the spec's, else the operator's default.
    pub kms_key_id: String,
    /// The uid of the connection's namespace.
    pub namespace_uid: String,
    /// Set when status records a sync of these very inputs under another validation policy:
    /// the credentials are checked again, and nothing else needs doing.
    pub stored: Option<ParameterStatus>,
}

/// What reading found.
pub enum Read {
    /// Status records a sync of this spec, this Secret version and this document format into
    /// this parameter (with this key), and no drift was seen since: the Secret was not read and
    /// SSM need not be.
    Unchanged(ParameterStatus),
    /// Only the Secret's resourceVersion moved on, and this process already read the Secret at
    /// the new version and found the data this parameter was written from (see `touch`): the
    /// Secret was not read again, and SSM need not be.
    Touched {
        /// The parameter as status records it.
        parameter: ParameterStatus,
        /// The Secret's new resourceVersion.
        secret_version: String,
    },
    /// Read in full: bring the parameter to these inputs.
    Changed(Box<Inputs>),
}

/// A record from before modification times were kept, completed from the sweep's observation of
/// the same version (the one time status is trusted for it), whichever reconcile comes first
/// after the observation: the one that confirms the record, or the one that records today's
/// policy for it.
pub fn complete(recorded: &mut ParameterStatus, uid: &str, ctx: &Context) {
    if recorded.last_modified.is_none()
        && let Some(seen) = ctx.take_observed(uid)
        && seen.version == recorded.version
    {
        recorded.last_modified = seen.modified;
    }
}

/// Reads and checks, in the order a person fixes things: spec, then Secret.
pub async fn inputs(vc: &VaultConnection, ctx: &Context) -> Result<Result<Read, Failure>, Error> {
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
    // The caches are complete before the first answer is taken from them.
    ctx.filled.wait().await;
    let cached = ctx.secrets.version(&ns, &spec.secret_name);
    let Some(cached_version) = cached else {
        return Ok(Err(
            missing_or_unlabelled(ctx, &ns, &spec.secret_name).await?
        ));
    };
    let Some(namespace_uid) = ctx.namespace_uid(&ns) else {
        return Ok(Err(Failure::new(
            Reason::SyncFailed,
            format!("namespace {ns} is not in the operator's cache yet; retrying"),
        )));
    };
    let uid = vc.uid().unwrap_or_default();
    let suspect = ctx.take_suspect(&uid);
    let key = kms_key_for(&spec, &ctx.settings);
    let recorded = unchanged(
        vc,
        &parameter,
        &key,
        &cached_version,
        ctx.verification.is_some(),
        &ctx.settings.policy.fingerprint(),
    );
    let stored = match recorded {
        Recorded::Same(mut recorded) if !suspect => {
            complete(&mut recorded, &uid, ctx);
            return Ok(Ok(Read::Unchanged(recorded)));
        }
        Recorded::OtherPolicy(recorded) if !suspect => Some(recorded),
        _ => None,
    };
    // Only the Secret's version moved on (a touch): the connections it wakes together read the
    // Secret one at a time, and a read of the same version answers the rest (see `touch`).
    let unread = || {
        let secret = (
            ns.as_str(),
            spec.secret_name.as_str(),
            cached_version.as_str(),
        );
        (!suspect && stored.is_none())
            .then(|| unread(vc, &parameter, &key, secret, &namespace_uid, ctx))
            .flatten()
    };
    let touched = |parameter| Read::Touched {
        parameter,
        secret_version: cached_version.clone(),
    };
    if let Some(parameter) = unread() {
        return Ok(Ok(touched(parameter)));
    }
    let _turn = ctx.evidence.turn_to_read(&ns, &spec.secret_name).await;
    if let Some(parameter) = unread() {
        return Ok(Ok(touched(parameter)));
    }
    let (secret, secret_version) = match read_secret(ctx, &ns, &spec.secret_name).await? {
        Ok(found) => found,
        Err(failure) => return Ok(Err(failure)),
    };
    let source = ctx.evidence.data_digest(&secret);
    if let Some(version) = &secret_version {
        ctx.evidence.read(&ns, &spec.secret_name, version, source);
    }
    Ok(Ok(Read::Changed(Box::new(Inputs {
        spec,
        parameter,
        secret,
        secret_version,
        source,
        kms_key_id: key,
        namespace_uid,
        stored,
    }))))
}

/// The parameter as status records it, when the only input that differs is the Secret's
/// resourceVersion and this process already read the Secret at `secret`'s version (namespace,
/// name, version) and found the very data it wrote this parameter from: [`untouched`] without
/// reading the Secret again.
fn unread(
    vc: &VaultConnection,
    parameter: &str,
    kms_key_id: &str,
    secret: (&str, &str, &str),
    namespace_uid: &str,
    ctx: &Context,
) -> Option<ParameterStatus> {
    if ctx.verification.is_some() {
        return None;
    }
    let (ns, name, version) = secret;
    let read = ctx.evidence.read_of(ns, name, version)?;
    let recorded = vc.status.as_ref()?.parameter.as_ref()?;
    let rendered_from = recorded.secret_resource_version.as_deref()?;
    let Recorded::Same(recorded) = unchanged(
        vc,
        parameter,
        kms_key_id,
        rendered_from,
        false,
        &ctx.settings.policy.fingerprint(),
    ) else {
        return None;
    };
    let owner = (vc.uid().unwrap_or_default(), namespace_uid.to_owned());
    let known = ctx.evidence.get(parameter, &owner)?;
    // The same data, spec generation and policy render the same document, so what this process
    // wrote is still what is wanted: same key, and the tier status records is the one written.
    let same = known.source == Some(read)
        && known.kms_key_id == kms_key_id
        && recorded.tier == known.tier.as_str()
        && known.meta.version == recorded.version
        && known.meta.modified.is_some()
        && known.meta.modified == recorded.last_modified;
    same.then_some(recorded)
}

/// Reads the Secret's data, but only when it carries the opt-in label: a Secret without it is
/// never read.
async fn read_secret(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Result<(SecretData, Option<String>), Failure>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    ctx.metrics.secret_read();
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
    Ok(Err(missing_or_unlabelled(ctx, ns, name).await?))
}

/// Why the Secret `name` is not among the opted-in ones, told by metadata alone (a read made
/// only while the connection cannot be served).
async fn missing_or_unlabelled(ctx: &Context, ns: &str, name: &str) -> Result<Failure, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    Ok(match secrets.get_metadata_opt(name).await? {
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
    })
}
