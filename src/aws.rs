//! The operator's AWS identity for SSM. The SDK's default chain finds the pod's own identity
//! (IRSA's web identity token, EKS Pod Identity's container credentials, static keys in tests;
//! the instance role only where the deployment leaves IMDS on). With `--ssm-role-arn` a role —
//! typically in the central account that holds the parameters — is assumed on top of it, and
//! the SDK refreshes both before they expire. At start the identity is resolved once, so a pod
//! without one stops with an error that says what to give it, instead of failing every call.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

/// A role assumed for SSM on top of the pod's identity (cross-account access).
#[derive(Debug, Clone, clap::Args)]
pub struct RoleArgs {
    /// IAM role to assume for every SSM call, on top of the pod's own identity, e.g. in the
    /// account that holds the parameters. Its trust policy must allow the pod's role to
    /// `sts:AssumeRole` (and `sts:TagSession` when session tags are set).
    #[arg(long, env = "VCO_SSM_ROLE_ARN")]
    pub ssm_role_arn: Option<String>,

    /// The external id the role's trust policy asks for (`sts:ExternalId`).
    #[arg(long, env = "VCO_SSM_EXTERNAL_ID", requires = "ssm_role_arn")]
    pub ssm_external_id: Option<String>,

    /// Role session name, as CloudTrail shows it (default: the pod's name).
    #[arg(long, env = "VCO_SSM_ROLE_SESSION_NAME", requires = "ssm_role_arn")]
    pub ssm_role_session_name: Option<String>,

    /// Session tags, `key=value` pairs separated by commas (for ABAC in the role's policies).
    #[arg(long, env = "VCO_SSM_ROLE_SESSION_TAGS", value_delimiter = ',',
          value_parser = parse_tag, requires = "ssm_role_arn")]
    pub ssm_role_session_tags: Vec<(String, String)>,

    /// How long each assumed session lasts; the SDK renews it before it ends. AWS accepts 15m
    /// up to the role's maximum session duration.
    #[arg(long, env = "VCO_SSM_ROLE_SESSION_DURATION", default_value = "1h",
          value_parser = humantime::parse_duration)]
    pub ssm_role_session_duration: Duration,
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not key=value"))?;
    let (k, v) = (k.trim(), v.trim());
    if k.is_empty() || k.len() > 128 || v.len() > 256 {
        return Err(format!(
            "{k:?}: a session tag key is 1-128 characters and its value at most 256"
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

impl RoleArgs {
    /// Checks the settings together; the error names the flag and the rule.
    pub fn check(&self) -> Result<(), String> {
        if let Some(arn) = &self.ssm_role_arn
            && !valid_role_arn(arn)
        {
            return Err(
                "--ssm-role-arn: must be an IAM role ARN, arn:PARTITION:iam::ACCOUNT:role/NAME"
                    .into(),
            );
        }
        if let Some(name) = &self.ssm_role_session_name
            && !valid_session_name(name)
        {
            return Err(
                "--ssm-role-session-name: must be 2-64 letters, digits or any of =,.@_-".into(),
            );
        }
        if let Some(id) = &self.ssm_external_id
            && !(2..=1224).contains(&id.len())
        {
            return Err("--ssm-external-id: must be 2-1224 characters".into());
        }
        if self.ssm_role_session_tags.len() > 50 {
            return Err("--ssm-role-session-tags: at most 50 tags".into());
        }
        if self.ssm_role_session_duration < Duration::from_secs(1) {
            return Err("--ssm-role-session-duration: must be at least 1s".into());
        }
        Ok(())
    }
}

fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(),
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource.strip_prefix("role/").is_some_and(|n| !n.is_empty()))
}

fn valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=,.@_-".contains(&b))
}

/// A session name from the pod's name: its last 64 characters AWS allows (the unique suffix).
pub fn session_name_for(pod: &str) -> String {
    let allowed: String = pod
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let skip = allowed.len().saturating_sub(64);
    let name = &allowed[skip..];
    if name.len() < 2 {
        crate::ownership::MANAGED_BY.to_owned()
    } else {
        name.to_owned()
    }
}

/// `base` with, when a role is set, that role assumed on top of `base`'s identity.
pub async fn with_role(base: SdkConfig, role: &RoleArgs) -> SdkConfig {
    let Some(arn) = &role.ssm_role_arn else {
        return base;
    };
    let session = role.ssm_role_session_name.clone().unwrap_or_else(|| {
        std::env::var("POD_NAME")
            .map(|p| session_name_for(&p))
            .unwrap_or_else(|_| crate::ownership::MANAGED_BY.to_owned())
    });
    let mut builder = AssumeRoleProvider::builder(arn)
        .session_name(session)
        .session_length(role.ssm_role_session_duration)
        .configure(&base);
    if let Some(id) = &role.ssm_external_id {
        builder = builder.external_id(id);
    }
    if !role.ssm_role_session_tags.is_empty() {
        builder = builder.tags(role.ssm_role_session_tags.clone());
    }
    let provider = builder.build().await;
    base.into_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

/// Resolves the identity once, within `timeout`. The error says which part of the chain
/// failed and how a pod gets an identity; it carries the SDK's explanation, never a key.
pub async fn resolve_identity(
    aws: &SdkConfig,
    role: &RoleArgs,
    timeout: Duration,
) -> Result<(), String> {
    let Some(provider) = aws.credentials_provider() else {
        return Err(no_identity("no credentials provider is configured"));
    };
    let what = if role.ssm_role_arn.is_some() {
        "assuming --ssm-role-arn on top of the pod's identity failed"
    } else {
        "the pod has no AWS identity"
    };
    match tokio::time::timeout(timeout, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(no_identity(&format!(
            "{what} ({}: {})",
            kind(&e),
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        ))),
        Err(_) => Err(no_identity(&format!(
            "{what} (no answer within {}s)",
            timeout.as_secs()
        ))),
    }
}

fn no_identity(why: &str) -> String {
    format!(
        "cannot use SSM: {why}. Give the operator's pod an identity: EKS Pod Identity (an \
         association for its service account), IRSA (the eks.amazonaws.com/role-arn annotation \
         on its service account), or, outside EKS, AWS_* keys; instance roles through IMDS are \
         off unless the chart's aws.imdsFallback is set"
    )
}

/// The class of a credentials failure, by variant alone (no provider text).
pub fn kind(e: &CredentialsError) -> &'static str {
    match e {
        CredentialsError::CredentialsNotLoaded(_) => "CredentialsNotLoaded",
        CredentialsError::ProviderTimedOut(_) => "ProviderTimedOut",
        CredentialsError::InvalidConfiguration(_) => "InvalidConfiguration",
        CredentialsError::ProviderError(_) => "ProviderError",
        _ => "CredentialsError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked() {
        for ok in [
            "arn:aws:iam::123456789012:role/vco",
            "arn:aws-us-gov:iam::123456789012:role/path/vco",
        ] {
            assert!(valid_role_arn(ok), "{ok}");
        }
        for bad in [
            "arn:aws:iam::12345:role/vco",
            "arn:aws:iam::123456789012:user/vco",
            "arn:aws:sts::123456789012:role/vco",
            "arn:aws:iam::123456789012:role/",
            "vco",
        ] {
            assert!(!valid_role_arn(bad), "{bad}");
        }
    }

    #[test]
    fn session_names_keep_the_pods_unique_end_and_allowed_characters() {
        let pod = format!("{}-7d9f8b6c5-x2x9q", "a".repeat(80));
        let name = session_name_for(&pod);
        assert_eq!(name.len(), 64);
        assert!(name.ends_with("-7d9f8b6c5-x2x9q"));
        assert!(valid_session_name(&name));
        assert_eq!(session_name_for("pod/with:odd"), "pod-with-odd");
        assert_eq!(session_name_for("x"), crate::ownership::MANAGED_BY);
    }

    #[test]
    fn session_tags_parse_as_key_value() {
        assert_eq!(
            parse_tag("team = payments").unwrap(),
            ("team".to_owned(), "payments".to_owned())
        );
        assert!(parse_tag("novalue").unwrap_err().contains("key=value"));
        assert!(parse_tag("=v").is_err());
    }
}
