//! Per-namespace limits. A namespace's `vaultconnections.io/tier` label selects a limit from the
//! operator's configuration; the limit bounds the SSM parameters the namespace holds (retained
//! ones included), and a connection that holds its parameter keeps its slot.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Connection limits by tier name; `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierLimits(BTreeMap<String, Option<u32>>);

impl FromStr for TierLimits {
    type Err = String;

    /// Parses `free=1,team=10,enterprise=unlimited`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut limits = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, limit) = part
                .split_once('=')
                .ok_or_else(|| format!("tier {part:?} must be NAME=LIMIT, e.g. team=10"))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(format!(
                    "tier name {name:?} must be letters, digits, '-', '_' or '.'"
                ));
            }
            let limit =
                match limit.trim() {
                    "unlimited" => None,
                    n => Some(n.parse::<u32>().map_err(|_| {
                        format!("tier {name:?} limit must be a number or 'unlimited'")
                    })?),
                };
            if limits.insert(name.to_owned(), limit).is_some() {
                return Err(format!("tier {name:?} is given twice"));
            }
        }
        if limits.is_empty() {
            return Err("at least one tier is required".into());
        }
        Ok(TierLimits(limits))
    }
}

impl fmt::Display for TierLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| match v {
                Some(n) => format!("{k}={n}"),
                None => format!("{k}=unlimited"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The tier that applies to a namespace and its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Tier name.
    pub tier: String,
    /// Limit; `None` is unlimited.
    pub limit: Option<u32>,
    /// The namespace's label named a tier that is not configured (the default was used).
    pub unknown_label: bool,
}

impl TierLimits {
    /// Whether `name` is a configured tier.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The tier for a namespace whose tier label is `label`, falling back to `default`.
    pub fn applied(&self, label: Option<&str>, default: &str) -> Applied {
        match label {
            Some(t) if self.0.contains_key(t) => Applied {
                tier: t.to_owned(),
                limit: self.0[t],
                unknown_label: false,
            },
            _ => Applied {
                tier: default.to_owned(),
                limit: self.0.get(default).copied().flatten(),
                unknown_label: label.is_some(),
            },
        }
    }
}

/// Whether a connection whose parameter would be `me` may be written, in a namespace whose
/// parameters are `held` (every parameter it holds in SSM, retained ones included): when it
/// already holds its own, its slot is kept; otherwise only while fewer than `limit` are held.
pub fn admits(held: &BTreeSet<String>, me: &str, limit: u32) -> bool {
    held.contains(me) || held.len() < limit as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits_and_unlimited() {
        let t: TierLimits = "free=1, team=10,enterprise=unlimited".parse().unwrap();
        assert_eq!(t.applied(Some("free"), "team").limit, Some(1));
        assert_eq!(t.applied(Some("enterprise"), "team").limit, None);
        assert_eq!(t.to_string(), "enterprise=unlimited,free=1,team=10");
    }

    #[test]
    fn rejects_malformed_limits_naming_the_tier() {
        for (bad, says) in [
            ("free", "NAME=LIMIT"),
            ("free=x", "\"free\" limit"),
            ("free=1,free=2", "given twice"),
            ("", "at least one"),
            ("a b=1", "tier name"),
        ] {
            let e = bad.parse::<TierLimits>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_or_unknown_label_uses_the_default_tier() {
        let t: TierLimits = "free=1,team=10".parse().unwrap();
        let none = t.applied(None, "team");
        assert_eq!(
            (none.tier.as_str(), none.limit, none.unknown_label),
            ("team", Some(10), false)
        );
        let unknown = t.applied(Some("gold"), "team");
        assert_eq!(
            (unknown.tier.as_str(), unknown.limit, unknown.unknown_label),
            ("team", Some(10), true)
        );
    }

    #[test]
    fn a_held_slot_is_kept_and_a_new_one_needs_room() {
        let held: BTreeSet<String> = ["/p/c/ns/a".into(), "/p/c/ns/b".into()].into();
        assert!(admits(&held, "/p/c/ns/a", 2), "its own slot");
        assert!(admits(&held, "/p/c/ns/a", 1), "kept after a downgrade");
        assert!(!admits(&held, "/p/c/ns/c", 2), "full");
        assert!(admits(&held, "/p/c/ns/c", 3), "room");
        assert!(admits(&BTreeSet::new(), "/p/c/ns/c", 1));
        assert!(!admits(&BTreeSet::new(), "/p/c/ns/c", 0));
    }
}
