//! The shared machinery of validation: what a broken rule is ([`FieldError`]), the length rule,
//! and the reading of one credential from a Secret ([`SecretKeys::read`]): present, UTF-8,
//! trimmed, within its limits, without whitespace or invisible characters, and passing the
//! provider's own format rule. Every provider module checks its fields with these; nothing here
//! knows a provider.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};

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
    /// A broken rule of the spec (kind [`ErrorKind::InvalidSpec`]).
    pub fn spec(field: impl Into<String>, message: impl Into<String>) -> Self {
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

/// A Secret's data as the operator sees it: `data` decoded, with `stringData` merged over it
/// (as the API server does on write).
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// One connection's credentials Secret, read key by key; broken rules go to `errors`.
pub struct SecretKeys<'a> {
    /// The Secret's name (for the field of an error: `Secret/NAME[KEY]`).
    pub secret: &'a str,
    /// Its data.
    pub data: &'a SecretData,
    /// Secret key of the access token.
    pub access_token_key: &'a str,
    /// Secret key of the client id.
    pub client_id_key: &'a str,
    /// Secret key of the client secret.
    pub client_secret_key: &'a str,
    /// Where broken rules go.
    pub errors: &'a mut Vec<FieldError>,
}

impl SecretKeys<'_> {
    /// Reads the credential at `key` (see [`credential`]).
    pub fn read(
        &mut self,
        key: &str,
        limits: (usize, usize),
        format_rule: impl Fn(&str) -> Result<(), &'static str>,
    ) -> Option<SecretString> {
        credential(
            self.errors,
            self.secret,
            key,
            self.data,
            limits,
            format_rule,
        )
    }
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Checks that `value` is `min` to `max` characters; records the broken rule in `errors`.
pub fn check_len(
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

pub(crate) fn is_dns_subdomain(s: &str) -> bool {
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

pub(crate) fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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
