//! Doppler checks, against the documented Doppler REST API (`https://api.doppler.com`, token as
//! `Authorization: Bearer`):
//!
//! 1. `GET /v3/me` ("Me", the token's own details: type, slug, workplace). 200 proves the token
//!    authenticates; 401/403 mean it is revoked or invalid. The body (which includes a token
//!    preview) is only checked to be a JSON object; none of it is kept.
//! 2. `GET /v3/configs/config?project=…&config=…` ("Retrieve config", answers
//!    `{"config": {"name", "project", "environment", …}}`). A service token may read its own
//!    config; 200 proves the token can read the named project and config, while 401/403/404
//!    mean it belongs to another project or config.

use secrecy::SecretString;
use serde::Deserialize;

use super::{Verdict, Verifier, parse};
use crate::api::VaultType;
use crate::providers::doppler::{CONFIG, TOKEN};

/// `GET /v3/me` answers an object; its fields are not needed.
#[derive(Deserialize)]
struct Me {}

/// `GET /v3/configs/config` answers `{"config": {...}}`.
#[derive(Deserialize)]
struct ConfigAnswer {
    #[allow(dead_code)] // read only to check the documented shape
    config: ConfigDetails,
}

#[derive(Deserialize)]
struct ConfigDetails {}

pub(super) async fn verify(
    v: &Verifier,
    token: &SecretString,
    project: &str,
    config: &str,
) -> Verdict {
    let check = async {
        let base = v.doppler_url();
        let me = v
            .call(
                TOKEN,
                hyper::Method::GET,
                base.join("/v3/me", &[]),
                Some(token),
                None,
            )
            .await?;
        parse::<Me>(TOKEN, &me)?;
        let found = v
            .call(
                CONFIG,
                hyper::Method::GET,
                base.join(
                    "/v3/configs/config",
                    &[("project", project), ("config", config)],
                ),
                Some(token),
                None,
            )
            .await?;
        parse::<ConfigAnswer>(CONFIG, &found)?;
        Ok(())
    };
    match check.await {
        Ok(()) => Verdict::Accepted {
            provider: VaultType::Doppler,
        },
        Err(verdict) => verdict,
    }
}
