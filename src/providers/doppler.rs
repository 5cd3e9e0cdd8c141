//! Doppler, with a service token (`dp.st....`) scoped to a project and config. Its parts: the
//! `spec.doppler` section ([`DopplerSpec`], with its limits), one credential (the access token)
//! with its limits and format rule, its document fields, two verification checks and the
//! default API URL. The HTTP calls of the checks are in [`crate::verify::doppler`].

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::parts::{Check, VaultType};
use crate::validation::rules::{FieldError, SecretKeys, check_len};

/// The provider's name as people write it.
pub const NAME: &str = "Doppler";
/// The default Doppler API base URL.
pub const DEFAULT_URL: &str = "https://api.doppler.com";
/// Access token length.
pub const ACCESS_TOKEN_LEN: (usize, usize) = (1, 4096);
/// Project and config name length.
pub const NAME_LEN: (usize, usize) = (1, 255);
/// What `spec.doppler` must set, for the message when it is missing.
pub const REQUIRED: &str = "set project and config";

/// The token authenticates (`GET /v3/me`).
pub const TOKEN: Check = Check::new(
    VaultType::Doppler,
    "token",
    "the token authenticates",
    "GET /v3/me",
    false,
);
/// The token can read the project and config (`GET /v3/configs/config`).
pub const CONFIG: Check = Check::new(
    VaultType::Doppler,
    "config",
    "the token can read the project and config named in spec.doppler",
    "GET /v3/configs/config",
    true,
);
/// The checks verification makes, in order.
pub const CHECKS: &[Check] = &[TOKEN, CONFIG];

/// Doppler project and config the service token belongs to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DopplerSpec {
    /// Doppler project name, 1 to 255 characters.
    #[schemars(length(min = 1, max = 255))]
    pub project: String,

    /// Doppler config (environment branch) name, 1 to 255 characters.
    #[schemars(length(min = 1, max = 255))]
    pub config: String,
}

/// Checks `spec.doppler`; gives the project and config.
pub fn settings(d: &DopplerSpec, errors: &mut Vec<FieldError>) -> (String, String) {
    check_len(errors, "spec.doppler.project", &d.project, NAME_LEN);
    check_len(errors, "spec.doppler.config", &d.config, NAME_LEN);
    (d.project.clone(), d.config.clone())
}

/// The format rule of the access token; personal and CLI tokens only with `allow_personal`.
pub fn token_rule(v: &str, allow_personal: bool) -> Result<(), &'static str> {
    if v.starts_with("dp.scim.") || v.starts_with("dp.audit.") {
        return Err(
            "is a Doppler SCIM or audit token, which cannot read secrets; use a service token (dp.st.)",
        );
    }
    if !allow_personal && (v.starts_with("dp.pt.") || v.starts_with("dp.ct.")) {
        return Err(
            "is a Doppler personal (dp.pt.) or CLI (dp.ct.) token, which carries one person's access to \
             the whole workspace; use a service token (dp.st.) scoped to this project and config, or ask \
             a cluster admin to allow such tokens with --allow-doppler-personal-tokens",
        );
    }
    let kind = v.strip_prefix("dp.").and_then(|rest| rest.split_once('.'));
    match kind {
        Some((kind, rest))
            if matches!(kind, "st" | "sa" | "pt" | "ct" | "said") && !rest.is_empty() =>
        {
            Ok(())
        }
        _ => Err(
            "must be a Doppler token that can read secrets (starts with dp.st., dp.sa., dp.pt., dp.ct. or dp.said.)",
        ),
    }
}

/// Reads the access token from the Secret.
pub fn credentials(secret: &mut SecretKeys, allow_personal: bool) -> Option<SecretString> {
    let key = secret.access_token_key;
    secret.read(key, ACCESS_TOKEN_LEN, |v| token_rule(v, allow_personal))
}

/// The provider's fields of the SSM document, in their order.
#[derive(Serialize)]
pub struct Fields<'a> {
    access_token: &'a str,
    project: &'a str,
    config: &'a str,
}

/// The document fields.
pub fn fields<'a>(access_token: &'a SecretString, project: &'a str, config: &'a str) -> Fields<'a> {
    Fields {
        access_token: access_token.expose_secret(),
        project,
        config,
    }
}
