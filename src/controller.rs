//! The reconciler: reads (spec, Secret, namespace tier), decides with the pure core
//! ([`crate::validation`], [`crate::document`], [`crate::status`]), and writes (SSM parameter,
//! status, events) — each only when something changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use secrecy::{ExposeSecret, SecretString};

use crate::api::{
    CREDENTIALS_LABEL, DeletionPolicy, FINALIZER, ParameterStatus, TIER_LABEL, VaultConnection,
};
use crate::backoff;
use crate::document::{Tier, parameter_name, render, tier_for};
use crate::metrics::Metrics;
use crate::ssm::{Ssm, SsmError, Write};
use crate::status::{self, Change, Failure, Outcome, Stage};
use crate::tiers::{TierLimits, position};
use crate::validation::{
    ErrorKind, Policy, SecretData, check_kms_key, summarize, validate_credentials, validate_spec,
};

/// Value of the `managed-by` tag on every parameter the operator owns.
pub const MANAGED_BY: &str = "vault-connection-operator";
/// The KMS key used when neither the spec nor the operator names one.
pub const AWS_MANAGED_KEY: &str = "alias/aws/ssm";

/// Operator-wide settings the reconciler needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Parameter name prefix.
    pub prefix: String,
    /// Cluster name in parameter names and tags.
    pub cluster: String,
    /// KMS key for connections that name none.
    pub default_kms_key_id: String,
    /// Connection limits by tier.
    pub tiers: TierLimits,
    /// Tier of unlabelled namespaces.
    pub default_tier: String,
    /// Interval of the drift check.
    pub drift_interval: Duration,
    /// Cluster-admin rules for specs and credentials (KMS keys, Doppler personal tokens).
    pub policy: Policy,
}

/// What every reconcile shares.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// SSM client.
    pub ssm: Ssm,
    /// Settings.
    pub settings: Settings,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// Cache of the VaultConnections this controller watches (for tier order).
    pub store: Store<VaultConnection>,
    failures: Mutex<HashMap<String, u32>>,
    confirmed: Mutex<HashMap<String, Confirmed>>,
    scheduled: Mutex<std::collections::HashSet<String>>,
}

/// What the last successful sync of a connection saw. A reconcile that sees the same spec
/// generation, Secret version and parameter version soon after needs no SSM call: nothing that
/// shapes the document changed (the drift check, due later, reads SSM again).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Confirmed {
    generation: Option<i64>,
    secret_version: Option<String>,
    parameter_version: i64,
    at: Instant,
}

impl Context {
    /// Builds a context.
    pub fn new(
        client: Client,
        ssm: Ssm,
        settings: Settings,
        metrics: Metrics,
        store: Store<VaultConnection>,
    ) -> Context {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGED_BY.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Context {
            client,
            ssm,
            settings,
            recorder,
            metrics,
            store,
            failures: Mutex::new(HashMap::new()),
            confirmed: Mutex::new(HashMap::new()),
            scheduled: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Whether this is the first drift check this process schedules for `key`.
    fn first_check(&self, key: &str) -> bool {
        self.scheduled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned())
    }

    fn confirmed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Confirmed>> {
        self.confirmed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the connection `uid` was confirmed in SSM less than half a drift interval ago
    /// with the same spec generation, Secret version and parameter version as `now`.
    fn recently_confirmed(&self, uid: &str, now: &Confirmed) -> bool {
        self.confirmed().get(uid).is_some_and(|last| {
            last.at.elapsed() < self.settings.drift_interval / 2
                && *last
                    == Confirmed {
                        at: last.at,
                        ..now.clone()
                    }
        })
    }

    /// Counts a failure of `key` and returns how many in a row.
    fn failed(&self, key: &str) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Errors that make a reconcile fail (and be retried with backoff). Failures the user can act
/// on are not errors: they are reported in status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// SSM failed while deleting the parameter.
    #[error(transparent)]
    Ssm(#[from] SsmError),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A namespaced object without a namespace.
    #[error("object has no namespace")]
    NoNamespace,
}

impl Error {
    /// A stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeError",
            Error::Ssm(e) => e.reason(),
            Error::Finalizer(_) => "FinalizerError",
            Error::NoNamespace => "NoNamespace",
        }
    }
}

fn fail(
    stage: Stage,
    reason: &'static str,
    message: impl Into<String>,
    transient: bool,
) -> Outcome {
    Outcome::NotReady(Failure {
        stage,
        reason,
        message: message.into(),
        transient,
    })
}

/// Reconciles one VaultConnection: the entry point the controller calls.
pub async fn reconcile(vc: Arc<VaultConnection>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let ns = vc.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<VaultConnection> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, vc, |event| async {
        match event {
            FinalizerEvent::Apply(vc) => apply(&vc, &ctx).await,
            FinalizerEvent::Cleanup(vc) => cleanup(&vc, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    });
    if let Err(e) = &result {
        ctx.metrics
            .reconciled(e.metric_label(), true, start.elapsed());
    }
    result
}

/// Retries a failed reconcile with jittered exponential backoff.
pub fn error_policy(vc: Arc<VaultConnection>, error: &Error, ctx: Arc<Context>) -> Action {
    let n = ctx.failed(&vc.uid().unwrap_or_default());
    tracing::warn!(
        namespace = vc.namespace().unwrap_or_default(),
        name = vc.name_any(),
        error = %error,
        attempt = n,
        "reconcile failed"
    );
    Action::requeue(backoff::jittered(
        n,
        Duration::from_secs(1),
        Duration::from_secs(300),
    ))
}

async fn apply(vc: &VaultConnection, ctx: &Context) -> Result<Action, Error> {
    let start = Instant::now();
    let outcome = evaluate(vc, ctx).await?;
    let now = Time(jiff::Timestamp::now());
    let next = status::next(vc.status.as_ref(), vc.metadata.generation, &outcome, now);
    if vc.status.as_ref() != Some(&next) {
        let api: Api<VaultConnection> =
            Api::namespaced(ctx.client.clone(), &vc.namespace().unwrap_or_default());
        let patch = serde_json::json!({ "status": next });
        api.patch_status(
            &vc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        publish_events(vc, &outcome, ctx).await;
    }
    let key = vc.uid().unwrap_or_default();
    let error = matches!(&outcome, Outcome::NotReady(f) if f.transient);
    ctx.metrics
        .reconciled(outcome.reason(), error, start.elapsed());
    tracing::info!(
        namespace = vc.namespace().unwrap_or_default(),
        name = vc.name_any(),
        reason = outcome.reason(),
        "reconciled"
    );
    let drift = backoff::spread(ctx.settings.drift_interval);
    Ok(match &outcome {
        Outcome::Ready { .. } => {
            ctx.succeeded(&key);
            // The first check after start-up lands anywhere in the interval, so a restart over
            // many connections does not bunch every later check into a tenth of it.
            if ctx.first_check(&key) {
                Action::requeue(backoff::anywhere_within(ctx.settings.drift_interval))
            } else {
                Action::requeue(drift)
            }
        }
        Outcome::NotReady(f) if f.transient => {
            let n = ctx.failed(&key);
            Action::requeue(backoff::jittered(
                n,
                Duration::from_secs(1),
                Duration::from_secs(120),
            ))
        }
        // SSM problems that need a change elsewhere (IAM, KMS, tags): retry slowly.
        Outcome::NotReady(f) if f.stage == Stage::Synced => {
            let n = ctx.failed(&key);
            Action::requeue(
                backoff::jittered(n, Duration::from_secs(30), ctx.settings.drift_interval)
                    .min(drift),
            )
        }
        // Spec and Secret problems: watches bring the fix; check again at the drift interval.
        Outcome::NotReady(_) => Action::requeue(drift),
    })
}

async fn publish_events(vc: &VaultConnection, outcome: &Outcome, ctx: &Context) {
    let previous = ready_reason(vc);
    let event = match outcome {
        Outcome::Ready { parameter, change } => {
            let (reason, verb) = match change {
                Change::Created => ("Created", "created"),
                Change::Updated => ("Updated", "updated"),
                Change::Adopted => ("Adopted", "adopted"),
                Change::None if previous == Some("Synced") => return,
                Change::None => ("Synced", "confirmed"),
            };
            Event {
                type_: EventType::Normal,
                reason: reason.into(),
                note: Some(format!(
                    "SSM parameter {} {verb} (version {}, {})",
                    parameter.name, parameter.version, parameter.tier
                )),
                action: "Sync".into(),
                secondary: None,
            }
        }
        Outcome::NotReady(f) if previous == Some(f.reason) => return,
        Outcome::NotReady(f) => Event {
            type_: EventType::Warning,
            reason: f.reason.into(),
            note: Some(f.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        },
    };
    if let Err(e) = ctx.recorder.publish(&event, &vc.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}

/// Decides what the parameter should be and makes it so. `Err` only for Kubernetes API errors.
async fn evaluate(vc: &VaultConnection, ctx: &Context) -> Result<Outcome, Error> {
    let name = vc.name_any();
    let ns = vc.namespace().ok_or(Error::NoNamespace)?;
    let spec = match validate_spec(&name, &vc.spec) {
        Ok(spec) => spec,
        Err(errors) => return Ok(fail(Stage::Valid, "InvalidSpec", summarize(&errors), false)),
    };
    if let Err(e) = check_kms_key(&spec, &ctx.settings.policy) {
        return Ok(fail(Stage::Valid, e.kind.reason(), e.to_string(), false));
    }
    let s = &ctx.settings;
    let param = match parameter_name(&s.prefix, &s.cluster, &ns, &name) {
        Ok(p) => p,
        Err(e) => return Ok(fail(Stage::Valid, "InvalidSpec", e.to_string(), false)),
    };
    let (data, secret_version) = match read_secret(ctx, &ns, &spec.secret_name).await? {
        Ok(found) => found,
        Err(failure) => return Ok(failure),
    };
    if let Some(failure) = tier_check(vc, &ns, ctx).await? {
        return Ok(failure);
    }
    let connection = match validate_credentials(&spec, &data, &s.policy) {
        Ok(c) => c,
        Err(errors) => {
            let reason = if errors.iter().any(|e| e.kind == ErrorKind::MissingKey) {
                ErrorKind::MissingKey.reason()
            } else {
                ErrorKind::InvalidCredentials.reason()
            };
            return Ok(fail(Stage::Valid, reason, summarize(&errors), false));
        }
    };
    drop(data);
    let doc = render(&connection);
    let recorded = vc
        .status
        .as_ref()
        .and_then(|st| st.parameter.as_ref())
        .filter(|p| p.name == param);
    let tier = match tier_for(
        doc.expose_secret().len(),
        recorded.and_then(|p| Tier::parse(&p.tier)),
    ) {
        Ok(t) => t,
        Err(e) => return Ok(fail(Stage::Valid, "ValueTooLarge", e.to_string(), false)),
    };
    let kms = spec
        .kms_key_id
        .clone()
        .unwrap_or_else(|| s.default_kms_key_id.clone());
    let spec_changed =
        vc.metadata.generation != vc.status.as_ref().and_then(|st| st.observed_generation);
    let target = Target {
        write: Write {
            name: &param,
            value: &doc,
            tier,
            kms_key_id: &kms,
        },
        tags: identity_tags(vc, &ns, &name, s),
        recorded,
        spec_changed,
    };
    let uid = vc.uid().unwrap_or_default();
    let seen = |parameter_version| Confirmed {
        generation: vc.metadata.generation,
        secret_version: secret_version.clone(),
        parameter_version,
        at: Instant::now(),
    };
    if let Some(recorded) = recorded
        && ctx.recently_confirmed(&uid, &seen(recorded.version))
    {
        return Ok(Outcome::Ready {
            parameter: recorded.clone(),
            change: Change::None,
        });
    }
    Ok(match sync(ctx, &target).await {
        Ok((parameter, change)) => {
            ctx.confirmed().insert(uid, seen(parameter.version));
            Outcome::Ready { parameter, change }
        }
        Err(SyncError::Ssm(e)) => fail(Stage::Synced, e.reason(), e.to_string(), e.is_transient()),
        Err(SyncError::NotOwned) => fail(
            Stage::Synced,
            "ParameterNotOwned",
            format!(
                "SSM parameter {param} exists but is not tagged managed-by={MANAGED_BY} for this connection; \
                 the operator will not overwrite it: delete it or tag it to hand it over"
            ),
            false,
        ),
    })
}

/// Reads the Secret's data, but only when it carries the opt-in label: a Secret without it is
/// never read.
async fn read_secret(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Result<(SecretData, Option<String>), Outcome>, Error> {
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
        None => fail(
            Stage::Valid,
            "SecretNotFound",
            format!(
                "Secret {name} not found in namespace {ns}; create it with the label {CREDENTIALS_LABEL}: \"true\""
            ),
            false,
        ),
        Some(_) => fail(
            Stage::Valid,
            "SecretNotLabeled",
            format!(
                "Secret {name} lacks the label {CREDENTIALS_LABEL}: \"true\"; the operator reads only Secrets that opt in"
            ),
            false,
        ),
    }))
}

/// Applies the namespace's tier limit: the oldest connections within it are served.
async fn tier_check(
    vc: &VaultConnection,
    ns: &str,
    ctx: &Context,
) -> Result<Option<Outcome>, Error> {
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
    Ok(Some(fail(
        Stage::Synced,
        "TierLimitExceeded",
        format!(
            "namespace {ns} is on tier {}{unknown}, which allows {limit} connection(s); this is number {} by \
             creation time, so nothing was written: delete another connection or ask a cluster admin to raise the tier",
            applied.tier,
            pos + 1
        ),
        false,
    )))
}

fn identity_tags(
    vc: &VaultConnection,
    ns: &str,
    name: &str,
    s: &Settings,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("managed-by".to_owned(), MANAGED_BY.to_owned()),
        ("vaultconnections.io/cluster".to_owned(), s.cluster.clone()),
        ("vaultconnections.io/namespace".to_owned(), ns.to_owned()),
        ("vaultconnections.io/name".to_owned(), name.to_owned()),
        (
            "vaultconnections.io/uid".to_owned(),
            vc.uid().unwrap_or_default(),
        ),
        (
            "vaultconnections.io/vault-type".to_owned(),
            vc.spec.vault_type.as_str().to_owned(),
        ),
    ])
}

/// A parameter is ours when its tags name this operator, cluster, namespace and connection.
/// (The uid tag is refreshed, not required: a connection deleted with `Retain` and created again
/// under the same name takes its parameter back.)
pub fn owned(tags: &BTreeMap<String, String>, identity: &BTreeMap<String, String>) -> bool {
    [
        "managed-by",
        "vaultconnections.io/cluster",
        "vaultconnections.io/namespace",
        "vaultconnections.io/name",
    ]
    .iter()
    .all(|k| tags.get(*k).is_some() && tags.get(*k) == identity.get(*k))
}

struct Target<'a> {
    write: Write<'a>,
    tags: BTreeMap<String, String>,
    /// The parameter as status records it (same name), if any.
    recorded: Option<&'a ParameterStatus>,
    spec_changed: bool,
}

enum SyncError {
    Ssm(SsmError),
    NotOwned,
}

impl From<SsmError> for SyncError {
    fn from(e: SsmError) -> Self {
        SyncError::Ssm(e)
    }
}

fn stored(w: &Write<'_>, version: i64, tier: Tier) -> ParameterStatus {
    ParameterStatus {
        name: w.name.to_owned(),
        version,
        tier: tier.as_str().to_owned(),
        kms_key_id: Some(w.kms_key_id.to_owned()),
    }
}

/// Brings the parameter to the target with the fewest calls: one read when nothing changed,
/// a read and a write for a rotation, and an ownership check before touching any version the
/// operator did not write itself.
async fn sync(ctx: &Context, t: &Target<'_>) -> Result<(ParameterStatus, Change), SyncError> {
    let w = &t.write;
    let Some(current) = ctx.ssm.get(w.name).await? else {
        return match ctx.ssm.create(w, &t.tags).await? {
            Some(version) => Ok((stored(w, version, w.tier), Change::Created)),
            // Created by someone else since we looked: decide again on the next attempt.
            None => Err(SsmError::Other {
                op: "PutParameter",
                code: "ParameterAlreadyExists".into(),
            }
            .into()),
        };
    };
    let same_value = current.value.expose_secret() == w.value.expose_secret();
    drop::<SecretString>(current.value);

    if let Some(recorded) = t.recorded.filter(|r| r.version == current.version) {
        // This version is the one we wrote or verified: no one else has touched it.
        let recorded_tier = Tier::parse(&recorded.tier);
        let same_kms = recorded.kms_key_id.as_deref() == Some(w.kms_key_id);
        if same_value && same_kms && recorded_tier == Some(w.tier) {
            return Ok((recorded.clone(), Change::None));
        }
        let tier = recorded_tier.map_or(w.tier, |r| r.max(w.tier));
        let version = ctx.ssm.overwrite(&Write { tier, ..*w }).await?;
        if t.spec_changed {
            ctx.ssm.add_tags(w.name, &t.tags).await?; // e.g. the vault type changed
        }
        return Ok((stored(w, version, tier), Change::Updated));
    }

    // A version we have not seen (first sight, or an out-of-band change): prove it is ours.
    let tags = ctx.ssm.tags(w.name).await?.unwrap_or_default();
    if !owned(&tags, &t.tags) {
        return Err(SyncError::NotOwned);
    }
    let described = ctx.ssm.describe(w.name).await?;
    let current_tier = described.as_ref().and_then(|d| d.tier);
    let current_kms = described.and_then(|d| d.kms_key_id);
    if tags != t.tags {
        ctx.ssm.add_tags(w.name, &t.tags).await?;
    }
    let tier = current_tier.map_or(w.tier, |c| c.max(w.tier));
    if same_value && current_kms.as_deref() == Some(w.kms_key_id) && current_tier == Some(tier) {
        return Ok((stored(w, current.version, tier), Change::Adopted));
    }
    let version = ctx.ssm.overwrite(&Write { tier, ..*w }).await?;
    Ok((stored(w, version, tier), Change::Updated))
}

async fn cleanup(vc: &VaultConnection, ctx: &Context) -> Result<Action, Error> {
    let ns = vc.namespace().ok_or(Error::NoNamespace)?;
    let name = vc.name_any();
    let s = &ctx.settings;
    let note = match (
        vc.spec.deletion_policy,
        parameter_name(&s.prefix, &s.cluster, &ns, &name),
    ) {
        (DeletionPolicy::Retain, Ok(param)) => Some((
            EventType::Normal,
            "Retained",
            format!("SSM parameter {param} retained (deletionPolicy: Retain)"),
        )),
        (_, Err(_)) => None, // no valid name: nothing can have been written
        (DeletionPolicy::Delete, Ok(param)) => match ctx.ssm.tags(&param).await? {
            None => None,
            Some(tags) if !owned(&tags, &identity_tags(vc, &ns, &name, s)) => Some((
                EventType::Warning,
                "ParameterNotOwned",
                format!("SSM parameter {param} is not tagged as this connection's; left in place"),
            )),
            Some(_) => {
                ctx.ssm.delete(&param).await?;
                Some((
                    EventType::Normal,
                    "Deleted",
                    format!("SSM parameter {param} deleted"),
                ))
            }
        },
    };
    if let Some((type_, reason, note)) = note {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Delete".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &vc.object_ref(&())).await {
            tracing::warn!(error = %e, "could not publish event");
        }
    }
    let uid = vc.uid().unwrap_or_default();
    ctx.succeeded(&uid);
    ctx.confirmed().remove(&uid);
    ctx.scheduled
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&uid);
    tracing::info!(namespace = ns, name, "cleaned up");
    Ok(Action::await_change())
}

/// What every controller scope of one operator process shares.
#[derive(Clone)]
pub struct Shared {
    /// Kubernetes client.
    pub client: Client,
    /// SSM client.
    pub ssm: Ssm,
    /// Settings.
    pub settings: Settings,
    /// Metrics.
    pub metrics: Metrics,
    /// Connections reconciled at once.
    pub concurrency: u16,
}

/// Runs one controller over `scope` (a namespace, or all with `None`) until `shutdown` resolves.
pub async fn run_scope(
    shared: Shared,
    scope: Option<String>,
    on_store: impl FnOnce(Store<VaultConnection>),
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let Shared {
        client,
        ssm,
        settings,
        metrics,
        concurrency,
    } = shared;
    fn api<K>(client: &Client, scope: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let controller = Controller::new(
        api::<VaultConnection>(&client, &scope),
        watcher::Config::default(),
    );
    let store = controller.store();
    on_store(store.clone());
    let ctx = Arc::new(Context::new(
        client.clone(),
        ssm,
        settings,
        metrics,
        store.clone(),
    ));

    // A rotated Secret reaches its connections: watch opted-in Secrets by metadata only.
    let by_secret = store.clone();
    let secrets: Api<PartialObjectMeta<Secret>> = api(&client, &scope);
    // A namespace's tier label changed: re-check its connections.
    let by_namespace = store.clone();
    let namespaces: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    let ns_config = match &scope {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    // A connection went away: serve siblings that were over their tier's limit.
    let by_sibling = store.clone();
    let siblings: Api<PartialObjectMeta<VaultConnection>> = api(&client, &scope);

    controller
        .watches(
            secrets,
            watcher::Config::default().labels(&format!("{CREDENTIALS_LABEL}=true")),
            move |secret| {
                let (ns, name) = (secret.namespace(), secret.name_any());
                by_secret
                    .state()
                    .iter()
                    .filter(|vc| {
                        vc.namespace() == ns && vc.spec.credentials_secret_ref.name == name
                    })
                    .map(|vc| ObjectRef::from_obj(&**vc))
                    .collect::<Vec<_>>()
            },
        )
        .watches(namespaces, ns_config, move |namespace| {
            let ns = Some(namespace.name_any());
            by_namespace
                .state()
                .iter()
                .filter(|vc| vc.namespace() == ns)
                .map(|vc| ObjectRef::from_obj(&**vc))
                .collect::<Vec<_>>()
        })
        .watches(siblings, watcher::Config::default(), move |changed| {
            let ns = changed.namespace();
            by_sibling
                .state()
                .iter()
                .filter(|vc| vc.namespace() == ns && ready_reason(vc) == Some("TierLimitExceeded"))
                .map(|vc| ObjectRef::from_obj(&**vc))
                .collect::<Vec<_>>()
        })
        .trigger_backoff(backoff::WatchBackoff::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}

/// A connection's Ready condition, if it has one.
pub fn ready_condition(vc: &VaultConnection) -> Option<&Condition> {
    vc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The reason of a connection's Ready condition, if it has one.
pub fn ready_reason(vc: &VaultConnection) -> Option<&str> {
    ready_condition(vc).map(|c| c.reason.as_str())
}
