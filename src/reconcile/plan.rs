//! Step 5, plan (pure): from what SSM holds and what the parameter should be to the SSM steps
//! that get there with the fewest calls — create, nothing, overwrite, prove ownership then adopt
//! or overwrite, or refuse a parameter that is not ours. The tier is never downgraded.
//!
//! Evidence comes first and cheapest: a parameter this process wrote or proved itself, still at
//! the same version and modification time, needs no further look. Anything else is proven ours
//! by its tags (read from SSM) before it is touched, then described (tier, key), and decrypted
//! only when it is ours, on the desired key and tier, and its content is the one question left.
//! No I/O: [`super::write`] looks, asks [`plan`] again with what it saw, and carries the steps out.

use super::desired::Desired;
use super::evidence::Known;
use crate::document::Tier;
use crate::ownership::{NotOurs, Tags, owned};
use crate::status::Change;

/// What the writer has seen of the parameter so far.
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    /// No parameter of that name.
    Missing,
    /// A parameter exists.
    Present {
        /// What this process knows it holds, when SSM still shows this process's own write
        /// (same version and modification time).
        known: Option<&'a Known>,
        /// Its tags, tier, key and content, as far as they were read to prove ownership.
        proof: Option<&'a Proof>,
    },
}

/// What SSM says about a parameter's owner, then its tier and key, then its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// Its tags.
    pub tags: Tags,
    /// Its tier and key, once described.
    pub described: Option<Described>,
    /// Whether it holds exactly the desired document, once decrypted.
    pub same_value: Option<bool>,
}

impl Proof {
    /// A proof that has read the tags and nothing else yet.
    pub fn tags(tags: Tags) -> Proof {
        Proof {
            tags,
            described: None,
            same_value: None,
        }
    }
}

/// A parameter's tier and key as SSM describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// Its tier, if SSM reports a known one.
    pub tier: Option<Tier>,
    /// Its KMS key as SSM reports it.
    pub kms_key_id: Option<String>,
}

/// One SSM call that changes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create the parameter with its tags (never overwriting).
    Create,
    /// Write a new version at the plan's tier.
    Overwrite,
    /// Set the identity tags.
    Tag,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Neither written nor proven by this process at this version: read its tags, then plan
    /// again.
    ReadTags,
    /// It is ours by its tags: read its tier and key, then plan again.
    Describe,
    /// Ours, on the desired key and tier: read (decrypt) its value, then plan again.
    ReadValue,
    /// The parameter is not ours: touch nothing (and never decrypt it).
    NotOwned(NotOurs),
    /// Carry out `steps` in order; the parameter then holds the document at `tier`.
    Apply {
        /// Calls to make, possibly none.
        steps: Vec<Step>,
        /// The parameter's tier afterwards.
        tier: Tier,
        /// What this does to the parameter, for status and events.
        change: Change,
    },
}

/// Plans the way from what was seen to what is desired.
pub fn plan(want: &Desired, seen: Seen<'_>) -> Plan {
    let Seen::Present { known, proof } = seen else {
        return Plan::Apply {
            steps: vec![Step::Create],
            tier: want.tier,
            change: Change::Created,
        };
    };
    if let Some(known) = known {
        // Our own write (or proof), untouched since: what it holds is known without a read.
        let tier = known.tier.max(want.tier);
        if known.digest == want.digest && known.kms_key_id == want.kms_key_id && known.tier == tier
        {
            return apply(vec![], tier, Change::None);
        }
        let mut steps = vec![Step::Overwrite];
        if want.spec_changed {
            steps.push(Step::Tag); // e.g. the vault type changed
        }
        return apply(steps, tier, Change::Updated);
    }
    let Some(proof) = proof else {
        return Plan::ReadTags;
    };
    if let Err(why) = owned(&proof.tags, &want.identity, want.takeover) {
        return Plan::NotOwned(why);
    }
    let Some(described) = &proof.described else {
        return Plan::Describe;
    };
    let mut steps = Vec::new();
    if proof.tags != want.tags {
        steps.push(Step::Tag);
    }
    let tier = described.tier.map_or(want.tier, |c| c.max(want.tier));
    let same_kms = described.kms_key_id.as_deref() == Some(want.kms_key_id.as_str());
    if !same_kms || described.tier != Some(tier) {
        // It is rewritten whatever it holds: no need to decrypt it.
        steps.push(Step::Overwrite);
        return apply(steps, tier, Change::Updated);
    }
    match proof.same_value {
        None => Plan::ReadValue,
        Some(true) => {
            // Status naming this parameter only chooses the word for the event.
            let change = if want.recorded.is_some() {
                Change::None
            } else {
                Change::Adopted
            };
            apply(steps, tier, change)
        }
        Some(false) => {
            steps.push(Step::Overwrite);
            apply(steps, tier, Change::Updated)
        }
    }
}

fn apply(steps: Vec<Step>, tier: Tier, change: Change) -> Plan {
    Plan::Apply {
        steps,
        tier,
        change,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::api::ParameterStatus;
    use crate::ownership::{
        CLUSTER_ID_TAG, Identity, Legacy, NAMESPACE_UID_TAG, Takeover, UID_TAG,
    };
    use crate::reconcile::evidence::Evidence;
    use crate::ssm::Meta;

    const KEY: &str = "alias/aws/ssm";

    fn identity() -> Identity {
        Identity::example()
    }

    fn want(e: &Evidence, tier: Tier, recorded: bool) -> Desired {
        let value = SecretString::from("{\"doc\":1}");
        Desired {
            name: "/p/prod/team-a/db".into(),
            digest: e.digest(&value),
            source: e.data_digest(&Default::default()),
            value,
            tier,
            kms_key_id: KEY.into(),
            tags: identity().tags(),
            identity: identity(),
            takeover: Takeover::NONE,
            recorded: recorded.then(|| ParameterStatus {
                name: "/p/prod/team-a/db".into(),
                version: 3,
                tier: tier.as_str().into(),
                kms_key_id: Some(KEY.into()),
                ..ParameterStatus::default()
            }),
            secret_version: None,
            spec_changed: false,
            provider: crate::validation::Provider::OnePassword {
                access_token: SecretString::from("ops_x"),
            },
        }
    }

    fn known(e: &Evidence, doc: &str, tier: Tier, key: &str) -> Known {
        Known {
            owner: ("u-2".into(), "ns-2".into()),
            meta: Meta {
                version: 3,
                modified: Some("2026-01-01T00:00:00.5Z".into()),
            },
            digest: e.digest(&SecretString::from(doc)),
            kms_key_id: key.into(),
            tier,
            source: None,
        }
    }

    fn by_evidence(k: &Known) -> Seen<'_> {
        Seen::Present {
            known: Some(k),
            proof: None,
        }
    }

    fn by_proof(p: &Proof) -> Seen<'_> {
        Seen::Present {
            known: None,
            proof: Some(p),
        }
    }

    fn proof(tags: Tags, tier: Tier, key: &str, same_value: Option<bool>) -> Proof {
        Proof {
            tags,
            described: Some(Described {
                tier: Some(tier),
                kms_key_id: Some(key.into()),
            }),
            same_value,
        }
    }

    #[test]
    fn a_missing_parameter_is_created() {
        let e = Evidence::default();
        let p = plan(&want(&e, Tier::Standard, false), Seen::Missing);
        assert_eq!(
            p,
            apply(vec![Step::Create], Tier::Standard, Change::Created)
        );
    }

    #[test]
    fn our_own_untouched_write_of_the_same_document_needs_nothing() {
        let e = Evidence::default();
        let k = known(&e, "{\"doc\":1}", Tier::Standard, KEY);
        let p = plan(&want(&e, Tier::Standard, true), by_evidence(&k));
        assert_eq!(p, apply(vec![], Tier::Standard, Change::None));
    }

    #[test]
    fn our_own_untouched_write_of_other_credentials_is_overwritten_without_reading_it() {
        let e = Evidence::default();
        let k = known(&e, "{\"doc\":0}", Tier::Standard, KEY);
        let p = plan(&want(&e, Tier::Standard, true), by_evidence(&k));
        assert_eq!(
            p,
            apply(vec![Step::Overwrite], Tier::Standard, Change::Updated)
        );
        let mut w = want(&e, Tier::Standard, true);
        w.spec_changed = true;
        assert_eq!(
            plan(&w, by_evidence(&k)),
            apply(
                vec![Step::Overwrite, Step::Tag],
                Tier::Standard,
                Change::Updated
            ),
            "a spec change retags after the overwrite"
        );
    }

    #[test]
    fn a_new_kms_key_or_a_larger_document_rewrites_our_own_write_and_never_downgrades() {
        let e = Evidence::default();
        let old_key = known(&e, "{\"doc\":1}", Tier::Standard, "alias/old");
        assert_eq!(
            plan(&want(&e, Tier::Standard, true), by_evidence(&old_key)),
            apply(vec![Step::Overwrite], Tier::Standard, Change::Updated)
        );
        let standard = known(&e, "{\"doc\":1}", Tier::Standard, KEY);
        assert_eq!(
            plan(&want(&e, Tier::Advanced, true), by_evidence(&standard)),
            apply(vec![Step::Overwrite], Tier::Advanced, Change::Updated)
        );
        let advanced = known(&e, "{\"doc\":0}", Tier::Advanced, KEY);
        assert_eq!(
            plan(&want(&e, Tier::Standard, true), by_evidence(&advanced)),
            apply(vec![Step::Overwrite], Tier::Advanced, Change::Updated)
        );
    }

    #[test]
    fn anything_not_known_from_this_process_is_proven_by_its_tags_first_whatever_status_says() {
        let e = Evidence::default();
        let present = Seen::Present {
            known: None,
            proof: None,
        };
        assert_eq!(
            plan(&want(&e, Tier::Standard, true), present),
            Plan::ReadTags
        );
        assert_eq!(
            plan(&want(&e, Tier::Standard, false), present),
            Plan::ReadTags
        );
    }

    #[test]
    fn a_parameter_of_another_owner_is_refused_before_it_is_described_or_decrypted() {
        let e = Evidence::default();
        let w = want(&e, Tier::Standard, true);
        let mut twin = identity().tags();
        twin.insert(CLUSTER_ID_TAG.into(), "id-dr".into());
        let theirs = Proof::tags(twin);
        assert_eq!(
            plan(&w, by_proof(&theirs)),
            Plan::NotOwned(NotOurs::OtherCluster)
        );
        let mut reused = identity().tags();
        reused.insert(NAMESPACE_UID_TAG.into(), "ns-1".into());
        assert_eq!(
            plan(&w, by_proof(&Proof::tags(reused))),
            Plan::NotOwned(NotOurs::OtherNamespace("ns-1".into()))
        );
        assert!(matches!(
            plan(&w, by_proof(&Proof::tags(Tags::new()))),
            Plan::NotOwned(_)
        ));
    }

    #[test]
    fn ours_by_tags_is_described_then_decrypted_only_on_the_desired_key_and_tier() {
        let e = Evidence::default();
        let w = want(&e, Tier::Standard, true);
        assert_eq!(
            plan(&w, by_proof(&Proof::tags(identity().tags()))),
            Plan::Describe
        );
        let unread = proof(identity().tags(), Tier::Standard, KEY, None);
        assert_eq!(plan(&w, by_proof(&unread)), Plan::ReadValue);
        let other_key = proof(identity().tags(), Tier::Standard, "alias/other", None);
        assert_eq!(
            plan(&w, by_proof(&other_key)),
            apply(vec![Step::Overwrite], Tier::Standard, Change::Updated),
            "rewritten on the new key without being read"
        );
        let lower = proof(identity().tags(), Tier::Standard, KEY, None);
        assert_eq!(
            plan(&want(&e, Tier::Advanced, true), by_proof(&lower)),
            apply(vec![Step::Overwrite], Tier::Advanced, Change::Updated)
        );
    }

    #[test]
    fn ours_holding_the_document_is_confirmed_or_adopted_without_a_write() {
        let e = Evidence::default();
        let same = proof(identity().tags(), Tier::Standard, KEY, Some(true));
        assert_eq!(
            plan(&want(&e, Tier::Standard, true), by_proof(&same)),
            apply(vec![], Tier::Standard, Change::None)
        );
        assert_eq!(
            plan(&want(&e, Tier::Standard, false), by_proof(&same)),
            apply(vec![], Tier::Standard, Change::Adopted)
        );
        let advanced = proof(identity().tags(), Tier::Advanced, KEY, Some(true));
        assert_eq!(
            plan(&want(&e, Tier::Standard, false), by_proof(&advanced)),
            apply(vec![], Tier::Advanced, Change::Adopted),
            "an Advanced parameter stays Advanced"
        );
    }

    #[test]
    fn ours_changed_out_of_band_is_overwritten_and_stale_tags_refreshed() {
        let e = Evidence::default();
        let changed = proof(identity().tags(), Tier::Standard, KEY, Some(false));
        assert_eq!(
            plan(&want(&e, Tier::Standard, true), by_proof(&changed)),
            apply(vec![Step::Overwrite], Tier::Standard, Change::Updated)
        );
        let mut stale = identity().tags();
        stale.insert(UID_TAG.into(), "u-1".into());
        let retained = proof(stale, Tier::Standard, KEY, Some(true));
        assert_eq!(
            plan(&want(&e, Tier::Standard, false), by_proof(&retained)),
            apply(vec![Step::Tag], Tier::Standard, Change::Adopted)
        );
    }

    #[test]
    fn a_legacy_parameter_is_taken_over_only_when_asked_and_then_tagged() {
        let e = Evidence::default();
        let mut legacy = identity().tags();
        legacy.remove(CLUSTER_ID_TAG);
        legacy.remove(NAMESPACE_UID_TAG);
        let p = proof(legacy, Tier::Standard, KEY, Some(true));
        let mut w = want(&e, Tier::Standard, false);
        assert!(matches!(plan(&w, by_proof(&p)), Plan::NotOwned(_)));
        w.takeover = Takeover {
            legacy: Legacy::Adopt,
            adopt: false,
        };
        assert_eq!(
            plan(&w, by_proof(&p)),
            apply(vec![Step::Tag], Tier::Standard, Change::Adopted),
            "adopting writes the cluster-id and namespace-uid tags"
        );
    }
}
