//! Infisical checks, against the documented Infisical REST API at the configured site URL
//! (`https://app.infisical.com` by default; `https://eu.infisical.com` for the EU cloud, or a
//! self-hosted instance):
//!
//! 1. `POST /api/v1/auth/universal-auth/login` with `{"clientId", "clientSecret"}` (Universal
//!    Auth login; answers `{"accessToken", "expiresIn", "accessTokenMaxTTL", "tokenType"}`).
//!    401/403 (or 400) mean the machine identity refuses these credentials. Infisical locks an
//!    identity out after repeated failed logins, so a verification logs in exactly once and the
//!    caller never retries a refusal.
//! 2. `GET /api/v4/secrets?projectId=…&environment=…&secretPath=…&viewSecretValue=false`
//!    (List secrets, with the access token as `Authorization: Bearer`; answers
//!    `{"secrets": [...], "imports": [...]}`). 200 proves the identity can read the named project,
//!    environment and path; 401/403/404/400 mean it cannot. `viewSecretValue=false` asks
//!    Infisical to leave the secret values out; the body is only checked for a `secrets` list.
//!
//! The short-lived access token lives in a [`SecretString`] and is dropped after the read.

use hyper::body::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{Verdict, Verifier, parse};
use crate::api::VaultType;
use crate::providers::infisical::{LOGIN, READ};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Login<'a> {
    client_id: &'a str,
    client_secret: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginAnswer {
    #[serde(deserialize_with = "secret")]
    access_token: SecretString,
}

/// Reads a string straight into a [`SecretString`].
fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

#[derive(Deserialize)]
struct SecretsAnswer {
    #[allow(dead_code)] // read only to check the documented shape
    secrets: Vec<serde::de::IgnoredAny>,
}

pub(super) async fn verify(
    v: &Verifier,
    client_id: &SecretString,
    client_secret: &SecretString,
    project_id: &str,
    environment: &str,
    secret_path: &str,
) -> Verdict {
    let check = async {
        let base = v.infisical_url();
        let body = serde_json::to_vec(&Login {
            client_id: client_id.expose_secret(),
            client_secret: client_secret.expose_secret(),
        })
        .map(Bytes::from)
        .map_err(|_| Verdict::Unavailable {
            provider: VaultType::Infisical,
            check: LOGIN,
            cause: super::Cause::Request,
        })?;
        let answer = v
            .call(
                LOGIN,
                hyper::Method::POST,
                base.join("/api/v1/auth/universal-auth/login", &[]),
                None,
                Some(body),
            )
            .await?;
        let login: LoginAnswer = parse(LOGIN, &answer)?;
        drop(answer);
        let listed = v
            .call(
                READ,
                hyper::Method::GET,
                base.join(
                    "/api/v4/secrets",
                    &[
                        ("projectId", project_id),
                        ("environment", environment),
                        ("secretPath", secret_path),
                        ("viewSecretValue", "false"),
                    ],
                ),
                Some(&login.access_token),
                None,
            )
            .await?;
        parse::<SecretsAnswer>(READ, &listed)?;
        Ok(())
    };
    match check.await {
        Ok(()) => Verdict::Accepted {
            provider: VaultType::Infisical,
        },
        Err(verdict) => verdict,
    }
}
