//! The pure validation core: from a spec and a Secret's data to a typed [`Connection`], or to a
//! list of [`FieldError`]s that name the field and the rule — never a value.
//!
//! Nothing here does I/O. The controller and the offline `validate` command both call
//! [`validate_spec`], [`check_kms_key`] and [`validate_credentials`] with the same [`Policy`], so
//! they cannot disagree.

pub mod policy;
pub mod rules;

pub use crate::providers::infisical::normalize_secret_path;
pub use crate::providers::{Provider, ProviderSettings};
pub use policy::{Policy, RULES_VERSION};
pub use rules::{ErrorKind, FieldError, SecretData, is_invisible, summarize};

use crate::api::{DeletionPolicy, VaultConnectionSpec, VaultType};
use crate::providers;
use rules::{SecretKeys, check_len, is_dns_subdomain, is_secret_key};

/// Limits of the resource that no provider owns (each provider's are in its module in
/// [`crate::providers`]; docs/design.md lists them).
pub mod limits {
    /// Display name length.
    pub const DISPLAY_NAME: (usize, usize) = (1, 255);
    /// Description length.
    pub const DESCRIPTION_MAX: usize = 2000;
    /// KMS key id length.
    pub const KMS_KEY_ID: (usize, usize) = (1, 2048);
}

/// Checks the KMS key a spec names against the policy's allow-list. A spec that names none gets
/// the operator's default key, which is always allowed. Namespace admins write specs; which keys
/// encrypt the account's parameters is the cluster admin's call.
pub fn check_kms_key(spec: &ValidSpec, policy: &Policy) -> Result<(), FieldError> {
    match (&spec.kms_key_id, &policy.allowed_kms_keys) {
        (Some(key), Some(allowed)) if !allowed.contains(key) => Err(FieldError {
            field: "spec.ssm.kmsKeyId".into(),
            kind: ErrorKind::KmsKeyNotAllowed,
            message: "names a KMS key this operator may not use; nothing was written: remove the \
                      field to use the default key, or ask a cluster admin to add the key to \
                      --allowed-kms-keys (chart value policy.allowedKmsKeys)"
                .into(),
        }),
        _ => Ok(()),
    }
}

/// A spec that passed every rule; later code cannot see an invalid spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSpec {
    /// Display name (defaults to metadata.name).
    pub display_name: String,
    /// Description, empty when not set.
    pub description: String,
    /// Provider and its settings.
    pub settings: ProviderSettings,
    /// Name of the credentials Secret in the same namespace.
    pub secret_name: String,
    /// Secret key of the access token.
    pub access_token_key: String,
    /// Secret key of the client id.
    pub client_id_key: String,
    /// Secret key of the client secret.
    pub client_secret_key: String,
    /// KMS key requested by the spec, if any.
    pub kms_key_id: Option<String>,
    /// What to do with the parameter on delete.
    pub deletion_policy: DeletionPolicy,
}

impl ValidSpec {
    /// The provider of this connection.
    pub fn vault_type(&self) -> VaultType {
        self.settings.vault_type()
    }
}

/// A fully validated connection: what the SSM document is rendered from.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The validated spec.
    pub spec: ValidSpec,
    /// The provider with its credentials.
    pub provider: Provider,
}

/// Checks a spec against every rule of the resource (docs/design.md). `name` is the object's metadata.name (the
/// default display name).
pub fn validate_spec(name: &str, spec: &VaultConnectionSpec) -> Result<ValidSpec, Vec<FieldError>> {
    let mut errors = Vec::new();

    let display_name = match &spec.display_name {
        Some(d) => {
            check_len(&mut errors, "spec.displayName", d, limits::DISPLAY_NAME);
            d.clone()
        }
        None => name.to_owned(),
    };
    let description = spec.description.clone().unwrap_or_default();
    check_len(
        &mut errors,
        "spec.description",
        &description,
        (0, limits::DESCRIPTION_MAX),
    );

    let secret_ref = &spec.credentials_secret_ref;
    if !is_dns_subdomain(&secret_ref.name) {
        errors.push(FieldError::spec(
            "spec.credentialsSecretRef.name",
            "must be a Secret name: 1 to 253 lowercase letters, digits, '-' or '.'",
        ));
    }
    let keys = [
        ("accessToken", secret_ref.access_token_key()),
        ("clientId", secret_ref.client_id_key()),
        ("clientSecret", secret_ref.client_secret_key()),
    ];
    for (field, key) in keys {
        if !is_secret_key(key) {
            errors.push(FieldError::spec(
                format!("spec.credentialsSecretRef.keys.{field}"),
                "must be a Secret key: 1 to 253 letters, digits, '-', '_' or '.'",
            ));
        }
    }

    let settings = providers::settings(spec, &mut errors);

    let kms_key_id = spec.ssm.as_ref().and_then(|s| s.kms_key_id.clone());
    if let Some(kms) = &kms_key_id
        && check_len(&mut errors, "spec.ssm.kmsKeyId", kms, limits::KMS_KEY_ID)
        && kms.chars().any(char::is_whitespace)
    {
        errors.push(FieldError::spec(
            "spec.ssm.kmsKeyId",
            "must not contain whitespace; use a key id, key ARN, alias name or alias ARN",
        ));
    }

    match settings {
        Some(settings) if errors.is_empty() => Ok(ValidSpec {
            display_name,
            description,
            settings,
            secret_name: secret_ref.name.clone(),
            access_token_key: secret_ref.access_token_key().to_owned(),
            client_id_key: secret_ref.client_id_key().to_owned(),
            client_secret_key: secret_ref.client_secret_key().to_owned(),
            kms_key_id,
            deletion_policy: spec.deletion_policy,
        }),
        _ => Err(errors),
    }
}

/// Reads and checks the credentials the spec's provider needs from the Secret's data, under the
/// operator's `policy`.
pub fn validate_credentials(
    spec: &ValidSpec,
    data: &SecretData,
    policy: &Policy,
) -> Result<Connection, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut secret = SecretKeys {
        secret: &spec.secret_name,
        data,
        access_token_key: &spec.access_token_key,
        client_id_key: &spec.client_id_key,
        client_secret_key: &spec.client_secret_key,
        errors: &mut errors,
    };
    let provider = providers::credentials(
        &spec.settings,
        &mut secret,
        policy.allow_doppler_personal_tokens,
    );
    match provider {
        Some(provider) if errors.is_empty() => Ok(Connection {
            spec: spec.clone(),
            provider,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests;
