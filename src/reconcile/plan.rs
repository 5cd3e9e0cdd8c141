//! Step 3, plan (pure): from what SSM holds and what the parameter should be to the SSM steps
//! that get there with the fewest calls — create, nothing, overwrite, prove ownership then adopt
//! or overwrite, or refuse a parameter that is not ours. The tier is never downgraded. No I/O:
//! [`super::write`] looks, asks [`plan`] again with what it saw, and carries the steps out.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::context::MANAGED_BY;
use super::desired::Desired;
use crate::api::VaultConnection;
use crate::config::Settings;
use crate::document::Tier;
use crate::status::Change;

/// The tags that name a parameter's owner.
pub type Tags = BTreeMap<String, String>;

/// The tag that names the cluster's identity (the kube-system namespace's uid by default).
pub const CLUSTER_ID_TAG: &str = "vaultconnections.io/cluster-id";

/// Tag keys that must match for a parameter to be ours (the uid and vault-type tags are
/// refreshed, not required: a connection deleted with `Retain` and created again under the same
/// name takes its parameter back). The cluster id keeps two clusters that share a cluster name,
/// an AWS account and a region from claiming each other's parameters.
const OWNER_KEYS: [&str; 5] = [
    "managed-by",
    "vaultconnections.io/cluster",
    CLUSTER_ID_TAG,
    "vaultconnections.io/namespace",
    "vaultconnections.io/name",
];

/// The tags a parameter of `vc` carries.
pub fn identity_tags(vc: &VaultConnection, ns: &str, name: &str, s: &Settings) -> Tags {
    BTreeMap::from([
        ("managed-by".to_owned(), MANAGED_BY.to_owned()),
        ("vaultconnections.io/cluster".to_owned(), s.cluster.clone()),
        (CLUSTER_ID_TAG.to_owned(), s.cluster_id.clone()),
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

/// Whether parameters written before the cluster-id tag existed may be taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy {
    /// No: a parameter without the cluster-id tag is not ours.
    Refuse,
    /// Yes, when every other ownership tag matches (the migration path, turned on explicitly).
    Adopt,
}

/// A parameter is ours when its tags name this operator, cluster (name and id), namespace and
/// connection. With [`Legacy::Adopt`], a parameter without any cluster-id tag also counts.
pub fn owned(tags: &Tags, identity: &Tags, legacy: Legacy) -> bool {
    OWNER_KEYS.iter().all(|k| {
        let matches = tags.get(*k).is_some() && tags.get(*k) == identity.get(*k);
        matches || (*k == CLUSTER_ID_TAG && legacy == Legacy::Adopt && !tags.contains_key(*k))
    })
}

/// What the writer has seen of the parameter so far.
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    /// No parameter of that name.
    Missing,
    /// A parameter exists.
    Present {
        /// Its version.
        version: i64,
        /// Whether it holds exactly the desired document.
        same_value: bool,
        /// Its tags, then its tier and key, as far as they were read to prove ownership.
        proof: Option<&'a Proof>,
    },
}

/// What SSM says about a parameter's owner, and then its tier and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// Its tags.
    pub tags: Tags,
    /// Its tier and key, once described.
    pub described: Option<Described>,
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
    /// This version was neither written nor verified by us: read its tags, then plan again.
    ReadTags,
    /// It is ours by its tags: read its tier and key, then plan again.
    Describe,
    /// The parameter is not ours: touch nothing.
    NotOwned,
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
    let Seen::Present {
        version,
        same_value,
        proof,
    } = seen
    else {
        return Plan::Apply {
            steps: vec![Step::Create],
            tier: want.tier,
            change: Change::Created,
        };
    };
    if let Some(recorded) = want.recorded.as_ref().filter(|r| r.version == version) {
        // The version we wrote or verified: no one else has touched it.
        let recorded_tier = Tier::parse(&recorded.tier);
        let same_kms = recorded.kms_key_id.as_deref() == Some(want.kms_key_id.as_str());
        if same_value && same_kms && recorded_tier == Some(want.tier) {
            return Plan::Apply {
                steps: vec![],
                tier: want.tier,
                change: Change::None,
            };
        }
        let mut steps = vec![Step::Overwrite];
        if want.spec_changed {
            steps.push(Step::Tag); // e.g. the vault type changed
        }
        return Plan::Apply {
            steps,
            tier: recorded_tier.map_or(want.tier, |r| r.max(want.tier)),
            change: Change::Updated,
        };
    }
    // A version we have not seen (first sight, or an out-of-band change): prove it is ours.
    let Some(proof) = proof else {
        return Plan::ReadTags;
    };
    if !owned(&proof.tags, &want.tags, want.legacy) {
        return Plan::NotOwned;
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
    if same_value && same_kms && described.tier == Some(tier) {
        return Plan::Apply {
            steps,
            tier,
            change: Change::Adopted,
        };
    }
    steps.push(Step::Overwrite);
    Plan::Apply {
        steps,
        tier,
        change: Change::Updated,
    }
}

/// What to do with the parameter when its connection is deleted (policy `Delete`), given its
/// tags (`None`: there is no parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Nothing to delete.
    Nothing,
    /// It exists but is not ours: leave it in place.
    NotOwned,
    /// Delete it.
    Delete,
}

/// Plans the removal of a parameter with `tags` for a connection with `identity`.
pub fn removal(tags: Option<&Tags>, identity: &Tags, legacy: Legacy) -> Removal {
    match tags {
        None => Removal::Nothing,
        Some(tags) if !owned(tags, identity, legacy) => Removal::NotOwned,
        Some(_) => Removal::Delete,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::api::ParameterStatus;

    const KEY: &str = "alias/aws/ssm";

    fn identity() -> Tags {
        Tags::from([
            ("managed-by".into(), MANAGED_BY.into()),
            ("vaultconnections.io/cluster".into(), "prod".into()),
            (CLUSTER_ID_TAG.into(), "id-prod".into()),
            ("vaultconnections.io/namespace".into(), "team-a".into()),
            ("vaultconnections.io/name".into(), "db".into()),
            ("vaultconnections.io/uid".into(), "u-2".into()),
            ("vaultconnections.io/vault-type".into(), "doppler".into()),
        ])
    }

    fn want(tier: Tier, recorded: Option<(i64, Tier, &str)>) -> Desired {
        Desired {
            name: "/p/prod/team-a/db".into(),
            value: SecretString::from("{}"),
            tier,
            kms_key_id: KEY.into(),
            tags: identity(),
            recorded: recorded.map(|(version, tier, key)| ParameterStatus {
                name: "/p/prod/team-a/db".into(),
                version,
                tier: tier.as_str().into(),
                kms_key_id: Some(key.into()),
                ..ParameterStatus::default()
            }),
            spec_changed: false,
            legacy: Legacy::Refuse,
            provider: crate::validation::Provider::OnePassword {
                access_token: SecretString::from("ops_x"),
            },
        }
    }

    fn present(version: i64, same_value: bool, proof: Option<&Proof>) -> Seen<'_> {
        Seen::Present {
            version,
            same_value,
            proof,
        }
    }

    fn proof(tags: Tags, tier: Tier, key: &str) -> Proof {
        Proof {
            tags,
            described: Some(Described {
                tier: Some(tier),
                kms_key_id: Some(key.into()),
            }),
        }
    }

    fn apply(steps: &[Step], tier: Tier, change: Change) -> Plan {
        Plan::Apply {
            steps: steps.to_vec(),
            tier,
            change,
        }
    }

    #[test]
    fn a_missing_parameter_is_created() {
        let p = plan(&want(Tier::Standard, None), Seen::Missing);
        assert_eq!(p, apply(&[Step::Create], Tier::Standard, Change::Created));
    }

    #[test]
    fn the_recorded_version_holding_the_document_needs_nothing() {
        let w = want(Tier::Standard, Some((3, Tier::Standard, KEY)));
        let p = plan(&w, present(3, true, None));
        assert_eq!(p, apply(&[], Tier::Standard, Change::None));
    }

    #[test]
    fn the_recorded_version_with_other_credentials_is_overwritten_without_a_tag_call() {
        let w = want(Tier::Standard, Some((3, Tier::Standard, KEY)));
        let p = plan(&w, present(3, false, None));
        assert_eq!(
            p,
            apply(&[Step::Overwrite], Tier::Standard, Change::Updated)
        );
    }

    #[test]
    fn a_spec_change_retags_after_the_overwrite() {
        let mut w = want(Tier::Standard, Some((3, Tier::Standard, KEY)));
        w.spec_changed = true;
        let p = plan(&w, present(3, false, None));
        assert_eq!(
            p,
            apply(
                &[Step::Overwrite, Step::Tag],
                Tier::Standard,
                Change::Updated
            )
        );
    }

    #[test]
    fn a_new_kms_key_rewrites_the_same_document() {
        let w = want(Tier::Standard, Some((3, Tier::Standard, "alias/old")));
        let p = plan(&w, present(3, true, None));
        assert_eq!(
            p,
            apply(&[Step::Overwrite], Tier::Standard, Change::Updated)
        );
    }

    #[test]
    fn a_recorded_advanced_tier_is_never_downgraded() {
        // desired() already keeps the recorded tier; the plan keeps it even if asked lower.
        let w = want(Tier::Standard, Some((3, Tier::Advanced, KEY)));
        let p = plan(&w, present(3, false, None));
        assert_eq!(
            p,
            apply(&[Step::Overwrite], Tier::Advanced, Change::Updated)
        );
    }

    #[test]
    fn a_larger_document_moves_a_recorded_standard_parameter_up() {
        let w = want(Tier::Advanced, Some((3, Tier::Standard, KEY)));
        let p = plan(&w, present(3, true, None));
        assert_eq!(
            p,
            apply(&[Step::Overwrite], Tier::Advanced, Change::Updated)
        );
    }

    #[test]
    fn an_unrecorded_version_must_first_be_proven_ours_by_its_tags() {
        let w = want(Tier::Standard, Some((3, Tier::Standard, KEY)));
        assert_eq!(plan(&w, present(4, true, None)), Plan::ReadTags);
        assert_eq!(
            plan(&want(Tier::Standard, None), present(1, true, None)),
            Plan::ReadTags
        );
    }

    #[test]
    fn only_a_parameter_proven_ours_is_described() {
        let w = want(Tier::Standard, None);
        let tags_only = |tags| Proof {
            tags,
            described: None,
        };
        let ours = tags_only(identity());
        assert_eq!(plan(&w, present(1, true, Some(&ours))), Plan::Describe);
        let theirs = tags_only(Tags::new());
        assert_eq!(plan(&w, present(1, true, Some(&theirs))), Plan::NotOwned);
    }

    #[test]
    fn a_parameter_of_another_owner_is_refused() {
        let w = want(Tier::Standard, None);
        for key in OWNER_KEYS {
            let mut tags = identity();
            tags.insert(key.into(), "someone-else".into());
            let p = proof(tags, Tier::Standard, KEY);
            assert_eq!(
                plan(&w, present(1, true, Some(&p))),
                Plan::NotOwned,
                "{key}"
            );
            let mut tags = identity();
            tags.remove(key);
            let p = proof(tags, Tier::Standard, KEY);
            assert_eq!(
                plan(&w, present(1, true, Some(&p))),
                Plan::NotOwned,
                "{key}"
            );
        }
        let untagged = proof(Tags::new(), Tier::Standard, KEY);
        assert_eq!(plan(&w, present(1, true, Some(&untagged))), Plan::NotOwned);
    }

    #[test]
    fn our_parameter_holding_the_document_is_adopted_without_a_write() {
        let w = want(Tier::Standard, None);
        let p = proof(identity(), Tier::Standard, KEY);
        assert_eq!(
            plan(&w, present(7, true, Some(&p))),
            apply(&[], Tier::Standard, Change::Adopted)
        );
    }

    #[test]
    fn adoption_refreshes_a_stale_uid_tag() {
        let w = want(Tier::Standard, None);
        let mut tags = identity();
        tags.insert("vaultconnections.io/uid".into(), "u-1".into());
        let p = proof(tags, Tier::Standard, KEY);
        assert_eq!(
            plan(&w, present(7, true, Some(&p))),
            apply(&[Step::Tag], Tier::Standard, Change::Adopted)
        );
    }

    #[test]
    fn our_parameter_changed_out_of_band_is_overwritten() {
        let w = want(Tier::Standard, Some((3, Tier::Standard, KEY)));
        let p = proof(identity(), Tier::Standard, KEY);
        assert_eq!(
            plan(&w, present(4, false, Some(&p))),
            apply(&[Step::Overwrite], Tier::Standard, Change::Updated)
        );
    }

    #[test]
    fn our_parameter_on_another_key_or_a_lower_tier_is_overwritten() {
        let w = want(Tier::Advanced, None);
        let standard = proof(identity(), Tier::Standard, KEY);
        assert_eq!(
            plan(&w, present(2, true, Some(&standard))),
            apply(&[Step::Overwrite], Tier::Advanced, Change::Updated)
        );
        let w = want(Tier::Standard, None);
        let other_key = proof(identity(), Tier::Standard, "alias/other");
        assert_eq!(
            plan(&w, present(2, true, Some(&other_key))),
            apply(&[Step::Overwrite], Tier::Standard, Change::Updated)
        );
    }

    #[test]
    fn an_advanced_parameter_found_in_ssm_stays_advanced() {
        let w = want(Tier::Standard, None);
        let p = proof(identity(), Tier::Advanced, KEY);
        assert_eq!(
            plan(&w, present(2, true, Some(&p))),
            apply(&[], Tier::Advanced, Change::Adopted)
        );
    }

    #[test]
    fn removal_deletes_only_our_parameter() {
        let mine = identity();
        assert_eq!(removal(None, &mine, Legacy::Refuse), Removal::Nothing);
        assert_eq!(removal(Some(&mine), &mine, Legacy::Refuse), Removal::Delete);
        let mut theirs = identity();
        theirs.insert("vaultconnections.io/cluster".into(), "staging".into());
        assert_eq!(
            removal(Some(&theirs), &mine, Legacy::Refuse),
            Removal::NotOwned
        );
    }

    #[test]
    fn another_cluster_with_the_same_name_owns_nothing_of_ours_even_when_adopting() {
        let mine = identity();
        let mut twin = identity();
        twin.insert(CLUSTER_ID_TAG.into(), "id-staging".into());
        for legacy in [Legacy::Refuse, Legacy::Adopt] {
            assert!(!owned(&twin, &mine, legacy));
            assert_eq!(removal(Some(&twin), &mine, legacy), Removal::NotOwned);
        }
    }

    #[test]
    fn a_parameter_without_a_cluster_id_is_adopted_only_when_asked() {
        let mine = identity();
        let mut legacy = identity();
        legacy.remove(CLUSTER_ID_TAG);
        assert!(!owned(&legacy, &mine, Legacy::Refuse));
        assert_eq!(
            removal(Some(&legacy), &mine, Legacy::Refuse),
            Removal::NotOwned
        );
        assert!(owned(&legacy, &mine, Legacy::Adopt));
        let mut w = want(Tier::Standard, None);
        w.legacy = Legacy::Adopt;
        let p = proof(legacy, Tier::Standard, KEY);
        assert_eq!(
            plan(&w, present(1, true, Some(&p))),
            apply(&[Step::Tag], Tier::Standard, Change::Adopted),
            "adopting writes the cluster id tag"
        );
    }
}
