//! The rules a cluster admin sets for the whole operator ([`Policy`]) and their fingerprint.

use std::collections::BTreeSet;

/// Rules a cluster admin sets for the whole operator, on top of the fixed rules. The default is
/// the strict one: no personal Doppler tokens, and every KMS key allowed only when no list is
/// given (the offline `validate` command without `--allowed-kms-keys`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Accept Doppler personal (`dp.pt.`) and CLI (`dp.ct.`) tokens, which carry a person's
    /// access to the whole workspace (`--allow-doppler-personal-tokens`).
    pub allow_doppler_personal_tokens: bool,
    /// The KMS keys a spec may name in `spec.ssm.kmsKeyId`, compared as written (`None`: any).
    /// The operator always sets this: its default key plus `--allowed-kms-keys`.
    pub allowed_kms_keys: Option<BTreeSet<String>>,
}

impl Policy {
    /// The operator's policy: `default_kms_key` plus `allowed_kms_keys` (blank entries ignored)
    /// are the only keys a spec may name.
    pub fn for_operator(
        allow_doppler_personal_tokens: bool,
        default_kms_key: &str,
        allowed_kms_keys: &[String],
    ) -> Policy {
        let keys = std::iter::once(default_kms_key)
            .chain(allowed_kms_keys.iter().map(String::as_str))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        Policy {
            allow_doppler_personal_tokens,
            allowed_kms_keys: Some(keys),
        }
    }
}

/// Version of the validation rules. Raise it in any release that makes a rule stricter: every
/// stored connection is then checked once more (one Secret read each) against the new rules.
pub const RULES_VERSION: u32 = 1;

impl Policy {
    /// A fingerprint of the rules and the settings they were applied with: `RULES_VERSION`,
    /// then a short hash of the settings (the Doppler personal-token flag and the KMS
    /// allow-list). Status records it with every sync; a connection recorded under another
    /// fingerprint is checked again. Configuration only: never a credential or a hash of one.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(format!(
            "doppler-personal-tokens={}\n",
            self.allow_doppler_personal_tokens
        ));
        match &self.allowed_kms_keys {
            None => h.update("kms-keys=*\n"),
            Some(keys) => {
                for key in keys {
                    h.update(format!("kms-key={key}\n"));
                }
            }
        }
        let hex: String = h.finalize()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{RULES_VERSION}-{hex}")
    }
}
