//! 1Password, with a service-account access token (`ops_...`). Its parts: no spec section, one
//! credential (the access token) with its limits and format rule, its document fields, and no
//! verification check (service-account tokens have no public HTTP API, only the SDKs), so no
//! URL either.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::parts::{Check, VaultType};
use crate::validation::rules::SecretKeys;

/// The provider's name as people write it.
pub const NAME: &str = "1Password";
/// Access token length.
pub const ACCESS_TOKEN_LEN: (usize, usize) = (1, 4096);
/// The checks verification makes: none.
pub const CHECKS: &[Check] = &[];

/// Why verification has no check for 1Password, for the `Verified` condition.
pub const NOT_VERIFIABLE: &str =
    "its service-account tokens have no public HTTP API to check them against (only the SDKs)";

/// The provider this module describes.
pub const VAULT_TYPE: VaultType = VaultType::OnePassword;

/// The format rule of the access token.
pub fn token_rule(v: &str) -> Result<(), &'static str> {
    if v.starts_with("ops_") {
        Ok(())
    } else {
        Err("must be a 1Password service-account token (starts with \"ops_\")")
    }
}

/// Reads the access token from the Secret.
pub fn credentials(secret: &mut SecretKeys) -> Option<SecretString> {
    let key = secret.access_token_key;
    secret.read(key, ACCESS_TOKEN_LEN, token_rule)
}

/// The provider's fields of the SSM document, in their order.
#[derive(Serialize)]
pub struct Fields<'a> {
    access_token: &'a str,
}

/// The document fields for `access_token`.
pub fn fields(access_token: &SecretString) -> Fields<'_> {
    Fields {
        access_token: access_token.expose_secret(),
    }
}
