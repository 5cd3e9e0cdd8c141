//! Infisical, with a Universal Auth machine identity (client id and client secret). Its parts:
//! the `spec.infisical` section ([`InfisicalSpec`], with its limits and the secret path's
//! normalisation), two credentials with their limits and format rules, its document fields, two
//! verification checks and the default site URL. The HTTP calls of the checks are in
//! [`crate::verify::infisical`].

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::parts::{Check, VaultType};
use crate::validation::rules::{FieldError, SecretKeys, check_len};

/// The provider's name as people write it.
pub const NAME: &str = "Infisical";
/// The default Infisical site URL (Infisical Cloud, US). EU: `https://eu.infisical.com`.
pub const DEFAULT_URL: &str = "https://app.infisical.com";
/// Client id length.
pub const CLIENT_ID_LEN: (usize, usize) = (1, 255);
/// Client secret length.
pub const CLIENT_SECRET_LEN: (usize, usize) = (1, 1000);
/// Project id length.
pub const PROJECT_ID_LEN: (usize, usize) = (1, 255);
/// Environment slug length.
pub const ENVIRONMENT_LEN: (usize, usize) = (1, 100);
/// Longest secret path.
pub const SECRET_PATH_MAX: usize = 500;
/// What `spec.infisical` must set, for the message when it is missing.
pub const REQUIRED: &str = "set projectId and environment";

/// Universal Auth login (`POST /api/v1/auth/universal-auth/login`).
pub const LOGIN: Check = Check::new(
    VaultType::Infisical,
    "login",
    "Universal Auth login with the client id and client secret",
    "POST /api/v1/auth/universal-auth/login",
    true,
);
/// The identity can read the project, environment and path (`GET /api/v4/secrets`).
pub const READ: Check = Check::new(
    VaultType::Infisical,
    "read",
    "the identity can read the project, environment and secret path named in spec.infisical",
    "GET /api/v4/secrets",
    true,
);
/// The checks verification makes, in order.
pub const CHECKS: &[Check] = &[LOGIN, READ];

/// Infisical project, environment and path the machine identity reads.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InfisicalSpec {
    /// Infisical project id, 1 to 255 characters.
    #[schemars(length(min = 1, max = 255))]
    pub project_id: String,

    /// Infisical environment slug (for example `prod`), 1 to 100 characters, without
    /// whitespace or `/`.
    #[schemars(length(min = 1, max = 100), regex(pattern = r"^[^\s/]+$"))]
    pub environment: String,

    /// Folder path of the secrets in the environment, at most 500 characters. Default: `/`.
    /// A leading `/` is added if missing.
    #[serde(default = "default_secret_path")]
    #[schemars(length(max = 500))]
    pub secret_path: String,
}

fn default_secret_path() -> String {
    "/".to_owned()
}

/// The checked settings of `spec.infisical`: project id, environment, normalised secret path.
pub type Settings = (String, String, String);

/// Checks `spec.infisical`; gives the project id, environment and normalised secret path.
pub fn settings(i: &InfisicalSpec, errors: &mut Vec<FieldError>) -> Settings {
    if check_len(
        errors,
        "spec.infisical.projectId",
        &i.project_id,
        PROJECT_ID_LEN,
    ) && i.project_id.trim().is_empty()
    {
        errors.push(FieldError::spec(
            "spec.infisical.projectId",
            "must not be blank",
        ));
    }
    if check_len(
        errors,
        "spec.infisical.environment",
        &i.environment,
        ENVIRONMENT_LEN,
    ) && i.environment.chars().any(|c| c.is_whitespace() || c == '/')
    {
        errors.push(FieldError::spec(
            "spec.infisical.environment",
            "must not contain whitespace or '/'; use the environment slug, e.g. prod",
        ));
    }
    check_len(
        errors,
        "spec.infisical.secretPath",
        &i.secret_path,
        (0, SECRET_PATH_MAX),
    );
    (
        i.project_id.clone(),
        i.environment.clone(),
        normalize_secret_path(&i.secret_path),
    )
}

/// Gives a secret path its leading `/` (the empty path is the root).
pub fn normalize_secret_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// The format rule of the client id.
pub fn client_id_rule(v: &str) -> Result<(), &'static str> {
    uuid::Uuid::try_parse(v)
        .map(drop)
        .map_err(|_| "must be an Infisical Universal Auth client id (a UUID)")
}

/// Reads the client id and the client secret from the Secret (both, so that every broken rule
/// is reported at once).
pub fn credentials(secret: &mut SecretKeys) -> Option<(SecretString, SecretString)> {
    let (id_key, secret_key) = (secret.client_id_key, secret.client_secret_key);
    let id = secret.read(id_key, CLIENT_ID_LEN, client_id_rule);
    let client_secret = secret.read(secret_key, CLIENT_SECRET_LEN, |_| Ok(()));
    id.zip(client_secret)
}

/// The provider's fields of the SSM document, in their order.
#[derive(Serialize)]
pub struct Fields<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    project_id: &'a str,
    environment: &'a str,
    secret_path: &'a str,
}

/// The document fields.
pub fn fields<'a>(
    client_id: &'a SecretString,
    client_secret: &'a SecretString,
    project_id: &'a str,
    environment: &'a str,
    secret_path: &'a str,
) -> Fields<'a> {
    Fields {
        client_id: client_id.expose_secret(),
        client_secret: client_secret.expose_secret(),
        project_id,
        environment,
        secret_path,
    }
}
