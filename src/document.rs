//! What SSM should hold for a connection: the parameter name, the JSON document and its tier.
//! Pure functions; AWS's own name and size rules are enforced here because the emulator does not.

use secrecy::SecretString;
use serde::Serialize;

use crate::providers::Fields;
use crate::validation::Connection;

/// Largest value of a Standard parameter, in bytes (AWS: 4 KB).
pub const STANDARD_MAX_BYTES: usize = 4096;
/// Largest value of an Advanced parameter, in bytes (AWS: 8 KB).
pub const ADVANCED_MAX_BYTES: usize = 8192;
/// Longest parameter name AWS accepts.
pub const NAME_MAX_LEN: usize = 1011;
/// Version of the document's layout. Status records it with every sync, so a process that
/// renders documents differently (a higher format) rewrites every parameter once, and a process
/// that renders them the same knows, from status alone, that nothing needs rewriting.
pub const FORMAT: i32 = 1;
/// Deepest parameter hierarchy AWS accepts (number of `/`-separated levels).
pub const NAME_MAX_DEPTH: usize = 15;

/// An SSM parameter tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Up to 4 KB, free.
    Standard,
    /// Up to 8 KB, charged.
    Advanced,
}

impl Tier {
    /// The name AWS uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "Standard",
            Tier::Advanced => "Advanced",
        }
    }

    /// Parses AWS's name; unknown names give `None`.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "Standard" => Some(Tier::Standard),
            "Advanced" => Some(Tier::Advanced),
            _ => None,
        }
    }
}

/// Which tier the operator asks SSM for (`--parameter-tier`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TierChoice {
    /// Standard (free, up to 10,000 per account and region), Advanced only for a value over
    /// 4 KB.
    #[default]
    Standard,
    /// Advanced for every parameter (charged per parameter and month; up to 100,000).
    Advanced,
    /// SSM's Intelligent-Tiering: Standard while the value and the account's Standard quota
    /// allow, else Advanced (charged once it is Advanced).
    IntelligentTiering,
}

impl TierChoice {
    /// The lowest tier a parameter is brought to (an existing Standard parameter is upgraded
    /// under `advanced`; no tier is ever lowered).
    pub fn floor(self) -> Tier {
        match self {
            TierChoice::Advanced => Tier::Advanced,
            TierChoice::Standard | TierChoice::IntelligentTiering => Tier::Standard,
        }
    }

    /// The flag's value, as `--parameter-tier` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TierChoice::Standard => "standard",
            TierChoice::Advanced => "advanced",
            TierChoice::IntelligentTiering => "intelligent-tiering",
        }
    }
}

/// Picks the tier for a value: Standard when it fits, else Advanced; never below `current`
/// (AWS cannot downgrade an Advanced parameter in place).
pub fn tier_for(value_len: usize, current: Option<Tier>) -> Result<Tier, DocumentError> {
    let needed = if value_len <= STANDARD_MAX_BYTES {
        Tier::Standard
    } else if value_len <= ADVANCED_MAX_BYTES {
        Tier::Advanced
    } else {
        return Err(DocumentError::ValueTooLarge { len: value_len });
    };
    Ok(current.map_or(needed, |c| c.max(needed)))
}

/// Why a document or name cannot be stored in SSM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The rendered document exceeds the Advanced tier's limit.
    #[error(
        "the SSM document would be {len} bytes, over the {max}-byte limit of an Advanced parameter; shorten spec.description or the credentials",
        max = ADVANCED_MAX_BYTES
    )]
    ValueTooLarge {
        /// Size of the rendered document.
        len: usize,
    },
    /// The parameter name breaks an AWS naming rule.
    #[error(
        "the SSM parameter name {name:?} {rule}; choose a shorter or simpler prefix, cluster name or object name"
    )]
    InvalidName {
        /// The derived name (names are not secret).
        name: String,
        /// The rule broken.
        rule: String,
    },
}

/// Checks a parameter-name prefix (the operator's `--ssm-prefix`) against AWS's rules.
pub fn check_prefix(prefix: &str) -> Result<(), DocumentError> {
    let invalid = |rule: &str| {
        Err(DocumentError::InvalidName {
            name: prefix.to_owned(),
            rule: rule.to_owned(),
        })
    };
    if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("//") {
        return invalid("must start with '/', not end with '/', and have no empty level");
    }
    let first = prefix[1..]
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return invalid("must not start with 'aws' or 'ssm' (reserved by AWS)");
    }
    check_chars(prefix)
}

fn check_chars(name: &str) -> Result<(), DocumentError> {
    if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'))
    {
        Ok(())
    } else {
        Err(DocumentError::InvalidName {
            name: name.to_owned(),
            rule: "may contain only letters, digits and _ . - /".into(),
        })
    }
}

/// Derives the parameter name `{prefix}/{cluster}/{namespace}/{name}` and checks it against
/// AWS's rules (characters, length, depth). Names are derived, never user-chosen, so one
/// namespace can never address another's parameter.
pub fn parameter_name(
    prefix: &str,
    cluster: &str,
    namespace: &str,
    name: &str,
) -> Result<String, DocumentError> {
    let full = format!("{prefix}/{cluster}/{namespace}/{name}");
    check_prefix(prefix)?;
    check_chars(&full)?;
    if [cluster, namespace, name]
        .iter()
        .any(|s| s.is_empty() || s.contains('/'))
    {
        return Err(DocumentError::InvalidName {
            name: full,
            rule: "has an empty or nested level".into(),
        });
    }
    if full.len() > NAME_MAX_LEN {
        return Err(DocumentError::InvalidName {
            name: full,
            rule: format!("is longer than {NAME_MAX_LEN} characters"),
        });
    }
    if full.split('/').skip(1).count() > NAME_MAX_DEPTH {
        return Err(DocumentError::InvalidName {
            name: full,
            rule: format!("is deeper than {NAME_MAX_DEPTH} levels"),
        });
    }
    Ok(full)
}

/// The SSM document, in the provider API's own snake_case names and a fixed key order, so equal
/// content renders to equal bytes: the envelope here, the provider's fields from its module.
#[derive(Serialize)]
struct Document<'a> {
    vault_type: &'a str,
    name: &'a str,
    description: &'a str,
    #[serde(flatten)]
    fields: Fields<'a>,
}

/// Renders the document SSM should hold for a connection. The result is itself a secret.
pub fn render(connection: &Connection) -> SecretString {
    let spec = &connection.spec;
    let fields = connection.provider.fields();
    let doc = Document {
        vault_type: spec.vault_type().as_str(),
        name: &spec.display_name,
        description: &spec.description,
        fields,
    };
    // Serialising plain strings into a String cannot fail.
    SecretString::from(serde_json::to_string(&doc).unwrap_or_default())
}

#[cfg(test)]
mod tests;
