//! The thin SSM shell: the few Parameter Store calls the operator makes, with errors classified
//! by AWS error code (AWS's message text is never passed on), `TooManyUpdates` retried with
//! jittered backoff, and `PutParameter` held to a client-side rate.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::{
    ParameterStringFilter, ParameterTier, ParameterType, ResourceTypeForTagging, Tag,
};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};

use crate::document::{Tier, TierChoice};
use crate::fair::{self, Turns};
use crate::lease::Fence;
use crate::metrics::Metrics;

/// Why an SSM call failed, by class. Each maps to a condition reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsmError {
    /// Throttled (`ThrottlingException`, `TooManyUpdates`) even after retries: transient.
    #[error("SSM {op} was throttled ({code}); retrying with backoff")]
    Throttled {
        /// The SSM operation.
        op: &'static str,
        /// AWS error code.
        code: String,
    },
    /// The operator's AWS identity may not do this: permanent until IAM changes.
    #[error(
        "SSM {op} was denied ({code}); grant the operator's IAM role ssm:{op} on the parameter"
    )]
    AccessDenied {
        /// The SSM operation.
        op: &'static str,
        /// AWS error code.
        code: String,
    },
    /// The operator's own AWS credentials failed: expired, unknown to AWS, or not obtainable
    /// from the credential chain (web identity token, Pod Identity agent, assumed role).
    #[error(
        "SSM {op} failed on the operator's AWS credentials ({code}); check the pod's identity \
         (IRSA token, Pod Identity association, --ssm-role-arn trust policy) and its clock"
    )]
    Credentials {
        /// The SSM operation.
        op: &'static str,
        /// AWS error code, or the class of the credential chain's failure.
        code: String,
    },
    /// The KMS key is unusable (unknown, disabled, or not allowed): permanent until it changes.
    #[error("SSM {op} failed on the KMS key ({code}); check spec.ssm.kmsKeyId and the key policy")]
    Kms {
        /// The SSM operation.
        op: &'static str,
        /// AWS error code.
        code: String,
    },
    /// This replica no longer holds the leader Lease (or cannot renew it): nothing was sent.
    #[error("SSM {op} was not sent: this replica no longer holds the leader Lease")]
    NotLeader {
        /// The SSM operation.
        op: &'static str,
    },
    /// Anything else (network, 5xx, limits): reported, retried with backoff.
    #[error("SSM {op} failed ({code})")]
    Other {
        /// The SSM operation.
        op: &'static str,
        /// AWS error code, or the kind of transport failure.
        code: String,
    },
}

/// Classifies an SDK error by its AWS code alone, so no AWS message text (which can quote
/// request content) ever reaches status, events or logs.
fn classify<E>(op: &'static str, err: &SdkError<E>) -> SsmError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Some(failed) = credentials_failure(err) {
        return SsmError::Credentials {
            op,
            code: crate::aws::kind(failed).to_owned(),
        };
    }
    let code = match err {
        SdkError::ServiceError(e) => e.err().code().unwrap_or("Unknown").to_owned(),
        SdkError::TimeoutError(_) => "Timeout".to_owned(),
        SdkError::DispatchFailure(_) => "ConnectionFailed".to_owned(),
        SdkError::ResponseError(_) => "InvalidResponse".to_owned(),
        SdkError::ConstructionFailure(_) => "RequestConstruction".to_owned(),
        _ => "Unknown".to_owned(),
    };
    match code.as_str() {
        "ThrottlingException" | "TooManyUpdates" | "RequestLimitExceeded" => {
            SsmError::Throttled { op, code }
        }
        "AccessDeniedException" => SsmError::AccessDenied { op, code },
        "ExpiredTokenException"
        | "ExpiredToken"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch" => SsmError::Credentials { op, code },
        c if c == "InvalidKeyId" || c.starts_with("KMS") || c.starts_with("Kms") => {
            SsmError::Kms { op, code }
        }
        _ => SsmError::Other { op, code },
    }
}

/// The credential chain's failure, when that is why the request was never sent.
fn credentials_failure<E>(
    err: &SdkError<E>,
) -> Option<&aws_credential_types::provider::error::CredentialsError>
where
    E: std::error::Error + 'static,
{
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(failed) = e.downcast_ref() {
            return Some(failed);
        }
        cause = e.source();
    }
    None
}

fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// What any write to a parameter changes, read without decryption: its version and the time of
/// its last modification. A version alone repeats (it restarts at 1 when a parameter is deleted
/// and created again); the pair does not, so it is the evidence that SSM still holds a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Version number.
    pub version: i64,
    /// `LastModifiedDate` as RFC 3339 with every digit SSM gave (`None` if SSM gave none).
    pub modified: Option<String>,
}

impl Meta {
    fn of(p: &aws_sdk_ssm::types::Parameter) -> Meta {
        Meta {
            version: p.version,
            modified: p.last_modified_date.as_ref().and_then(rfc3339),
        }
    }
}

/// An SDK timestamp as RFC 3339 with all its sub-second digits (the same value gives the same
/// text, so recorded and observed times compare exactly).
fn rfc3339(t: &aws_sdk_ssm::primitives::DateTime) -> Option<String> {
    jiff::Timestamp::new(t.secs(), i32::try_from(t.subsec_nanos()).ok()?)
        .ok()
        .map(|ts| ts.to_string())
}

/// A parameter's tier and KMS key, as SSM describes them.
pub struct Description {
    /// Tier, if SSM reports a known one.
    pub tier: Option<Tier>,
    /// KMS key id as SSM reports it.
    pub kms_key_id: Option<String>,
}

/// A write to make.
pub struct Write<'a> {
    /// Parameter name.
    pub name: &'a str,
    /// Value (a secret).
    pub value: &'a SecretString,
    /// Tier.
    pub tier: Tier,
    /// KMS key id.
    pub kms_key_id: &'a str,
}

/// Names `GetParameters` accepts in one call (AWS's limit).
pub const VERSIONS_PER_CALL: usize = 10;

/// The SSM client the controller uses.
#[derive(Clone)]
pub struct Ssm {
    client: aws_sdk_ssm::Client,
    /// PutParameter call slots, shared fairly between namespaces.
    writes: Turns<()>,
    /// Read call slots, shared fairly between namespaces.
    reads: Turns<()>,
    metrics: Metrics,
    fence: Fence,
    choice: TierChoice,
}

/// SSM tags from a tag map (a tag's builder fails only without key or value, which a map entry
/// always has).
fn to_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

/// A limiter of `rate` calls per second (fractional rates allowed, at least one an hour), with a
/// burst of one second's worth.
fn limiter(rate: f64) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / rate.clamp(1.0 / 3600.0, 10_000.0));
    let burst = NonZeroU32::new(rate.max(1.0) as u32).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    RateLimiter::direct(quota)
}

const TOO_MANY_UPDATES_RETRIES: u32 = 4;

impl Ssm {
    /// Wraps a client. `write_rate` is PutParameter calls per second (AWS's default quota is
    /// 3); `read_rate` is GetParameter, DescribeParameters and ListTagsForResource calls per
    /// second together (GetParameter's default quota is 40), so a restart over many connections
    /// does not burst into throttling.
    pub fn new(
        client: aws_sdk_ssm::Client,
        write_rate: f64,
        read_rate: f64,
        metrics: Metrics,
    ) -> Ssm {
        Ssm {
            client,
            writes: fair::rate(Arc::new(limiter(write_rate))),
            reads: fair::rate(Arc::new(limiter(read_rate))),
            metrics,
            fence: Fence::open(),
            choice: TierChoice::default(),
        }
    }

    /// The same client, asking SSM for tiers as `choice` says (with `intelligent-tiering`,
    /// every write asks for it and SSM picks).
    pub fn tiered(self, choice: TierChoice) -> Ssm {
        Ssm { choice, ..self }
    }

    /// The same client, writing and deleting only while `fence` holds: checked right before
    /// each call, so a replica that lost the leader Lease starts no write or delete.
    pub fn fenced(self, fence: Fence) -> Ssm {
        Ssm { fence, ..self }
    }

    /// Waits for a read slot in the turn of the calling reconcile's namespace.
    async fn read_turn(&self) {
        // `None` only without a dispatcher, which lives as long as this client.
        let _ = self.reads.turn(&fair::tenant()).await;
    }

    /// Waits for a write slot in the turn of the calling reconcile's namespace.
    async fn write_turn(&self) {
        let _ = self.writes.turn(&fair::tenant()).await;
    }

    fn may_write(&self, op: &'static str) -> Result<(), SsmError> {
        if self.fence.holds() {
            Ok(())
        } else {
            self.metrics.ssm_call(op, "fenced");
            Err(SsmError::NotLeader { op })
        }
    }

    fn record<T, E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        op: &'static str,
        result: &Result<T, SdkError<E>>,
    ) {
        let outcome = match result {
            Ok(_) => "success",
            Err(e) => match classify(op, e) {
                SsmError::Throttled { .. } => "throttled",
                SsmError::Credentials { .. } => "credentials",
                _ if error_code(e) == Some("ParameterNotFound") => "not_found",
                _ => "error",
            },
        };
        self.metrics.ssm_call(op, outcome);
        tracing::debug!(op, outcome, "ssm call");
    }

    /// Reads a parameter's value, decrypted; `None` when it does not exist. The only decrypting
    /// call: the writer makes it only for a parameter its tags prove ours, on the desired key.
    pub async fn decrypt(&self, name: &str) -> Result<Option<SecretString>, SsmError> {
        self.read_turn().await;
        let result = self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await;
        self.record("GetParameter", &result);
        match result {
            Ok(out) => Ok(Some(SecretString::from(
                out.parameter.and_then(|p| p.value).unwrap_or_default(),
            ))),
            Err(e) if error_code(&e) == Some("ParameterNotFound") => Ok(None),
            Err(e) => Err(classify("GetParameter", &e)),
        }
    }

    /// What SSM holds for up to [`VERSIONS_PER_CALL`] parameters — version and last-modified
    /// time — in one `GetParameters` call, without decryption (no KMS call, and the encrypted
    /// values are dropped unread). A name missing from the answer does not exist.
    pub async fn metadata(&self, names: &[String]) -> Result<BTreeMap<String, Meta>, SsmError> {
        self.read_turn().await;
        let result = self
            .client
            .get_parameters()
            .set_names(Some(names.to_vec()))
            .with_decryption(false)
            .send()
            .await;
        self.record("GetParameters", &result);
        let out = result.map_err(|e| classify("GetParameters", &e))?;
        Ok(out
            .parameters
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| Some((p.name.clone()?, Meta::of(&p))))
            .collect())
    }

    /// What SSM holds for one parameter, without decryption; `None` when it does not exist.
    pub async fn look(&self, name: &str) -> Result<Option<Meta>, SsmError> {
        Ok(self.metadata(&[name.to_owned()]).await?.remove(name))
    }

    /// The names of the parameters directly under `path` (one level, e.g. a namespace's) that
    /// carry the tag `tag` (key, value), 50 per `DescribeParameters` page. No values are read.
    pub async fn names_under(
        &self,
        path: &str,
        tag: (&str, &str),
    ) -> Result<BTreeSet<String>, SsmError> {
        let construction = || SsmError::Other {
            op: "DescribeParameters",
            code: "RequestConstruction".into(),
        };
        let under = ParameterStringFilter::builder()
            .key("Path")
            .option("OneLevel")
            .values(path)
            .build()
            .map_err(|_| construction())?;
        let tagged = ParameterStringFilter::builder()
            .key(format!("tag:{}", tag.0))
            .option("Equals")
            .values(tag.1)
            .build()
            .map_err(|_| construction())?;
        let mut names = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            self.read_turn().await;
            let result = self
                .client
                .describe_parameters()
                .parameter_filters(under.clone())
                .parameter_filters(tagged.clone())
                .max_results(50)
                .set_next_token(token.take())
                .send()
                .await;
            self.record("DescribeParameters", &result);
            let out = result.map_err(|e| classify("DescribeParameters", &e))?;
            names.extend(
                out.parameters
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| p.name),
            );
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(names),
            }
        }
    }

    /// Reads a parameter's tier and KMS key.
    pub async fn describe(&self, name: &str) -> Result<Option<Description>, SsmError> {
        let filter = ParameterStringFilter::builder()
            .key("Name")
            .option("Equals")
            .values(name)
            .build()
            .map_err(|_| SsmError::Other {
                op: "DescribeParameters",
                code: "RequestConstruction".into(),
            })?;
        self.read_turn().await;
        let result = self
            .client
            .describe_parameters()
            .parameter_filters(filter)
            .send()
            .await;
        self.record("DescribeParameters", &result);
        let out = result.map_err(|e| classify("DescribeParameters", &e))?;
        Ok(out
            .parameters
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| Description {
                // AWS describes the tier Intelligent-Tiering picked; an emulator may echo the
                // request instead, which holds at least a Standard parameter.
                tier: p.tier.as_ref().and_then(|t| match t {
                    ParameterTier::IntelligentTiering => Some(Tier::Standard),
                    t => Tier::parse(t.as_str()),
                }),
                kms_key_id: p.key_id,
            }))
    }

    /// Reads a parameter's tags; `None` when it does not exist.
    pub async fn tags(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, SsmError> {
        self.read_turn().await;
        let result = self
            .client
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send()
            .await;
        self.record("ListTagsForResource", &result);
        match result {
            Ok(out) => Ok(Some(
                out.tag_list
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| (t.key, t.value))
                    .collect(),
            )),
            Err(e)
                if matches!(
                    error_code(&e),
                    Some("InvalidResourceId" | "ParameterNotFound")
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify("ListTagsForResource", &e)),
        }
    }

    /// Creates a parameter with its tags and without overwrite. `Ok(None)` when it already
    /// exists (someone created it since we looked).
    pub async fn create(
        &self,
        w: &Write<'_>,
        tags: &BTreeMap<String, String>,
    ) -> Result<Option<i64>, SsmError> {
        self.put(w, false, Some(to_tags(tags))).await
    }

    /// Overwrites a parameter's value (no tags: AWS rejects tags together with overwrite).
    pub async fn overwrite(&self, w: &Write<'_>) -> Result<i64, SsmError> {
        self.put(w, true, None).await?.ok_or(SsmError::Other {
            op: "PutParameter",
            code: "ParameterAlreadyExists".into(),
        })
    }

    async fn put(
        &self,
        w: &Write<'_>,
        overwrite: bool,
        tags: Option<Vec<Tag>>,
    ) -> Result<Option<i64>, SsmError> {
        let tier = match (self.choice, w.tier) {
            (TierChoice::IntelligentTiering, _) => ParameterTier::IntelligentTiering,
            (_, Tier::Standard) => ParameterTier::Standard,
            (_, Tier::Advanced) => ParameterTier::Advanced,
        };
        let mut attempt = 0;
        loop {
            self.write_turn().await;
            self.may_write("PutParameter")?;
            let result = self
                .client
                .put_parameter()
                .name(w.name)
                .value(w.value.expose_secret())
                .r#type(ParameterType::SecureString)
                .key_id(w.kms_key_id)
                .tier(tier.clone())
                .overwrite(overwrite)
                .set_tags(tags.clone())
                .send()
                .await;
            self.record("PutParameter", &result);
            match result {
                Ok(out) => return Ok(Some(out.version)),
                Err(e) if error_code(&e) == Some("ParameterAlreadyExists") => return Ok(None),
                // The SDK retries ThrottlingException itself; TooManyUpdates is ours to retry.
                Err(e)
                    if error_code(&e) == Some("TooManyUpdates")
                        && attempt < TOO_MANY_UPDATES_RETRIES =>
                {
                    attempt += 1;
                    tokio::time::sleep(crate::backoff::jittered(
                        attempt,
                        Duration::from_millis(200),
                        Duration::from_secs(5),
                    ))
                    .await;
                }
                Err(e) => return Err(classify("PutParameter", &e)),
            }
        }
    }

    /// Sets tags on a parameter (adds or replaces the given keys).
    pub async fn add_tags(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), SsmError> {
        self.may_write("AddTagsToResource")?;
        let result = self
            .client
            .add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .set_tags(Some(to_tags(tags)))
            .send()
            .await;
        self.record("AddTagsToResource", &result);
        result
            .map(drop)
            .map_err(|e| classify("AddTagsToResource", &e))
    }

    /// Deletes a parameter; not-found counts as done.
    pub async fn delete(&self, name: &str) -> Result<(), SsmError> {
        self.may_write("DeleteParameter")?;
        let result = self.client.delete_parameter().name(name).send().await;
        self.record("DeleteParameter", &result);
        match result {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ParameterNotFound") => Ok(()),
            Err(e) => Err(classify("DeleteParameter", &e)),
        }
    }
}
