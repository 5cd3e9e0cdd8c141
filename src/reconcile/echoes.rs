//! The operator's own status writes, recognised when the watch brings them back: an echo of a
//! write changes nothing the reconcile that wrote it did not already know, so it wakes nobody.
//!
//! A write is recorded before it is sent, as a fingerprint of the connection it will leave
//! (everything but the `resourceVersion`), because its echo may reach the watch before the
//! write's own answer reaches the reconcile.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use crate::api::VaultConnection;

/// The fingerprint of each connection as this process's status write in flight will leave it,
/// by uid, until an event of the connection settles it.
#[derive(Debug, Clone, Default)]
pub struct Echoes(Arc<Mutex<HashMap<String, u64>>>);

/// A hash of everything in `vc` but its `resourceVersion` (as cached: slimmed).
fn fingerprint(vc: &VaultConnection) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // Serializing a connection cannot fail (plain data, string keys); were it to, the
    // fingerprint of nothing matches no echo, which costs a reconcile, not correctness.
    let json = serde_json::to_value(vc).unwrap_or_default();
    let mut json = json;
    if let Some(meta) = json.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("resourceVersion");
    }
    json.to_string().hash(&mut h);
    h.finish()
}

impl Echoes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // Each entry is a hint (a missed one costs one reconcile at rest): a poisoned lock is
        // used as it is.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that this process is about to write status so that the connection reads `after`.
    pub fn expect(&self, after: &VaultConnection) {
        if let Some(uid) = after.metadata.uid.clone() {
            let print = fingerprint(after);
            self.lock().insert(uid, print);
        }
    }

    /// The write `expect`ed for `uid` did not happen.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Whether `vc` is the echo of this process's status write; any event of the connection
    /// settles its entry, so the map holds only writes whose echo is on its way.
    pub fn is_echo(&self, vc: &VaultConnection) -> bool {
        let Some(uid) = vc.metadata.uid.as_deref() else {
            return false;
        };
        let Some(expected) = self.lock().remove(uid) else {
            return false;
        };
        fingerprint(vc) == expected
    }

    /// Whether no write's echo is awaited.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets the connections `alive` says are gone (an echo that never came).
    pub fn retain(&self, alive: impl Fn(&str) -> bool) {
        self.lock().retain(|uid, _| alive(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(uid: &str, rv: &str, generation: i64) -> VaultConnection {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "vaultconnections.io/v1alpha1",
            "kind": "VaultConnection",
            "metadata": {"namespace": "ns", "name": "c", "uid": uid, "resourceVersion": rv,
                         "generation": generation},
            "spec": {"vaultType": "onepassword", "credentialsSecretRef": {"name": "s"}},
        }))
        .expect("a connection")
    }

    #[test]
    fn only_the_echo_of_the_write_in_flight_is_one_and_only_once() {
        let echoes = Echoes::default();
        assert!(!echoes.is_echo(&at("u", "1", 1)), "nothing written");
        echoes.expect(&at("u", "1", 1));
        assert!(!echoes.is_echo(&at("v", "5", 1)), "another connection");
        assert!(
            echoes.is_echo(&at("u", "5", 1)),
            "our write, at its new version"
        );
        assert!(
            !echoes.is_echo(&at("u", "5", 1)),
            "settled: a replay is news again"
        );
        echoes.expect(&at("u", "7", 1));
        assert!(
            !echoes.is_echo(&at("u", "8", 2)),
            "someone changed the spec meanwhile"
        );
        assert!(!echoes.is_echo(&at("u", "9", 1)), "settled by that event");
        echoes.expect(&at("u", "9", 1));
        echoes.forget("u");
        assert!(
            !echoes.is_echo(&at("u", "10", 1)),
            "the write did not happen"
        );
        echoes.expect(&at("u", "11", 1));
        echoes.retain(|uid| uid != "u");
        assert!(
            !echoes.is_echo(&at("u", "12", 1)),
            "forgotten with the connection"
        );
    }
}
