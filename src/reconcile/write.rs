//! Step 6, write: looks at the parameter in SSM without decrypting it, asks the planner what to
//! do and does it; then reads back, without decrypting, the version and modification time its own
//! write produced — the evidence the drift sweep and the next reconcile compare with. Also removes
//! the parameter on delete. SSM failures become [`Failure`]s with their reason; AWS's message
//! text is never passed on.

use secrecy::ExposeSecret;

use super::context::Context;
use super::desired::Desired;
use super::evidence::Known;
use super::plan::{Described, Plan, Proof, Seen, Step, plan};
use crate::api::ParameterStatus;
use crate::document::{FORMAT, Tier};
use crate::ownership::{Identity, NotOurs, Removal, Takeover, removal};
use crate::reason::Reason;
use crate::ssm::{Meta, SsmError, Write};
use crate::status::{Change, Failure, Outcome};

/// Brings the parameter to `want`, and says what it holds afterwards (recording the Secret
/// version it was rendered from and the policy it was validated under).
pub async fn sync(ctx: &Context, want: &Desired) -> Outcome {
    match converge(ctx, want).await {
        Ok((mut parameter, change)) => {
            parameter.secret_resource_version = want.secret_version.clone();
            Outcome::Ready { parameter, change }
        }
        Err(failure) => {
            ctx.evidence.forget(&want.name);
            Outcome::NotReady(failure)
        }
    }
}

/// Looks, plans and carries the plan out. A parameter this process wrote itself and that is
/// untouched since costs one look (and a write when the credentials changed); anything else is
/// proven ours by its tags before it is described, decrypted, overwritten or adopted.
async fn converge(ctx: &Context, want: &Desired) -> Result<(ParameterStatus, Change), Failure> {
    let ssm = &ctx.ssm;
    let write_at = |tier| Write {
        name: &want.name,
        value: &want.value,
        tier,
        kms_key_id: &want.kms_key_id,
    };
    // What this process wrote last already holds these credentials: nothing to do, and no
    // call (were it changed since, the drift sweep finds it; nothing is overwritten here).
    let owner = want.identity.owner();
    if let Some(known) = ctx.evidence.get(&want.name, &owner)
        && known.digest == want.digest
        && known.kms_key_id == want.kms_key_id
        && known.tier == known.tier.max(want.tier)
    {
        return Ok(finish(ctx, want, known.meta, known.tier, Change::None));
    }
    // Always a look first (a read, without decryption): writes are the scarcer quota, and a
    // create tried blindly would spend one on every parameter that exists already (a connection
    // created again, a status lost in a restore).
    let seen = ssm.look(&want.name).await?;
    let known = seen
        .as_ref()
        .and_then(|meta| ctx.evidence.matching(&want.name, &owner, meta));
    // Each round adds what the planner asked for (tags, tier and key, value), so this ends.
    let mut proof: Option<Proof> = None;
    let (steps, tier, change) = loop {
        let now = match &seen {
            None => Seen::Missing,
            Some(_) => Seen::Present {
                known: known.as_ref(),
                proof: proof.as_ref(),
            },
        };
        match plan(want, now) {
            Plan::Apply {
                steps,
                tier,
                change,
            } => break (steps, tier, change),
            Plan::NotOwned(why) => return Err(not_owned(&want.name, &why)),
            Plan::ReadTags => {
                proof = Some(Proof::tags(ssm.tags(&want.name).await?.unwrap_or_default()));
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
            Plan::ReadValue => {
                // Proven ours and on the desired key: the one decrypting read.
                let same = ssm
                    .decrypt(&want.name)
                    .await?
                    .is_some_and(|v| v.expose_secret() == want.value.expose_secret());
                proof = proof.map(|p| Proof {
                    same_value: Some(same),
                    ..p
                });
            }
        }
    };
    let write = write_at(tier);
    let mut written = None;
    for step in steps {
        match step {
            Step::Create => {
                written = Some(ssm.create(&write, &want.tags).await?.ok_or(
                    // Created by someone else since we looked: decide again on the next attempt.
                    SsmError::Other {
                        op: "PutParameter",
                        code: "ParameterAlreadyExists".into(),
                    },
                )?);
            }
            Step::Overwrite => written = Some(ssm.overwrite(&write).await?),
            Step::Tag => ssm.add_tags(&want.name, &want.tags).await?,
        }
    }
    let meta = match written {
        Some(version) => confirm(ctx, &want.name, version).await?,
        // Proven ours (or known) and holding the document, as it was when looked at (a plan for
        // a missing parameter always writes).
        None => seen.ok_or_else(|| Failure::new(Reason::SyncFailed, "nothing was written"))?,
    };
    Ok(finish(ctx, want, meta, tier, change))
}

/// Reads back what the operator's own write of `version` produced: its version and modification
/// time, without decryption. Someone else's write in between is a transient failure (the next
/// attempt proves ownership again).
async fn confirm(ctx: &Context, name: &str, version: i64) -> Result<Meta, Failure> {
    match ctx.ssm.look(name).await? {
        Some(meta) if meta.version == version => Ok(meta),
        _ => Err(Failure::new(
            Reason::SyncFailed,
            format!(
                "SSM parameter {name} changed again right after the operator wrote version \
                 {version}; checking it again"
            ),
        )),
    }
}

/// Remembers what the parameter holds now, and says so for status.
fn finish(
    ctx: &Context,
    want: &Desired,
    meta: Meta,
    tier: Tier,
    change: Change,
) -> (ParameterStatus, Change) {
    ctx.evidence.remember(
        &want.name,
        Known {
            owner: want.identity.owner(),
            meta: meta.clone(),
            digest: want.digest,
            kms_key_id: want.kms_key_id.clone(),
            tier,
            source: Some(want.source),
        },
    );
    let parameter = ParameterStatus {
        name: want.name.clone(),
        version: meta.version,
        last_modified: meta.modified,
        tier: tier.as_str().to_owned(),
        kms_key_id: Some(want.kms_key_id.clone()),
        secret_resource_version: None,
        document_format: Some(FORMAT),
        policy: Some(ctx.settings.policy.fingerprint()),
    };
    (parameter, change)
}

/// The failure for a parameter that is not this connection's.
pub fn not_owned(name: &str, why: &NotOurs) -> Failure {
    Failure::new(
        Reason::ParameterNotOwned,
        format!(
            "SSM parameter {name} exists but is not this connection's: {}; the operator will not \
             read, overwrite or delete it: delete it, or tag it managed-by={} for this \
             connection to hand it over",
            why.explain(),
            crate::ownership::MANAGED_BY
        ),
    )
}

/// Deletes the parameter `name` if its tags (read from SSM) prove it is `me`'s; says what was
/// done.
pub async fn remove(
    ctx: &Context,
    name: &str,
    me: &Identity,
    how: Takeover,
) -> Result<Removal, SsmError> {
    let tags = ctx.ssm.tags(name).await?;
    let decision = removal(tags.as_ref(), me, how);
    if decision == Removal::Delete {
        ctx.ssm.delete(name).await?;
    }
    ctx.evidence.forget(name);
    Ok(decision)
}
