//! Planted credentials for the leak checks of `validate`, shared by the property tests
//! (`tests/core_properties.rs`, `tests/validate_properties.rs`) and the fuzz target
//! (`fuzz/fuzz_targets/validate_yaml.rs`), so both judge a leak the same way.
//!
//! Generated or fuzzed text writes [`PLACEHOLDER`] where a credential may go; [`plant`] turns it
//! into the [`CANARY`]. Printing the canary is a leak when it stands only where credentials live
//! ([`only_in_secret_values`]); elsewhere (a name, a key, a spec field) it may be echoed
//! legitimately, and the checks then hold input errors alone to the rule.
#![allow(dead_code)] // the fuzz target and the tests use different parts

use serde::Deserialize;
use serde_yaml::Value;

/// What generated and fuzzed text writes where a planted credential goes.
pub const PLACEHOLDER: &str = "$$";

/// What a placeholder becomes: long, mixed-case and unlike any message template.
pub const CANARY: &str = "PLANTEDq7XzW4vK";

/// Replaces every placeholder in `text` with the canary.
pub fn plant(text: &str) -> String {
    text.replace(PLACEHOLDER, CANARY)
}

/// Whether `text` parses as YAML the way `validate` reads it and the canary occurs only inside
/// the values of a document's top-level `data` or `stringData` map: where a Secret keeps its
/// credentials. False when any document fails to parse (then nobody can say where it stands).
pub fn only_in_secret_values(text: &str) -> bool {
    serde_yaml::Deserializer::from_str(text).all(|de| match Value::deserialize(de) {
        Ok(doc) => clean_outside_secret_values(&doc),
        Err(_) => false,
    })
}

fn clean_outside_secret_values(doc: &Value) -> bool {
    let Value::Mapping(top) = doc else {
        return clean(doc);
    };
    top.iter().all(|(key, value)| {
        let holds_secrets = matches!(key.as_str(), Some("data" | "stringData"));
        clean(key)
            && match value {
                // The keys of a Secret's data are names, not credentials: they must be clean.
                Value::Mapping(entries) if holds_secrets => entries.keys().all(clean),
                _ => clean(value),
            }
    })
}

/// Whether the canary occurs nowhere in `value` (keys, strings and tags included).
fn clean(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.contains(CANARY),
        Value::Sequence(items) => items.iter().all(clean),
        Value::Mapping(entries) => entries.iter().all(|(k, v)| clean(k) && clean(v)),
        Value::Tagged(tagged) => !tagged.tag.to_string().contains(CANARY) && clean(&tagged.value),
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}
