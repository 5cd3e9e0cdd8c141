//! Who owns an SSM parameter (pure): the tags the operator writes on every parameter it creates,
//! and the rule that decides, from the tags SSM holds, whether a parameter is this connection's.
//! Only tags read from SSM prove ownership; nothing recorded in Kubernetes (status, annotations
//! other than an explicit adoption request) ever does.

use std::collections::BTreeMap;

/// The tags on a parameter.
pub type Tags = BTreeMap<String, String>;

/// Value of the `managed-by` tag on every parameter the operator owns, and the name it reports
/// events and status patches under.
pub const MANAGED_BY: &str = "vault-connection-operator";

/// The tag that names the operator.
pub const MANAGED_BY_TAG: &str = "managed-by";
/// The tag that names the cluster (the cluster name in the parameter's path).
pub const CLUSTER_TAG: &str = "vaultconnections.io/cluster";
/// The tag that names the cluster's identity (the kube-system namespace's uid by default).
pub const CLUSTER_ID_TAG: &str = "vaultconnections.io/cluster-id";
/// The tag that names the namespace.
pub const NAMESPACE_TAG: &str = "vaultconnections.io/namespace";
/// The tag that names the namespace's uid: a namespace deleted and created again under the same
/// name is another namespace, and owns nothing of the first one's.
pub const NAMESPACE_UID_TAG: &str = "vaultconnections.io/namespace-uid";
/// The tag that names the connection.
pub const NAME_TAG: &str = "vaultconnections.io/name";
/// The tag that names the connection object's uid (refreshed, not required: a connection
/// deleted with `Retain` and created again takes its parameter back).
pub const UID_TAG: &str = "vaultconnections.io/uid";
/// The tag that names the vault type (refreshed).
pub const VAULT_TYPE_TAG: &str = "vaultconnections.io/vault-type";

pub use crate::api::ADOPT_ANNOTATION;

/// Who a connection is: everything its parameter's tags must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Cluster name.
    pub cluster: String,
    /// Cluster identity.
    pub cluster_id: String,
    /// Namespace name.
    pub namespace: String,
    /// Namespace uid.
    pub namespace_uid: String,
    /// Connection name.
    pub name: String,
    /// Connection object uid.
    pub uid: String,
    /// Vault type (`onepassword`, `doppler`, `infisical`).
    pub vault_type: String,
}

impl Identity {
    /// The object uids that make this connection this one and no other of its name: its own
    /// and its namespace's.
    pub fn owner(&self) -> (String, String) {
        (self.uid.clone(), self.namespace_uid.clone())
    }

    /// The tags a parameter of this connection carries.
    pub fn tags(&self) -> Tags {
        [
            (MANAGED_BY_TAG, MANAGED_BY),
            (CLUSTER_TAG, &self.cluster),
            (CLUSTER_ID_TAG, &self.cluster_id),
            (NAMESPACE_TAG, &self.namespace),
            (NAMESPACE_UID_TAG, &self.namespace_uid),
            (NAME_TAG, &self.name),
            (UID_TAG, &self.uid),
            (VAULT_TYPE_TAG, &self.vault_type),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// Whether parameters written before the cluster-id and namespace-uid tags existed may be taken
/// over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy {
    /// No: a parameter without those tags is not ours (unless its connection-uid tag proves it).
    Refuse,
    /// Yes, when every other ownership tag matches (the migration path, turned on explicitly).
    Adopt,
}

/// What may be taken over besides a parameter whose tags all match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takeover {
    /// Parameters from before the cluster-id and namespace-uid tags (the operator's flag).
    pub legacy: Legacy,
    /// A parameter another namespace of the same name left (the connection's annotation).
    pub adopt: bool,
}

impl Takeover {
    /// Only parameters whose tags all match.
    pub const NONE: Takeover = Takeover {
        legacy: Legacy::Refuse,
        adopt: false,
    };
}

/// Why a parameter is not this connection's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotOurs {
    /// It has no tags of this operator, or they name another connection or cluster name.
    Tag(&'static str),
    /// It belongs to another cluster that shares the cluster name.
    OtherCluster,
    /// Another namespace of the same name wrote it (the uid it names).
    OtherNamespace(String),
    /// It carries no namespace uid and nothing proves it is this namespace's.
    NoNamespaceUid,
}

impl NotOurs {
    /// What to say about it (tag names and uids only: never a value of the parameter).
    pub fn explain(&self) -> String {
        match self {
            NotOurs::Tag(key) => format!("its tag {key} does not name this connection"),
            NotOurs::OtherCluster => format!(
                "its {CLUSTER_ID_TAG} tag names another cluster id: another cluster that uses \
                 the same cluster name"
            ),
            NotOurs::OtherNamespace(uid) => format!(
                "it was written for an earlier namespace of this name ({NAMESPACE_UID_TAG} {uid}); \
                 to take it over (overwriting the credentials it holds), annotate this connection \
                 {ADOPT_ANNOTATION}=true"
            ),
            NotOurs::NoNamespaceUid => format!(
                "it has no {NAMESPACE_UID_TAG} tag and nothing proves this namespace wrote it; to take \
                 it over, annotate this connection {ADOPT_ANNOTATION}=true"
            ),
        }
    }
}

/// Whether a parameter with `tags` is the parameter of the connection `me`:
/// - the operator, cluster name, namespace name and connection name tags must match;
/// - the cluster id must match (absent: only with [`Legacy::Adopt`]);
/// - the namespace uid must match; when absent, the connection-uid tag naming this very object
///   proves it (an object lives in one namespace only), else only [`Legacy::Adopt`] or an
///   adoption request takes it; a different namespace uid only an adoption request.
pub fn owned(tags: &Tags, me: &Identity, how: Takeover) -> Result<(), NotOurs> {
    let mine = me.tags();
    for key in [MANAGED_BY_TAG, CLUSTER_TAG, NAMESPACE_TAG, NAME_TAG] {
        if tags.get(key).is_none() || tags.get(key) != mine.get(key) {
            return Err(NotOurs::Tag(key));
        }
    }
    match tags.get(CLUSTER_ID_TAG) {
        Some(id) if *id == me.cluster_id => {}
        None if how.legacy == Legacy::Adopt => {}
        _ => return Err(NotOurs::OtherCluster),
    }
    match tags.get(NAMESPACE_UID_TAG) {
        Some(uid) if *uid == me.namespace_uid => Ok(()),
        _ if how.adopt => Ok(()),
        Some(uid) => Err(NotOurs::OtherNamespace(uid.clone())),
        None if tags.get(UID_TAG) == Some(&me.uid) || how.legacy == Legacy::Adopt => Ok(()),
        None => Err(NotOurs::NoNamespaceUid),
    }
}

/// What to do with the parameter when its connection is deleted (policy `Delete`), given its
/// tags (`None`: there is no parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Nothing to delete.
    Nothing,
    /// It exists but is not ours: leave it in place.
    NotOwned(NotOurs),
    /// Delete it.
    Delete,
}

/// Plans the removal of a parameter with `tags` for the connection `me`.
pub fn removal(tags: Option<&Tags>, me: &Identity, how: Takeover) -> Removal {
    match tags.map(|t| owned(t, me, how)) {
        None => Removal::Nothing,
        Some(Err(why)) => Removal::NotOwned(why),
        Some(Ok(())) => Removal::Delete,
    }
}

/// One connection's identity for unit tests: `team-a/db` of cluster `prod`.
#[cfg(test)]
impl Identity {
    pub(crate) fn example() -> Identity {
        Identity {
            cluster: "prod".into(),
            cluster_id: "id-prod".into(),
            namespace: "team-a".into(),
            namespace_uid: "ns-2".into(),
            name: "db".into(),
            uid: "u-2".into(),
            vault_type: "doppler".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Identity {
        Identity::example()
    }

    const REFUSE: Takeover = Takeover::NONE;
    const LEGACY: Takeover = Takeover {
        legacy: Legacy::Adopt,
        adopt: false,
    };
    const ADOPT: Takeover = Takeover {
        legacy: Legacy::Refuse,
        adopt: true,
    };

    #[test]
    fn our_own_tags_are_ours_and_the_uid_and_vault_type_are_only_refreshed() {
        let mut tags = me().tags();
        assert_eq!(owned(&tags, &me(), REFUSE), Ok(()));
        tags.insert(UID_TAG.into(), "u-1".into());
        tags.insert(VAULT_TYPE_TAG.into(), "infisical".into());
        assert_eq!(owned(&tags, &me(), REFUSE), Ok(()), "a Retain'ed parameter");
    }

    #[test]
    fn any_other_operator_cluster_namespace_or_name_is_refused_whatever_is_asked() {
        for key in [MANAGED_BY_TAG, CLUSTER_TAG, NAMESPACE_TAG, NAME_TAG] {
            for how in [REFUSE, LEGACY, ADOPT] {
                let mut tags = me().tags();
                tags.insert(key.into(), "someone-else".into());
                assert_eq!(owned(&tags, &me(), how), Err(NotOurs::Tag(key)), "{key}");
                tags.remove(key);
                assert_eq!(owned(&tags, &me(), how), Err(NotOurs::Tag(key)), "{key}");
            }
        }
        assert_eq!(
            owned(&Tags::new(), &me(), ADOPT),
            Err(NotOurs::Tag(MANAGED_BY_TAG))
        );
    }

    #[test]
    fn a_twin_cluster_with_our_name_owns_nothing_of_ours_even_when_adopting() {
        let mut tags = me().tags();
        tags.insert(CLUSTER_ID_TAG.into(), "id-dr".into());
        for how in [REFUSE, LEGACY, ADOPT] {
            assert_eq!(owned(&tags, &me(), how), Err(NotOurs::OtherCluster));
            assert_eq!(
                removal(Some(&tags), &me(), how),
                Removal::NotOwned(NotOurs::OtherCluster)
            );
        }
    }

    #[test]
    fn a_parameter_without_a_cluster_id_is_taken_over_only_when_told_to() {
        let mut tags = me().tags();
        tags.remove(CLUSTER_ID_TAG);
        assert_eq!(owned(&tags, &me(), REFUSE), Err(NotOurs::OtherCluster));
        assert_eq!(owned(&tags, &me(), LEGACY), Ok(()));
    }

    #[test]
    fn an_earlier_namespace_of_the_same_name_owns_its_parameter_until_adoption_is_asked() {
        let mut tags = me().tags();
        tags.insert(NAMESPACE_UID_TAG.into(), "ns-1".into());
        let theirs = Err(NotOurs::OtherNamespace("ns-1".into()));
        assert_eq!(owned(&tags, &me(), REFUSE), theirs);
        assert_eq!(
            owned(&tags, &me(), LEGACY),
            theirs,
            "not a legacy parameter"
        );
        assert_eq!(owned(&tags, &me(), ADOPT), Ok(()));
        assert_eq!(
            removal(Some(&tags), &me(), REFUSE),
            Removal::NotOwned(NotOurs::OtherNamespace("ns-1".into()))
        );
    }

    #[test]
    fn a_parameter_without_a_namespace_uid_is_ours_when_it_names_this_very_object() {
        let mut tags = me().tags();
        tags.remove(NAMESPACE_UID_TAG);
        assert_eq!(owned(&tags, &me(), REFUSE), Ok(()), "same connection uid");
        tags.insert(UID_TAG.into(), "u-1".into());
        assert_eq!(owned(&tags, &me(), REFUSE), Err(NotOurs::NoNamespaceUid));
        assert_eq!(owned(&tags, &me(), LEGACY), Ok(()));
        assert_eq!(owned(&tags, &me(), ADOPT), Ok(()));
    }

    #[test]
    fn removal_deletes_only_our_parameter() {
        assert_eq!(removal(None, &me(), REFUSE), Removal::Nothing);
        assert_eq!(removal(Some(&me().tags()), &me(), REFUSE), Removal::Delete);
    }

    #[test]
    fn the_explanations_name_tags_and_uids_only() {
        let why = NotOurs::OtherNamespace("ns-1".into()).explain();
        assert!(
            why.contains("ns-1") && why.contains(ADOPT_ANNOTATION),
            "{why}"
        );
        assert!(NotOurs::Tag(NAME_TAG).explain().contains(NAME_TAG));
    }
}
