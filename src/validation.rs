//! The pure validation core: from a spec and a Secret's data to a typed [`Connection`], or to a
//! list of [`FieldError`]s that name the field and the rule — never a value.
//!
//! Nothing here does I/O. The controller and the offline `validate` command both call
//! [`validate_spec`], [`check_kms_key`] and [`validate_credentials`] with the same [`Policy`], so
//! they cannot disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::api::{DeletionPolicy, VaultConnectionSpec, VaultType};
use crate::reason::Reason;

/// Why a connection is not usable. Each kind maps to a status condition reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The spec breaks a rule (admission should have caught it; we check again).
    InvalidSpec,
    /// The Secret lacks a key the provider needs.
    MissingKey,
    /// A credential in the Secret fails a format or length check.
    InvalidCredentials,
    /// The spec names a KMS key the operator's policy does not allow.
    KmsKeyNotAllowed,
}

impl ErrorKind {
    /// The status condition reason for this kind of error.
    pub fn reason(self) -> Reason {
        match self {
            ErrorKind::InvalidSpec => Reason::InvalidSpec,
            ErrorKind::MissingKey => Reason::MissingKey,
            ErrorKind::InvalidCredentials => Reason::InvalidCredentials,
            ErrorKind::KmsKeyNotAllowed => Reason::KmsKeyNotAllowed,
        }
    }
}

/// One broken rule: the field (a path in the spec, or `Secret/NAME[KEY]`) and what is wrong and
/// what to do. Messages come from fixed templates and never contain a credential value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where the problem is: `spec.doppler.project` or `Secret/doppler-credentials[access_token]`.
    pub field: String,
    /// Which kind of problem (maps to a condition reason).
    pub kind: ErrorKind,
    /// The rule broken and what to do, without the offending value.
    pub message: String,
}

impl FieldError {
    fn spec(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: ErrorKind::InvalidSpec,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Joins errors into one line for a status message or an event.
pub fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

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

/// Limits of the resource (they mirror the provider API; docs/design.md lists them).
pub mod limits {
    /// Display name length.
    pub const DISPLAY_NAME: (usize, usize) = (1, 255);
    /// Description length.
    pub const DESCRIPTION_MAX: usize = 2000;
    /// Access token length (1Password, Doppler).
    pub const ACCESS_TOKEN: (usize, usize) = (1, 4096);
    /// Infisical client id length.
    pub const CLIENT_ID: (usize, usize) = (1, 255);
    /// Infisical client secret length.
    pub const CLIENT_SECRET: (usize, usize) = (1, 1000);
    /// Doppler project and config length.
    pub const DOPPLER_NAME: (usize, usize) = (1, 255);
    /// Infisical project id length.
    pub const PROJECT_ID: (usize, usize) = (1, 255);
    /// Infisical environment length.
    pub const ENVIRONMENT: (usize, usize) = (1, 100);
    /// Infisical secret path length.
    pub const SECRET_PATH_MAX: usize = 500;
    /// KMS key id length.
    pub const KMS_KEY_ID: (usize, usize) = (1, 2048);
}

/// The non-secret, provider-specific settings of a valid spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderSettings {
    /// 1Password needs only the token.
    OnePassword,
    /// Doppler project and config.
    Doppler {
        /// Doppler project name.
        project: String,
        /// Doppler config name.
        config: String,
    },
    /// Infisical project, environment and normalised secret path.
    Infisical {
        /// Infisical project id.
        project_id: String,
        /// Environment slug.
        environment: String,
        /// Secret path, always starting with `/`.
        secret_path: String,
    },
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
        match self.settings {
            ProviderSettings::OnePassword => VaultType::OnePassword,
            ProviderSettings::Doppler { .. } => VaultType::Doppler,
            ProviderSettings::Infisical { .. } => VaultType::Infisical,
        }
    }
}

/// A provider with its settings and its credentials, the credentials redacted in `Debug`.
#[derive(Debug, Clone)]
pub enum Provider {
    /// 1Password service account.
    OnePassword {
        /// Service-account token (`ops_...`).
        access_token: SecretString,
    },
    /// Doppler service token scoped to a project and config.
    Doppler {
        /// Service token (`dp.st....`).
        access_token: SecretString,
        /// Doppler project name.
        project: String,
        /// Doppler config name.
        config: String,
    },
    /// Infisical Universal Auth machine identity.
    Infisical {
        /// Client id (a UUID).
        client_id: SecretString,
        /// Client secret.
        client_secret: SecretString,
        /// Infisical project id.
        project_id: String,
        /// Environment slug.
        environment: String,
        /// Secret path, always starting with `/`.
        secret_path: String,
    },
}

/// A fully validated connection: what the SSM document is rendered from.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The validated spec.
    pub spec: ValidSpec,
    /// The provider with its credentials.
    pub provider: Provider,
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

fn check_len(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &str,
    (min, max): (usize, usize),
) -> bool {
    let n = char_len(value);
    if n < min || n > max {
        let rule = if min == 0 {
            format!("must be at most {max} characters")
        } else {
            format!("must be {min} to {max} characters")
        };
        errors.push(FieldError::spec(field, format!("{rule} (has {n})")));
        return false;
    }
    true
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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

    let settings = provider_settings(spec, &mut errors);

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

fn provider_settings(
    spec: &VaultConnectionSpec,
    errors: &mut Vec<FieldError>,
) -> Option<ProviderSettings> {
    let vt = spec.vault_type.as_str();
    if spec.doppler.is_some() && spec.vault_type != VaultType::Doppler {
        errors.push(FieldError::spec(
            "spec.doppler",
            format!(
                "must be absent when spec.vaultType is {vt}; remove it or set vaultType: doppler"
            ),
        ));
    }
    if spec.infisical.is_some() && spec.vault_type != VaultType::Infisical {
        errors.push(FieldError::spec(
            "spec.infisical",
            format!(
                "must be absent when spec.vaultType is {vt}; remove it or set vaultType: infisical"
            ),
        ));
    }
    match spec.vault_type {
        VaultType::OnePassword => Some(ProviderSettings::OnePassword),
        VaultType::Doppler => {
            let Some(d) = &spec.doppler else {
                errors.push(FieldError::spec(
                    "spec.doppler",
                    "is required when spec.vaultType is doppler; set project and config",
                ));
                return None;
            };
            check_len(
                errors,
                "spec.doppler.project",
                &d.project,
                limits::DOPPLER_NAME,
            );
            check_len(
                errors,
                "spec.doppler.config",
                &d.config,
                limits::DOPPLER_NAME,
            );
            Some(ProviderSettings::Doppler {
                project: d.project.clone(),
                config: d.config.clone(),
            })
        }
        VaultType::Infisical => {
            let Some(i) = &spec.infisical else {
                errors.push(FieldError::spec(
                    "spec.infisical",
                    "is required when spec.vaultType is infisical; set projectId and environment",
                ));
                return None;
            };
            if check_len(
                errors,
                "spec.infisical.projectId",
                &i.project_id,
                limits::PROJECT_ID,
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
                limits::ENVIRONMENT,
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
                (0, limits::SECRET_PATH_MAX),
            );
            Some(ProviderSettings::Infisical {
                project_id: i.project_id.clone(),
                environment: i.environment.clone(),
                secret_path: normalize_secret_path(&i.secret_path),
            })
        }
    }
}

/// Gives a secret path its leading `/` (the empty path is the root).
pub fn normalize_secret_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// A Secret's data as the operator sees it: `data` decoded, with `stringData` merged over it
/// (as the API server does on write).
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// Reads and checks the credentials the spec's provider needs from the Secret's data, under the
/// operator's `policy`.
pub fn validate_credentials(
    spec: &ValidSpec,
    data: &SecretData,
    policy: &Policy,
) -> Result<Connection, Vec<FieldError>> {
    let mut errors = Vec::new();
    let secret = &spec.secret_name;
    let token = |errors: &mut Vec<FieldError>, rule: &dyn Fn(&str) -> Result<(), &'static str>| {
        credential(
            errors,
            secret,
            &spec.access_token_key,
            data,
            limits::ACCESS_TOKEN,
            rule,
        )
    };
    let provider = match &spec.settings {
        ProviderSettings::OnePassword => token(&mut errors, &one_password_token)
            .map(|access_token| Provider::OnePassword { access_token }),
        ProviderSettings::Doppler { project, config } => {
            let rule = |v: &str| doppler_token(v, policy.allow_doppler_personal_tokens);
            token(&mut errors, &rule).map(|access_token| Provider::Doppler {
                access_token,
                project: project.clone(),
                config: config.clone(),
            })
        }
        ProviderSettings::Infisical {
            project_id,
            environment,
            secret_path,
        } => {
            let id = credential(
                &mut errors,
                secret,
                &spec.client_id_key,
                data,
                limits::CLIENT_ID,
                infisical_client_id,
            );
            let client_secret = credential(
                &mut errors,
                secret,
                &spec.client_secret_key,
                data,
                limits::CLIENT_SECRET,
                |_| Ok(()),
            );
            id.zip(client_secret)
                .map(|(client_id, client_secret)| Provider::Infisical {
                    client_id,
                    client_secret,
                    project_id: project_id.clone(),
                    environment: environment.clone(),
                    secret_path: secret_path.clone(),
                })
        }
    };
    match provider {
        Some(provider) if errors.is_empty() => Ok(Connection {
            spec: spec.clone(),
            provider,
        }),
        _ => Err(errors),
    }
}

/// Whether `c` is a formatting character nobody sees: zero-width characters, bidirectional marks
/// and overrides, the byte-order mark, the soft hyphen, word joiners and invisible operators, tag
/// characters. Unicode does not count them as whitespace, so `trim` keeps them; no provider's
/// credential contains one, and one pasted in along with a token (or a BOM from a file saved on
/// Windows) would otherwise be stored and fail only at the provider.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}' | '\u{e0000}'..='\u{e007f}')
}

/// Reads one credential: present, UTF-8, trimmed of surrounding whitespace (a trailing newline
/// from `--from-file` is common), within its length limit, free of inner whitespace, control and
/// invisible characters, and passing the provider's format rule.
fn credential(
    errors: &mut Vec<FieldError>,
    secret: &str,
    key: &str,
    data: &SecretData,
    (min, max): (usize, usize),
    format_rule: impl Fn(&str) -> Result<(), &'static str>,
) -> Option<SecretString> {
    let field = format!("Secret/{secret}[{key}]");
    let mut fail = |kind, message: String| {
        errors.push(FieldError {
            field: field.clone(),
            kind,
            message,
        });
        None
    };
    let Some(bytes) = data.get(key) else {
        return fail(
            ErrorKind::MissingKey,
            "key is missing; add it to the Secret or point spec.credentialsSecretRef.keys at the right key"
                .to_owned(),
        );
    };
    // Decode into a secret at once so no copy of the value outlives this function unredacted.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return fail(
            ErrorKind::InvalidCredentials,
            "is not valid UTF-8".to_owned(),
        );
    };
    let value = SecretString::from(text.trim());
    let v = value.expose_secret();
    let n = char_len(v);
    if n < min || n > max {
        return fail(
            ErrorKind::InvalidCredentials,
            format!("must be {min} to {max} characters after trimming whitespace (has {n})"),
        );
    }
    if v.chars().any(char::is_whitespace) {
        return fail(
            ErrorKind::InvalidCredentials,
            "must not contain whitespace".to_owned(),
        );
    }
    if v.chars().any(|c| c.is_control() || is_invisible(c)) {
        return fail(
            ErrorKind::InvalidCredentials,
            "must not contain control or invisible characters (such as a zero-width space or a byte-order mark)".to_owned(),
        );
    }
    if let Err(rule) = format_rule(v) {
        return fail(ErrorKind::InvalidCredentials, rule.to_owned());
    }
    Some(value)
}

fn one_password_token(v: &str) -> Result<(), &'static str> {
    if v.starts_with("ops_") {
        Ok(())
    } else {
        Err("must be a 1Password service-account token (starts with \"ops_\")")
    }
}

fn doppler_token(v: &str, allow_personal: bool) -> Result<(), &'static str> {
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

fn infisical_client_id(v: &str) -> Result<(), &'static str> {
    uuid::Uuid::try_parse(v)
        .map(drop)
        .map_err(|_| "must be an Infisical Universal Auth client id (a UUID)")
}

#[cfg(test)]
mod tests;
