//! The operator's own status writes, recognised when the watch brings them back: an echo of a
//! write changes nothing the reconcile that wrote it did not already know, so it wakes nobody.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;

use crate::api::VaultConnection;

/// The resourceVersion of each connection's last status write by this process, by uid, until
/// its echo arrives (or any later event of the connection does).
#[derive(Debug, Clone, Default)]
pub struct Echoes(Arc<Mutex<HashMap<String, String>>>);

impl Echoes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // Each entry is a hint (a missed one costs one reconcile at rest): a poisoned lock is
        // used as it is.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers that this process wrote `vc` (the object the API server returned).
    pub fn wrote(&self, vc: &VaultConnection) {
        if let (Some(uid), Some(rv)) = (vc.uid(), vc.resource_version()) {
            self.lock().insert(uid, rv);
        }
    }

    /// Whether `vc` is the echo of this process's last status write; any event of the
    /// connection settles its entry, so the map holds only writes whose echo is on its way.
    pub fn is_echo(&self, vc: &VaultConnection) -> bool {
        let Some(uid) = vc.metadata.uid.as_deref() else {
            return false;
        };
        match self.lock().remove(uid) {
            Some(rv) => vc.metadata.resource_version.as_deref() == Some(rv.as_str()),
            None => false,
        }
    }

    /// Forgets the connections `alive` says are gone (an echo that never came).
    pub fn retain(&self, alive: impl Fn(&str) -> bool) {
        self.lock().retain(|uid, _| alive(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(uid: &str, rv: &str) -> VaultConnection {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "vaultconnections.io/v1alpha1",
            "kind": "VaultConnection",
            "metadata": {"namespace": "ns", "name": "c", "uid": uid, "resourceVersion": rv},
            "spec": {"vaultType": "onepassword", "credentialsSecretRef": {"name": "s"}},
        }))
        .expect("a connection")
    }

    #[test]
    fn only_the_echo_of_the_last_write_is_one_and_only_once() {
        let echoes = Echoes::default();
        assert!(!echoes.is_echo(&at("u", "1")), "nothing written");
        echoes.wrote(&at("u", "5"));
        assert!(!echoes.is_echo(&at("v", "5")), "another connection");
        assert!(echoes.is_echo(&at("u", "5")), "our write coming back");
        assert!(!echoes.is_echo(&at("u", "5")), "settled: a replay is news again");
        echoes.wrote(&at("u", "7"));
        assert!(!echoes.is_echo(&at("u", "8")), "someone wrote after us");
        assert!(!echoes.is_echo(&at("u", "7")), "settled by the later event");
        echoes.wrote(&at("u", "9"));
        echoes.retain(|uid| uid != "u");
        assert!(!echoes.is_echo(&at("u", "9")), "forgotten with the connection");
    }
}
