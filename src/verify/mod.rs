//! Optional verification of credentials against their provider: does the provider accept them,
//! and can they read what the spec names? Each provider module says which documented endpoint
//! each check calls. The result is a typed [`Verdict`] whose message comes from fixed templates:
//! it names the provider, the check and the HTTP status, never a credential and never anything
//! from a response body.
//!
//! Credentials stay in [`SecretString`]s and are only sent to the configured base URL of their
//! own provider (see [`http`]). 1Password has no public HTTP API for service-account tokens, so
//! its verdict is [`Verdict::NotSupported`].

pub mod doppler;
pub mod http;
pub mod infisical;
pub mod ledger;
pub mod step;

use std::time::Duration;

use hyper::body::Bytes;
use hyper::{Method, StatusCode, Uri};
use secrecy::SecretString;
use serde::de::DeserializeOwned;

pub use crate::providers::Check;

use crate::api::{VaultType, VerificationResult, VerificationStatus};
use crate::providers::Provider;
use http::{BaseUrl, Http, Transport};

/// The default Doppler API base URL.
pub const DOPPLER_DEFAULT_URL: &str = crate::providers::doppler::DEFAULT_URL;
/// The default Infisical site URL (Infisical Cloud, US). EU: `https://eu.infisical.com`.
pub const INFISICAL_DEFAULT_URL: &str = crate::providers::infisical::DEFAULT_URL;

/// Why a provider could not give an answer about the credentials (transient).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Connection or TLS handshake failed.
    Unreachable,
    /// No complete answer within the timeout.
    Timeout,
    /// 429 Too Many Requests.
    RateLimited,
    /// A 5xx answer.
    ServerError(u16),
    /// A status that is neither success nor a refusal (e.g. a redirect, which is not followed).
    UnexpectedStatus(u16),
    /// A success whose body is not the documented response (or is too large to read).
    UnexpectedBody,
    /// The request could not be formed.
    Request,
}

impl Cause {
    fn describe(self) -> String {
        match self {
            Cause::Unreachable => "could not be reached".into(),
            Cause::Timeout => "did not answer within the timeout".into(),
            Cause::RateLimited => "answered 429 (rate limited)".into(),
            Cause::ServerError(code) => format!("answered {code} (server error)"),
            Cause::UnexpectedStatus(code) => format!("answered an unexpected {code}"),
            Cause::UnexpectedBody => {
                "answered with a body that is not the documented response".into()
            }
            Cause::Request => "could not be called (the request could not be formed)".into(),
        }
    }

    /// A short stable name for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Unreachable => "unreachable",
            Cause::Timeout => "timeout",
            Cause::RateLimited => "rate_limited",
            Cause::ServerError(_) => "server_error",
            Cause::UnexpectedStatus(_) => "unexpected_status",
            Cause::UnexpectedBody => "unexpected_body",
            Cause::Request => "request",
        }
    }
}

impl From<Transport> for Cause {
    fn from(t: Transport) -> Cause {
        match t {
            Transport::Unreachable => Cause::Unreachable,
            Transport::Timeout => Cause::Timeout,
            Transport::BadBody => Cause::UnexpectedBody,
            Transport::Request => Cause::Request,
        }
    }
}

/// The result of verifying one connection's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The provider accepted the credentials and they can read what the spec names.
    Accepted {
        /// The provider.
        provider: VaultType,
    },
    /// The provider refused them (401/403, or the named project/config/environment is not
    /// theirs). Permanent for these credentials and this spec: never retried until one changes.
    Rejected {
        /// The provider.
        provider: VaultType,
        /// The check that failed.
        check: Check,
        /// The HTTP status the provider answered.
        status: u16,
    },
    /// No answer about the credentials (unreachable, timeout, 429, 5xx): transient.
    Unavailable {
        /// The provider.
        provider: VaultType,
        /// The check that could not be completed.
        check: Check,
        /// Why.
        cause: Cause,
    },
    /// The provider has no public API to verify against (1Password).
    NotSupported {
        /// The provider.
        provider: VaultType,
    },
}

/// Whether the provider has a check verification can make (1Password has none: its service
/// account tokens cannot be tested without reading a vault item).
pub fn verifiable(p: VaultType) -> bool {
    p.verifiable()
}

/// The provider's name as people write it.
pub fn provider_name(p: VaultType) -> &'static str {
    p.name()
}

impl Verdict {
    /// The `Verified` condition's status: `True`, `False` or `Unknown`.
    pub fn condition_status(&self) -> &'static str {
        match self {
            Verdict::Accepted { .. } => "True",
            Verdict::Rejected { .. } => "False",
            Verdict::Unavailable { .. } | Verdict::NotSupported { .. } => "Unknown",
        }
    }

    /// The `Verified` condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Accepted { .. } => "Verified",
            Verdict::Rejected { .. } => "CredentialsRejected",
            Verdict::Unavailable { .. } => "ProviderUnavailable",
            Verdict::NotSupported { .. } => "VerificationNotSupported",
        }
    }

    /// Whether asking again later can give a different answer for the same credentials.
    pub fn is_transient(&self) -> bool {
        matches!(self, Verdict::Unavailable { .. })
    }

    /// The provider the verdict is about.
    pub fn provider(&self) -> VaultType {
        match self {
            Verdict::Accepted { provider }
            | Verdict::Rejected { provider, .. }
            | Verdict::Unavailable { provider, .. }
            | Verdict::NotSupported { provider } => *provider,
        }
    }

    /// A message from a fixed template: provider, check, endpoint and status; never a value.
    pub fn message(&self) -> String {
        let name = provider_name(self.provider());
        match self {
            Verdict::Accepted { provider } => {
                let checks: Vec<String> = provider
                    .checks()
                    .iter()
                    .map(|c| format!("{} ({})", c.describe(), c.endpoint()))
                    .collect();
                format!("{name} accepted the credentials: {}", checks.join(" and "))
            }
            Verdict::Rejected { check, status, .. } => format!(
                "{name} rejected the credentials: check failed: {} ({} answered {status}); \
                 they are not stored and not tried again until the Secret or the spec changes: \
                 fix the credentials in the Secret, or the spec",
                check.describe(),
                check.endpoint()
            ),
            Verdict::Unavailable { check, cause, .. } => format!(
                "{name} could not be asked whether it accepts the credentials: {} {}; \
                 verification will be retried later",
                check.endpoint(),
                cause.describe()
            ),
            Verdict::NotSupported { provider } => format!(
                "verification is not available for {name}: {}",
                provider.unverifiable_because().unwrap_or("it has no check")
            ),
        }
    }
}

impl Verdict {
    /// The record status keeps of a final verdict about `version` (none for transient ones,
    /// for 1Password, or when the versions are unknown).
    pub fn to_record(&self, version: &ledger::Version) -> Option<VerificationStatus> {
        let (secret_resource_version, generation) = (version.secret.clone()?, version.generation?);
        let (result, check, http_status) = match self {
            Verdict::Accepted { .. } => (VerificationResult::Accepted, None, None),
            Verdict::Rejected { check, status, .. } => (
                VerificationResult::Rejected,
                Some(check.label().to_owned()),
                Some(i32::from(*status)),
            ),
            Verdict::Unavailable { .. } | Verdict::NotSupported { .. } => return None,
        };
        Some(VerificationStatus {
            secret_resource_version,
            generation,
            request: version.request.clone(),
            result,
            check,
            http_status,
        })
    }

    /// The final verdict `record` holds for `provider`, if it is about `version` (1Password has
    /// no check, so no record holds a verdict for it).
    pub fn from_record(
        record: &VerificationStatus,
        provider: VaultType,
        version: &ledger::Version,
    ) -> Option<Verdict> {
        if version.secret.as_deref() != Some(record.secret_resource_version.as_str())
            || version.generation != Some(record.generation)
            || version.request != record.request
            || !verifiable(provider)
        {
            return None;
        }
        Some(match record.result {
            VerificationResult::Accepted => Verdict::Accepted { provider },
            VerificationResult::Rejected => Verdict::Rejected {
                provider,
                check: Check::parse(provider, record.check.as_deref()?)?,
                status: u16::try_from(record.http_status?).ok()?,
            },
        })
    }
}

/// Verification settings (from the `run` flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Doppler API base URL.
    pub doppler_url: String,
    /// Infisical site URL (cloud US or EU, or self-hosted).
    pub infisical_url: String,
    /// Deadline of one provider request.
    pub timeout: Duration,
    /// Tests only: allow `http://` base URLs on loopback IP addresses.
    pub allow_insecure_loopback: bool,
}

impl Settings {
    /// Checks the settings as [`Verifier::new`] does (the `run` command checks its flags with
    /// this too); the error names the flag and the rule.
    pub fn check(&self) -> Result<(), String> {
        self.base_urls().map(drop)
    }

    /// The providers' base URLs, checked, and the timeout checked.
    fn base_urls(&self) -> Result<(BaseUrl, BaseUrl), String> {
        let insecure = self.allow_insecure_loopback;
        let doppler = BaseUrl::parse(&self.doppler_url, insecure)
            .map_err(|e| format!("--verify-doppler-url: {e}"))?;
        let infisical = BaseUrl::parse(&self.infisical_url, insecure)
            .map_err(|e| format!("--verify-infisical-url: {e}"))?;
        if self.timeout.is_zero() {
            return Err("--verify-timeout: must be more than 0s".into());
        }
        Ok((doppler, infisical))
    }
}

/// Verifies credentials against their provider. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Verifier {
    http: Http,
    doppler: BaseUrl,
    infisical: BaseUrl,
    metrics: Option<crate::metrics::Metrics>,
}

impl Verifier {
    /// A verifier for `settings`; the error names the flag and the rule.
    pub fn new(settings: &Settings) -> Result<Verifier, String> {
        let (doppler, infisical) = settings.base_urls()?;
        let insecure = settings.allow_insecure_loopback;
        let http = Http::new(settings.timeout, insecure)?;
        Ok(Verifier {
            http,
            doppler,
            infisical,
            metrics: None,
        })
    }

    /// Counts every provider request in `metrics` (`…_provider_requests_total`).
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Verifier {
        self.metrics = Some(metrics);
        self
    }

    /// Verifies `provider`'s credentials. Makes at most two requests, stops at the first that
    /// fails, and never retries by itself (a retry of a rejected login could lock an identity out).
    pub async fn verify(&self, provider: &Provider) -> Verdict {
        let verdict = match provider {
            Provider::OnePassword { .. } => Verdict::NotSupported {
                provider: VaultType::OnePassword,
            },
            Provider::Doppler {
                access_token,
                project,
                config,
            } => doppler::verify(self, access_token, project, config).await,
            Provider::Infisical {
                client_id,
                client_secret,
                project_id,
                environment,
                secret_path,
            } => {
                infisical::verify(
                    self,
                    client_id,
                    client_secret,
                    project_id,
                    environment,
                    secret_path,
                )
                .await
            }
        };
        tracing::debug!(
            provider = verdict.provider().as_str(),
            verdict = verdict.reason(),
            "credentials verified"
        );
        verdict
    }

    /// One request of a check: the body of a success, or the verdict that ends verification.
    async fn call(
        &self,
        check: Check,
        method: Method,
        uri: Result<Uri, String>,
        bearer: Option<&SecretString>,
        json: Option<Bytes>,
    ) -> Result<Bytes, Verdict> {
        let provider = check.provider();
        let unavailable = |cause| Verdict::Unavailable {
            provider,
            check,
            cause,
        };
        let uri = uri.map_err(|_| unavailable(Cause::Request))?;
        let started = std::time::Instant::now();
        let answer = self.http.send(method, uri, bearer, json).await;
        let status = answer.as_ref().map(|a| a.status.as_u16()).unwrap_or(0);
        // Status and timing only: bodies never reach a log.
        tracing::debug!(
            provider = provider.as_str(),
            check = check.label(),
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "provider answered"
        );
        let step = match &answer {
            Ok(a) => classify(check, a.status),
            Err(t) => Step::NoAnswer((*t).into()),
        };
        if let Some(m) = &self.metrics {
            let outcome = match step {
                Step::Success => "success",
                Step::Refused => "refused",
                Step::NoAnswer(cause) => cause.label(),
            };
            m.provider_request(provider.as_str(), check.label(), outcome);
        }
        match step {
            Step::Success => Ok(answer.map(|a| a.body).unwrap_or_default()),
            Step::Refused => Err(Verdict::Rejected {
                provider,
                check,
                status,
            }),
            Step::NoAnswer(cause) => Err(unavailable(cause)),
        }
    }

    fn doppler_url(&self) -> &BaseUrl {
        &self.doppler
    }

    fn infisical_url(&self) -> &BaseUrl {
        &self.infisical
    }
}

/// Parses the documented shape of a success body; anything else is "no usable answer".
fn parse<T: DeserializeOwned>(check: Check, body: &[u8]) -> Result<T, Verdict> {
    let provider = check.provider();
    // The serde error is dropped unread: it can quote the body.
    serde_json::from_slice(body).map_err(|_| Verdict::Unavailable {
        provider,
        check,
        cause: Cause::UnexpectedBody,
    })
}

enum Step {
    Success,
    Refused,
    NoAnswer(Cause),
}

/// What an HTTP status means for a check: 401 and 403 always refuse; 400, 404 and 422 refuse a
/// check that names a project, config, environment or client; 429, 5xx and timeouts are
/// transient; anything else (a redirect, which is never followed) is an unexpected answer.
fn classify(check: Check, status: StatusCode) -> Step {
    match status.as_u16() {
        200..=299 => Step::Success,
        401 | 403 => Step::Refused,
        400 | 404 | 422 if check.names_scope() => Step::Refused,
        408 => Step::NoAnswer(Cause::Timeout),
        429 => Step::NoAnswer(Cause::RateLimited),
        code @ 500..=599 => Step::NoAnswer(Cause::ServerError(code)),
        code => Step::NoAnswer(Cause::UnexpectedStatus(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{doppler, infisical};

    fn step(check: Check, code: u16) -> &'static str {
        match classify(check, StatusCode::from_u16(code).unwrap()) {
            Step::Success => "ok",
            Step::Refused => "refused",
            Step::NoAnswer(_) => "transient",
        }
    }

    #[test]
    fn unauthorized_and_forbidden_refuse_every_check() {
        for check in VaultType::ALL
            .iter()
            .flat_map(|p| p.checks().iter().copied())
        {
            assert_eq!(step(check, 401), "refused");
            assert_eq!(step(check, 403), "refused");
            assert_eq!(step(check, 200), "ok");
            assert_eq!(step(check, 429), "transient");
            assert_eq!(step(check, 503), "transient");
            assert_eq!(step(check, 302), "transient", "redirects are not followed");
        }
    }

    #[test]
    fn not_found_refuses_only_checks_that_name_a_scope() {
        assert_eq!(step(doppler::CONFIG, 404), "refused");
        assert_eq!(step(infisical::READ, 404), "refused");
        assert_eq!(step(infisical::READ, 400), "refused");
        assert_eq!(step(doppler::TOKEN, 404), "transient");
    }

    #[test]
    fn final_verdicts_round_trip_through_status_for_the_same_version_only() {
        let v = ledger::Version {
            secret: Some("42".into()),
            generation: Some(3),
            request: None,
        };
        let rejected = Verdict::Rejected {
            provider: VaultType::Doppler,
            check: doppler::CONFIG,
            status: 403,
        };
        let record = rejected.to_record(&v).unwrap();
        assert_eq!(
            Verdict::from_record(&record, VaultType::Doppler, &v),
            Some(rejected)
        );
        let accepted = Verdict::Accepted {
            provider: VaultType::Infisical,
        };
        let record = accepted.to_record(&v).unwrap();
        assert_eq!(
            Verdict::from_record(&record, VaultType::Infisical, &v),
            Some(accepted)
        );
        let rotated = ledger::Version {
            secret: Some("43".into()),
            generation: Some(3),
            request: None,
        };
        assert_eq!(
            Verdict::from_record(&record, VaultType::Infisical, &rotated),
            None
        );
        let asked_again = ledger::Version {
            request: Some("2026-12-02".into()),
            ..v.clone()
        };
        assert_eq!(
            Verdict::from_record(&record, VaultType::Infisical, &asked_again),
            None,
            "a new reverify request is a new question"
        );
        let down = Verdict::Unavailable {
            provider: VaultType::Doppler,
            check: doppler::TOKEN,
            cause: Cause::Timeout,
        };
        assert_eq!(
            down.to_record(&v),
            None,
            "transient verdicts are not recorded"
        );
    }

    #[test]
    fn messages_name_provider_check_and_status() {
        let rejected = Verdict::Rejected {
            provider: VaultType::Infisical,
            check: infisical::LOGIN,
            status: 401,
        };
        let m = rejected.message();
        assert!(m.contains("Infisical"), "{m}");
        assert!(
            m.contains("POST /api/v1/auth/universal-auth/login answered 401"),
            "{m}"
        );
        assert_eq!(rejected.reason(), "CredentialsRejected");
        assert_eq!(rejected.condition_status(), "False");
        assert!(!rejected.is_transient());

        let down = Verdict::Unavailable {
            provider: VaultType::Doppler,
            check: doppler::TOKEN,
            cause: Cause::RateLimited,
        };
        assert!(down.message().contains("GET /v3/me answered 429"));
        assert_eq!(down.condition_status(), "Unknown");
        assert!(down.is_transient());

        let op = Verdict::NotSupported {
            provider: VaultType::OnePassword,
        };
        assert!(op.message().contains("not available for 1Password"));
        assert_eq!(op.reason(), "VerificationNotSupported");
    }
}
