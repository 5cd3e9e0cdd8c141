//! Step 4, write: looks at the parameter in SSM, asks the planner what to do and does it. Also
//! removes the parameter on delete. SSM failures become [`Failure`]s with their reason; AWS's message text is
//! never passed on.

use secrecy::ExposeSecret;

use super::context::Context;
use super::desired::Desired;
use super::plan::{Described, Plan, Proof, Removal, Seen, Step, Tags, plan, removal};
use crate::api::ParameterStatus;
use crate::document::{FORMAT, Tier};
use crate::reason::Reason;
use crate::ssm::{SsmError, Write};
use crate::status::{Change, Failure, Outcome};

/// The condition reason of an SSM failure.
pub fn reason_of(e: &SsmError) -> Reason {
    match e {
        SsmError::Throttled { .. } => Reason::Throttled,
        SsmError::AccessDenied { .. } => Reason::AccessDenied,
        SsmError::Kms { .. } => Reason::KmsKeyError,
        SsmError::Other { .. } => Reason::SyncFailed,
    }
}

impl From<SsmError> for Failure {
    fn from(e: SsmError) -> Failure {
        Failure::new(reason_of(&e), e.to_string())
    }
}

/// Brings the parameter to `want`, and says what it holds afterwards (recording the Secret
/// version it was rendered from).
pub async fn sync(ctx: &Context, want: &Desired, secret_version: Option<String>) -> Outcome {
    match converge(ctx, want).await {
        Ok((mut parameter, change)) => {
            parameter.secret_resource_version = secret_version;
            Outcome::Ready { parameter, change }
        }
        Err(failure) => Outcome::NotReady(failure),
    }
}

/// Looks, plans and carries the plan out: one read when nothing changed, a read and a write for
/// a rotation, and an ownership check before touching any version we did not write ourselves.
async fn converge(ctx: &Context, want: &Desired) -> Result<(ParameterStatus, Change), Failure> {
    let ssm = &ctx.ssm;
    let (seen_version, same_value) = match ssm.get(&want.name).await? {
        None => (None, false),
        Some(current) => (
            Some(current.version),
            current.value.expose_secret() == want.value.expose_secret(),
        ),
    };
    // Each round adds what the planner asked for (tags, then tier and key), so this ends.
    let mut proof: Option<Proof> = None;
    let (steps, tier, change) = loop {
        match plan(want, seen(seen_version, same_value, proof.as_ref())) {
            Plan::Apply {
                steps,
                tier,
                change,
            } => break (steps, tier, change),
            Plan::NotOwned => return Err(not_owned(&want.name)),
            Plan::ReadTags => {
                let tags = ssm.tags(&want.name).await?.unwrap_or_default();
                proof = Some(Proof {
                    tags,
                    described: None,
                });
            }
            Plan::Describe => {
                let d = ssm.describe(&want.name).await?;
                let described = Described {
                    tier: d.as_ref().and_then(|d| d.tier),
                    kms_key_id: d.and_then(|d| d.kms_key_id),
                };
                proof = proof.map(|p| Proof {
                    described: Some(described),
                    ..p
                });
            }
        }
    };
    let write = Write {
        name: &want.name,
        value: &want.value,
        tier,
        kms_key_id: &want.kms_key_id,
    };
    let mut version = seen_version.unwrap_or_default();
    for step in steps {
        match step {
            Step::Create => {
                version = ssm.create(&write, &want.tags).await?.ok_or(
                    // Created by someone else since we looked: decide again on the next attempt.
                    SsmError::Other {
                        op: "PutParameter",
                        code: "ParameterAlreadyExists".into(),
                    },
                )?;
            }
            Step::Overwrite => version = ssm.overwrite(&write).await?,
            Step::Tag => ssm.add_tags(&want.name, &want.tags).await?,
        }
    }
    Ok((stored(&write, version, tier), change))
}

fn seen(version: Option<i64>, same_value: bool, proof: Option<&Proof>) -> Seen<'_> {
    match version {
        None => Seen::Missing,
        Some(version) => Seen::Present {
            version,
            same_value,
            proof,
        },
    }
}

fn not_owned(name: &str) -> Failure {
    Failure::new(
        Reason::ParameterNotOwned,
        format!(
            "SSM parameter {name} exists but is not tagged managed-by={} for this connection of this cluster \
             (cluster name and cluster id); the operator will not overwrite it: delete it or tag it to hand it over",
            super::context::MANAGED_BY
        ),
    )
}

fn stored(w: &Write<'_>, version: i64, tier: Tier) -> ParameterStatus {
    ParameterStatus {
        name: w.name.to_owned(),
        version,
        tier: tier.as_str().to_owned(),
        kms_key_id: Some(w.kms_key_id.to_owned()),
        secret_resource_version: None,
        document_format: Some(FORMAT),
    }
}

/// Deletes the parameter `name` if it is ours; says what was done.
pub async fn remove(ctx: &Context, name: &str, identity: &Tags) -> Result<Removal, SsmError> {
    let tags = ctx.ssm.tags(name).await?;
    let decision = removal(tags.as_ref(), identity, ctx.settings.legacy);
    if decision == Removal::Delete {
        ctx.ssm.delete(name).await?;
    }
    Ok(decision)
}
