//! A connection as the cache holds it (pure): the slimmed `VaultConnection` (`slim`) in as few
//! bytes as it takes, and back. A fleet at rest holds one of these per connection and nothing
//! else of it, so their size is most of what a connection costs in memory.
//!
//! The Kubernetes type spends most of its bytes on what every connection repeats: five
//! conditions of four strings each (`Ready`, `True`, `Synced`, a fixed message), an
//! `ObjectMeta` of fifteen optional fields, the operator's finalizer, the parameter's name (the
//! operator's prefix, cluster, namespace and name again), the default KMS key, the validation
//! policy, timestamps as text. Here the words come from fixed tables (a byte each), the uid and
//! versions are numbers, the parameter name, KMS key and policy are a flag when they are the
//! operator's own ([`Common`]), and times are seconds and nanoseconds.
//!
//! Nothing is lost: an entry is kept compact only when expanding it gives back exactly the
//! connection it was made from (checked when it is made); any other shape — a word the tables
//! do not know, a foreign finalizer, an owner reference — is kept whole, as before.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};

use crate::api::{
    FINALIZER, ParameterStatus, VaultConnection, VaultConnectionSpec, VaultConnectionStatus,
    VerificationStatus,
};
use crate::reason::Reason;
use crate::status::{CONDITION_TYPES, FIXED_MESSAGES};

/// What the operator's settings make the same for most connections, held once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Common {
    /// `{prefix}/{cluster}/`: the start of every parameter name the operator derives.
    pub parameter_prefix: String,
    /// The operator's default KMS key.
    pub default_kms_key_id: String,
    /// The validation policy's fingerprint.
    pub policy: String,
}

/// One cached connection: compact, or whole when its shape is not the usual one.
#[derive(Debug, Clone)]
pub enum Compact {
    /// The usual shape, in few bytes.
    Slim(Box<Slim>),
    /// Any other shape, as it came.
    Whole(Box<VaultConnection>),
}

/// A connection of the usual shape (its namespace and name are the cache's keys).
#[derive(Debug, Clone, PartialEq)]
pub struct Slim {
    uid: [u8; 16],
    version: u64,
    generation: Option<i64>,
    created: Option<Time>,
    deleting: Option<Time>,
    grace: Option<i64>,
    /// The finalizers are exactly the operator's own (else none).
    finalized: bool,
    annotations: Option<BTreeMap<String, String>>,
    spec: VaultConnectionSpec,
    status: Option<Box<SlimStatus>>,
}

#[derive(Debug, Clone, PartialEq)]
struct SlimStatus {
    observed_generation: Option<i64>,
    conditions: Box<[SlimCondition]>,
    parameter: Option<SlimParameter>,
    last_sync: Option<Time>,
    verification: Option<Box<VerificationStatus>>,
}

/// A condition: its words by their place in [`WORDS`], its message by its place in
/// [`FIXED_MESSAGES`] (or its own text), its time as seconds and nanoseconds.
#[derive(Debug, Clone, PartialEq)]
struct SlimCondition {
    seconds: i64,
    generation: i64,
    message: Option<Box<str>>,
    nanos: i32,
    type_: u8,
    status: u8,
    reason: u8,
    /// 0: empty; 1 + i: `FIXED_MESSAGES[i]`; [`OWN`]: `message`. [`HAS_GENERATION`] is or-ed in.
    text: u8,
}

const OWN: u8 = 0x3f;
const HAS_GENERATION: u8 = 0x40;

#[derive(Debug, Clone, PartialEq)]
struct SlimParameter {
    /// `None`: the name the operator derives (`Common::parameter_prefix` + namespace + name).
    name: Option<Box<str>>,
    version: i64,
    modified: Option<(i64, i32)>,
    kms_key_id: Shared,
    policy: Shared,
    secret_version: Option<u64>,
    document_format: Option<i32>,
    tier: u8,
}

/// A string most connections share with the operator's settings.
#[derive(Debug, Clone, PartialEq)]
enum Shared {
    Absent,
    Common,
    Own(Box<str>),
}

impl Shared {
    fn new(value: Option<&String>, common: &str) -> Shared {
        match value {
            None => Shared::Absent,
            Some(v) if v == common => Shared::Common,
            Some(v) => Shared::Own(v.as_str().into()),
        }
    }

    fn expand(&self, common: &str) -> Option<String> {
        match self {
            Shared::Absent => None,
            Shared::Common => Some(common.to_owned()),
            Shared::Own(v) => Some(v.to_string()),
        }
    }
}

/// The words of conditions and parameters, a byte each: condition types (`Ready` first),
/// statuses, the tiers and every [`Reason`].
static WORDS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let fixed = ["True", "False", "Unknown", "Standard", "Advanced"];
    let reasons = Reason::ALL.iter().map(|r| r.as_str());
    let mut words: Vec<&'static str> = Vec::new();
    // `Valid` and `Synced` are condition types and reasons both: one code each.
    for w in CONDITION_TYPES.into_iter().chain(fixed).chain(reasons) {
        if !words.contains(&w) {
            words.push(w);
        }
    }
    words
});

/// The code of `Ready` in [`WORDS`].
const READY: u8 = 0;

fn word(code: u8) -> Option<&'static str> {
    WORDS.get(usize::from(code)).copied()
}

fn code(w: &str) -> Option<u8> {
    let at = WORDS.iter().position(|known| *known == w)?;
    u8::try_from(at).ok()
}

fn uid(text: &str) -> Option<[u8; 16]> {
    let parsed = uuid::Uuid::try_parse(text).ok()?;
    // Only the canonical spelling, so that it is spelt back the same.
    (parsed.hyphenated().to_string() == text).then(|| *parsed.as_bytes())
}

fn uid_text(bytes: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*bytes).hyphenated().to_string()
}

fn number(text: &str) -> Option<u64> {
    let n: u64 = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

fn timestamp(text: &str) -> Option<(i64, i32)> {
    let t: jiff::Timestamp = text.parse().ok()?;
    (t.to_string() == text).then(|| (t.as_second(), t.subsec_nanosecond()))
}

fn time_text((seconds, nanos): (i64, i32)) -> String {
    jiff::Timestamp::new(seconds, nanos)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl SlimCondition {
    fn new(c: &Condition) -> Option<SlimCondition> {
        let fixed = FIXED_MESSAGES.iter().position(|m| *m == c.message);
        let (text, message) = match fixed {
            _ if c.message.is_empty() => (0, None),
            Some(i) => (1 + u8::try_from(i).ok()?, None),
            None => (OWN, Some(c.message.as_str().into())),
        };
        let t = c.last_transition_time.0;
        Some(SlimCondition {
            seconds: t.as_second(),
            nanos: t.subsec_nanosecond(),
            generation: c.observed_generation.unwrap_or_default(),
            message,
            type_: code(&c.type_)?,
            status: code(&c.status)?,
            reason: code(&c.reason)?,
            text: text
                | if c.observed_generation.is_some() {
                    HAS_GENERATION
                } else {
                    0
                },
        })
    }

    fn expand(&self) -> Condition {
        let text = self.text & !HAS_GENERATION;
        let message = match text {
            0 => String::new(),
            OWN => self.message.as_deref().unwrap_or_default().to_owned(),
            i => FIXED_MESSAGES
                .get(usize::from(i - 1))
                .copied()
                .unwrap_or_default()
                .to_owned(),
        };
        Condition {
            type_: word(self.type_).unwrap_or_default().to_owned(),
            status: word(self.status).unwrap_or_default().to_owned(),
            reason: word(self.reason).unwrap_or_default().to_owned(),
            message,
            observed_generation: (self.text & HAS_GENERATION != 0).then_some(self.generation),
            last_transition_time: Time(
                jiff::Timestamp::new(self.seconds, self.nanos).unwrap_or_default(),
            ),
        }
    }
}

impl SlimParameter {
    fn new(p: &ParameterStatus, derived: &str, common: &Common) -> Option<SlimParameter> {
        let modified = match &p.last_modified {
            None => None,
            Some(text) => Some(timestamp(text)?),
        };
        let secret_version = match &p.secret_resource_version {
            None => None,
            Some(text) => Some(number(text)?),
        };
        Some(SlimParameter {
            name: (p.name != derived).then(|| p.name.as_str().into()),
            version: p.version,
            modified,
            kms_key_id: Shared::new(p.kms_key_id.as_ref(), &common.default_kms_key_id),
            policy: Shared::new(p.policy.as_ref(), &common.policy),
            secret_version,
            document_format: p.document_format,
            tier: code(&p.tier)?,
        })
    }

    fn expand(&self, derived: String, common: &Common) -> ParameterStatus {
        ParameterStatus {
            name: self.name.as_deref().map_or(derived, str::to_owned),
            version: self.version,
            last_modified: self.modified.map(time_text),
            tier: word(self.tier).unwrap_or_default().to_owned(),
            kms_key_id: self.kms_key_id.expand(&common.default_kms_key_id),
            secret_resource_version: self.secret_version.map(|v| v.to_string()),
            document_format: self.document_format,
            policy: self.policy.expand(&common.policy),
        }
    }
}

impl Slim {
    /// `vc` in few bytes, if it has the usual shape.
    fn new(vc: &VaultConnection, common: &Common) -> Option<Slim> {
        let m = &vc.metadata;
        let finalized = match m.finalizers.as_deref() {
            None => false,
            Some([only]) if only == FINALIZER => true,
            Some(_) => return None,
        };
        let derived = derived_name(common, m.namespace.as_deref()?, m.name.as_deref()?);
        let status = match &vc.status {
            None => None,
            Some(s) => Some(Box::new(SlimStatus {
                observed_generation: s.observed_generation,
                conditions: s
                    .conditions
                    .iter()
                    .map(SlimCondition::new)
                    .collect::<Option<_>>()?,
                parameter: match &s.parameter {
                    None => None,
                    Some(p) => Some(SlimParameter::new(p, &derived, common)?),
                },
                last_sync: s.last_sync_time.clone(),
                verification: s.verification.clone(),
            })),
        };
        Some(Slim {
            uid: uid(m.uid.as_deref()?)?,
            version: number(m.resource_version.as_deref()?)?,
            generation: m.generation,
            created: m.creation_timestamp.clone(),
            deleting: m.deletion_timestamp.clone(),
            grace: m.deletion_grace_period_seconds,
            finalized,
            annotations: m.annotations.clone(),
            spec: vc.spec.clone(),
            status,
        })
    }

    fn expand(&self, ns: &str, name: &str, common: &Common) -> VaultConnection {
        let metadata = ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            uid: Some(uid_text(&self.uid)),
            resource_version: Some(self.version.to_string()),
            generation: self.generation,
            creation_timestamp: self.created.clone(),
            deletion_timestamp: self.deleting.clone(),
            deletion_grace_period_seconds: self.grace,
            finalizers: self.finalized.then(|| vec![FINALIZER.to_owned()]),
            annotations: self.annotations.clone(),
            ..ObjectMeta::default()
        };
        let status = self.status.as_deref().map(|s| VaultConnectionStatus {
            observed_generation: s.observed_generation,
            conditions: s.conditions.iter().map(SlimCondition::expand).collect(),
            parameter: s
                .parameter
                .as_ref()
                .map(|p| p.expand(derived_name(common, ns, name), common)),
            last_sync_time: s.last_sync.clone(),
            verification: s.verification.clone(),
        });
        VaultConnection {
            metadata,
            spec: self.spec.clone(),
            status,
        }
    }
}

/// Whether two connections are equal in every field.
pub fn same(a: &VaultConnection, b: &VaultConnection) -> bool {
    a.metadata == b.metadata && a.spec == b.spec && a.status == b.status
}

/// The parameter name the operator derives for `name` in `ns`.
fn derived_name(common: &Common, ns: &str, name: &str) -> String {
    format!("{}{ns}/{name}", common.parameter_prefix)
}

/// What a connection's Ready condition says: its status is `True`, and its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness<'a> {
    /// The condition's status is `True`.
    pub ready: bool,
    /// Its status as written.
    pub status: &'a str,
    /// Its reason.
    pub reason: &'a str,
}

impl Compact {
    /// The cache's form of `vc` (slimmed already), in `ns` under `name`: compact when that
    /// expands back to exactly `vc`, else whole.
    pub fn new(vc: &VaultConnection, common: &Common) -> Compact {
        let (Some(ns), Some(name)) = (
            vc.metadata.namespace.as_deref(),
            vc.metadata.name.as_deref(),
        ) else {
            return Compact::Whole(Box::new(vc.clone()));
        };
        match Slim::new(vc, common) {
            Some(slim) if same(&slim.expand(ns, name, common), vc) => Compact::Slim(Box::new(slim)),
            _ => Compact::Whole(Box::new(vc.clone())),
        }
    }

    /// The connection again, as it was cached.
    pub fn expand(&self, ns: &str, name: &str, common: &Common) -> VaultConnection {
        match self {
            Compact::Slim(slim) => slim.expand(ns, name, common),
            Compact::Whole(vc) => (**vc).clone(),
        }
    }

    /// Whether it is kept compact.
    pub fn is_slim(&self) -> bool {
        matches!(self, Compact::Slim(_))
    }

    /// Its uid.
    pub fn uid(&self) -> Option<String> {
        match self {
            Compact::Slim(s) => Some(uid_text(&s.uid)),
            Compact::Whole(vc) => vc.metadata.uid.clone(),
        }
    }

    /// Its resourceVersion.
    pub fn resource_version(&self) -> Option<String> {
        match self {
            Compact::Slim(s) => Some(s.version.to_string()),
            Compact::Whole(vc) => vc.metadata.resource_version.clone(),
        }
    }

    /// When it was created.
    pub fn created(&self) -> Option<&Time> {
        match self {
            Compact::Slim(s) => s.created.as_ref(),
            Compact::Whole(vc) => vc.metadata.creation_timestamp.as_ref(),
        }
    }

    /// Whether it is being deleted.
    pub fn deleting(&self) -> bool {
        match self {
            Compact::Slim(s) => s.deleting.is_some(),
            Compact::Whole(vc) => vc.metadata.deletion_timestamp.is_some(),
        }
    }

    /// The name of the Secret it names.
    pub fn secret(&self) -> &str {
        match self {
            Compact::Slim(s) => &s.spec.credentials_secret_ref.name,
            Compact::Whole(vc) => &vc.spec.credentials_secret_ref.name,
        }
    }

    /// What its Ready condition says, if it has one.
    pub fn readiness(&self) -> Option<Readiness<'_>> {
        match self {
            Compact::Slim(s) => {
                let ready = s
                    .status
                    .as_ref()?
                    .conditions
                    .iter()
                    .find(|c| c.type_ == READY)?;
                let status = word(ready.status)?;
                Some(Readiness {
                    ready: status == "True",
                    status,
                    reason: word(ready.reason)?,
                })
            }
            Compact::Whole(vc) => {
                let c = crate::status::ready_condition(vc)?;
                Some(Readiness {
                    ready: c.status == "True",
                    status: &c.status,
                    reason: &c.reason,
                })
            }
        }
    }

    /// The parameter status records, with its name: what the drift sweep compares.
    pub fn parameter(&self, ns: &str, name: &str, common: &Common) -> Option<ParameterStatus> {
        match self {
            Compact::Slim(s) => {
                let p = s.status.as_ref()?.parameter.as_ref()?;
                Some(p.expand(derived_name(common, ns, name), common))
            }
            Compact::Whole(vc) => vc.status.as_ref()?.parameter.clone(),
        }
    }

    /// The name of the parameter status records, without building the rest of the record.
    pub fn parameter_name(&self, ns: &str, name: &str, common: &Common) -> Option<String> {
        match self {
            Compact::Slim(s) => {
                let p = s.status.as_ref()?.parameter.as_ref()?;
                Some(
                    p.name
                        .as_deref()
                        .map_or_else(|| derived_name(common, ns, name), str::to_owned),
                )
            }
            Compact::Whole(vc) => Some(vc.status.as_ref()?.parameter.as_ref()?.name.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
