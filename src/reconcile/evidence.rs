//! What this process has seen for itself: for each parameter it wrote, or proved to be its
//! connection's (by the tags SSM holds) and read, the version and modification time SSM gave,
//! and what the parameter then held — a salted digest of the document, the KMS key and the tier.
//!
//! This is the only record the operator trusts without asking SSM again. It lives in memory
//! only: a restarted process starts with none and proves ownership again before its first write
//! or delete of each parameter. Status is a cache of the same facts for people and for the drift
//! sweep at rest; anyone who may write status can change it, so nothing is decided from it alone.
//! The digest is salted with a random per-process key and never leaves the process (not in
//! status, logs or metrics), so it tells nothing about a value even to someone who reads memory
//! dumps across processes.

use std::collections::HashMap;
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};

use crate::document::Tier;
use crate::ssm::Meta;

/// A salted digest of a document (equal documents, equal digests, within one process).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest([u8; 16]);

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest(..)")
    }
}

/// What the parameter held after this process's own write or proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Whose it was proven to be: the connection object's uid and its namespace's uid (a
    /// connection or namespace of the same name created again proves ownership anew).
    pub owner: (String, String),
    /// Its version and modification time then.
    pub meta: Meta,
    /// The digest of the document it held.
    pub digest: Digest,
    /// The KMS key it was encrypted with.
    pub kms_key_id: String,
    /// Its tier.
    pub tier: Tier,
}

/// Every parameter this process knows, by name.
pub struct Evidence {
    salt: [u8; 32],
    known: Mutex<HashMap<String, Known>>,
}

impl Default for Evidence {
    fn default() -> Evidence {
        Evidence {
            salt: rand::random(),
            known: Mutex::default(),
        }
    }
}

impl Evidence {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        // Each entry is replaced whole, so a panic elsewhere cannot leave one half-written.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The digest of `document` in this process.
    pub fn digest(&self, document: &SecretString) -> Digest {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(document.expose_secret().as_bytes());
        let full = h.finalize();
        let mut short = [0u8; 16];
        short.copy_from_slice(&full[..16]);
        Digest(short)
    }

    /// What this process knows of `name` for `owner`, if SSM still shows it as `meta` (the same
    /// write).
    pub fn matching(&self, name: &str, owner: &(String, String), meta: &Meta) -> Option<Known> {
        self.get(name, owner)
            .filter(|k| k.meta == *meta && k.meta.modified.is_some())
    }

    /// What this process last wrote or proved for `name` as `owner`'s.
    pub fn get(&self, name: &str, owner: &(String, String)) -> Option<Known> {
        self.map().get(name).filter(|k| k.owner == *owner).cloned()
    }

    /// The version and modification time this process last saw itself for `name`.
    pub fn meta(&self, name: &str) -> Option<Meta> {
        self.map().get(name).map(|k| k.meta.clone())
    }

    /// Remembers what `name` holds after a write or proof of this process.
    pub fn remember(&self, name: &str, known: Known) {
        self.map().insert(name.to_owned(), known);
    }

    /// Forgets `name`: it was deleted, changed by someone else, or is not ours.
    pub fn forget(&self, name: &str) {
        self.map().remove(name);
    }

    /// Keeps only the names `alive` says are still some cached connection's.
    pub fn retain(&self, alive: impl Fn(&str) -> bool) {
        self.map().retain(|name, _| alive(name));
    }

    /// How many parameters this process knows.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether it knows none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(version: i64, modified: &str) -> Meta {
        Meta {
            version,
            modified: Some(modified.into()),
        }
    }

    fn owner() -> (String, String) {
        ("u-1".into(), "ns-1".into())
    }

    fn known(e: &Evidence, m: Meta, doc: &str) -> Known {
        Known {
            owner: owner(),
            meta: m,
            digest: e.digest(&SecretString::from(doc)),
            kms_key_id: "alias/aws/ssm".into(),
            tier: Tier::Standard,
        }
    }

    #[test]
    fn only_the_same_write_matches_a_version_repeated_after_a_delete_does_not() {
        let e = Evidence::default();
        e.remember(
            "/p/c/ns/db",
            known(&e, meta(1, "2026-01-01T00:00:00.1Z"), "{}"),
        );
        let same = |m: &Meta| e.matching("/p/c/ns/db", &owner(), m).is_some();
        assert!(same(&meta(1, "2026-01-01T00:00:00.1Z")));
        assert!(
            !same(&meta(1, "2026-01-01T00:00:09.2Z")),
            "deleted and created again: version 1 again, another time"
        );
        assert!(!same(&meta(2, "2026-01-01T00:00:00.1Z")));
        let reused = ("u-2".to_owned(), "ns-2".to_owned());
        assert!(
            e.matching("/p/c/ns/db", &reused, &meta(1, "2026-01-01T00:00:00.1Z"))
                .is_none(),
            "a namespace or connection of the same name created again proves it anew"
        );
        let no_time = Meta {
            version: 1,
            modified: None,
        };
        e.remember("/p/c/ns/x", known(&e, no_time.clone(), "{}"));
        assert!(
            e.matching("/p/c/ns/x", &owner(), &no_time).is_none(),
            "without a time, no match"
        );
    }

    #[test]
    fn digests_are_equal_for_equal_documents_and_salted_per_process() {
        let (a, b) = (Evidence::default(), Evidence::default());
        let doc = SecretString::from("{\"access_token\":\"ops_x\"}");
        assert_eq!(a.digest(&doc), a.digest(&doc));
        assert_ne!(a.digest(&doc), a.digest(&SecretString::from("{}")));
        assert_ne!(
            a.digest(&doc),
            b.digest(&doc),
            "another process, another salt"
        );
        assert_eq!(format!("{:?}", a.digest(&doc)), "Digest(..)");
    }

    #[test]
    fn names_are_forgotten_one_by_one_or_pruned() {
        let e = Evidence::default();
        for n in ["/p/c/a/x", "/p/c/a/y", "/p/c/b/x"] {
            e.remember(n, known(&e, meta(1, "t"), "{}"));
        }
        e.forget("/p/c/a/x");
        assert!(e.get("/p/c/a/x", &owner()).is_none() && e.get("/p/c/a/y", &owner()).is_some());
        e.retain(|n| n.starts_with("/p/c/b/"));
        assert_eq!(e.len(), 1);
    }
}
