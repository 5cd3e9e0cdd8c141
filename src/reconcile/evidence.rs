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
//!
//! It also keeps, for a short while, what this process read of each credentials Secret: the
//! version it read and a salted digest of the data. A Secret touched without a change of its data
//! (an annotate loop) wakes every connection naming it; the first one reads the Secret, and the
//! others find that the data at that version is the data their parameter was written from, and
//! read nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};

use crate::document::Tier;
use crate::ssm::Meta;
use crate::validation::SecretData;

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
    /// The digest of the Secret data the document was rendered from ([`Evidence::data_digest`]),
    /// when this process rendered it.
    pub source: Option<Digest>,
}

/// How long a read of a Secret's data answers for the other connections naming it (at least;
/// reads are forgotten at the drift sweep's end).
pub const READS_KEPT: Duration = Duration::from_secs(60);

/// A read of a Secret's data by this process: the version read, the digest of the data, and
/// when.
struct SecretRead {
    version: Box<str>,
    digest: Digest,
    at: Instant,
}

/// Namespace and name of a Secret.
type SecretKey = (Box<str>, Box<str>);

/// Every parameter this process knows, by name.
pub struct Evidence {
    salt: [u8; 32],
    known: Mutex<HashMap<String, Known>>,
    reads: Mutex<HashMap<SecretKey, SecretRead>>,
    reading: Mutex<HashMap<SecretKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// The turn to read one Secret: while it is held, the other connections naming the Secret wait,
/// and then find the read it made.
pub struct ReadTurn<'a> {
    evidence: &'a Evidence,
    key: SecretKey,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for ReadTurn<'_> {
    fn drop(&mut self) {
        let mut reading = self
            .evidence
            .reading
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Held by the map and this turn only: nobody waits, so the entry goes.
        if reading
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 2)
        {
            reading.remove(&self.key);
        }
    }
}

impl Default for Evidence {
    fn default() -> Evidence {
        Evidence {
            salt: rand::random(),
            known: Mutex::default(),
            reads: Mutex::default(),
            reading: Mutex::default(),
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

    /// The digest of a Secret's `data` in this process: every key and value, in key order, each
    /// prefixed with its length (so no two maps share one), under the same salt as documents but
    /// in a domain of their own.
    pub fn data_digest(&self, data: &SecretData) -> Digest {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(b"secret-data");
        for (key, value) in data {
            h.update((key.len() as u64).to_le_bytes());
            h.update(key.as_bytes());
            h.update((value.len() as u64).to_le_bytes());
            h.update(value);
        }
        let full = h.finalize();
        let mut short = [0u8; 16];
        short.copy_from_slice(&full[..16]);
        Digest(short)
    }

    fn reads(&self) -> std::sync::MutexGuard<'_, HashMap<SecretKey, SecretRead>> {
        // As above: each entry is replaced whole.
        self.reads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the turn to read Secret `name` in `ns`: one read of a Secret at a time, so the
    /// connections a touch wakes together read it once.
    pub async fn turn_to_read(&self, ns: &str, name: &str) -> ReadTurn<'_> {
        let key: SecretKey = (ns.into(), name.into());
        let lock = {
            let mut reading = self.reading.lock().unwrap_or_else(|e| e.into_inner());
            reading.entry(key.clone()).or_default().clone()
        };
        ReadTurn {
            evidence: self,
            key,
            _held: lock.lock_owned().await,
        }
    }

    /// Remembers that this process read Secret `name` in `ns` at `version`, with data of
    /// `digest`.
    pub fn read(&self, ns: &str, name: &str, version: &str, digest: Digest) {
        let read = SecretRead {
            version: version.into(),
            digest,
            at: Instant::now(),
        };
        self.reads().insert((ns.into(), name.into()), read);
    }

    /// The digest of the data this process read of Secret `name` in `ns` at `version`, if its
    /// last read of it was of that version.
    pub fn read_of(&self, ns: &str, name: &str, version: &str) -> Option<Digest> {
        let key: SecretKey = (ns.into(), name.into());
        self.reads()
            .get(&key)
            .filter(|r| &*r.version == version)
            .map(|r| r.digest)
    }

    /// Forgets the reads made more than `age` ago: they are for the connections a touch wakes
    /// together, not a cache of every Secret.
    pub fn forget_reads_older_than(&self, age: Duration) {
        self.reads().retain(|_, r| r.at.elapsed() < age);
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
            source: None,
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

    #[test]
    fn a_read_answers_for_its_version_only_and_is_forgotten_with_age() {
        let e = Evidence::default();
        let data = |v: &str| SecretData::from([("token".to_owned(), v.as_bytes().to_vec())]);
        let d1 = e.data_digest(&data("ops_1"));
        assert_eq!(
            d1,
            e.data_digest(&data("ops_1")),
            "equal data, equal digests"
        );
        assert_ne!(d1, e.data_digest(&data("ops_2")));
        let split = SecretData::from([
            ("a".to_owned(), b"bc".to_vec()),
            ("d".to_owned(), Vec::new()),
        ]);
        let joined = SecretData::from([
            ("a".to_owned(), b"b".to_vec()),
            ("cd".to_owned(), Vec::new()),
        ]);
        assert_ne!(
            e.data_digest(&split),
            e.data_digest(&joined),
            "lengths keep maps apart"
        );
        assert_ne!(
            e.data_digest(&data("ops_1")),
            Evidence::default().data_digest(&data("ops_1")),
            "another process, another salt"
        );
        assert_ne!(
            e.data_digest(&SecretData::new()),
            e.digest(&SecretString::from("")),
            "Secret data and documents are digested apart"
        );

        e.read("team-a", "creds", "7", d1);
        assert_eq!(e.read_of("team-a", "creds", "7"), Some(d1));
        assert_eq!(e.read_of("team-a", "creds", "8"), None, "another version");
        assert_eq!(e.read_of("team-b", "creds", "7"), None, "another namespace");
        e.forget_reads_older_than(Duration::from_secs(60));
        assert_eq!(
            e.read_of("team-a", "creds", "7"),
            Some(d1),
            "young reads stay"
        );
        e.forget_reads_older_than(Duration::ZERO);
        assert_eq!(e.read_of("team-a", "creds", "7"), None, "old reads go");
    }

    #[tokio::test]
    async fn one_turn_to_read_a_secret_at_a_time_and_none_kept_when_nobody_waits() {
        let e = Arc::new(Evidence::default());
        let first = e.turn_to_read("team-a", "creds").await;
        let other = e.turn_to_read("team-a", "other").await;
        let waiting = tokio::spawn({
            let e = e.clone();
            async move {
                let _turn = e.turn_to_read("team-a", "creds").await;
                e.read_of("team-a", "creds", "7")
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the second reader waits for the first"
        );
        let digest = e.data_digest(&SecretData::new());
        e.read("team-a", "creds", "7", digest);
        drop(first);
        assert_eq!(
            waiting.await.expect("the waiter"),
            Some(digest),
            "and finds its read"
        );
        drop(other);
        assert!(
            e.reading.lock().expect("lock").is_empty(),
            "no turn is kept"
        );
    }
}
