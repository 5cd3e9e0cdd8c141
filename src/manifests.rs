//! Offline checks of manifests for CI and GitOps pipelines (`vault-connection-operator validate`).
//!
//! Reads files, directories or stdin as multi-document YAML, checks every VaultConnection with
//! the same [`crate::validation`] core the controller uses, and — when the referenced Secret is
//! in the input too — its opt-in label and credentials. Never prints a value.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::api::{CREDENTIALS_LABEL, VaultConnection};
use crate::validation::{SecretData, is_invisible, validate_credentials, validate_spec};

/// One problem in one document: `file:document-index: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File name (`-` is shown as `<stdin>`).
    pub file: String,
    /// 0-based index of the YAML document in the file.
    pub index: usize,
    /// Field path, or `Secret/NAME[KEY]` for a credential.
    pub field: String,
    /// The rule broken and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            one_line(&self.file),
            self.index,
            one_line(&self.field),
            one_line(&self.message)
        )
    }
}

/// Input that could not be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// File name, with `:line:column` of a YAML error when known.
    pub location: String,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            one_line(&self.location),
            one_line(&self.message)
        )
    }
}

/// `text` fit for one line of output: control characters (a newline, an ANSI escape) and
/// invisible ones (a bidi override) are written as escapes such as `\u{1b}`. Field paths and
/// schema messages quote the manifest, and a manifest must not be able to forge extra output
/// lines or restyle the terminal or CI log that shows them.
fn one_line(text: &str) -> Cow<'_, str> {
    let escape = |c: char| c.is_control() || is_invisible(c);
    if !text.chars().any(escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Problems in VaultConnections and their Secrets.
    pub problems: Vec<Problem>,
    /// Inputs that could not be read or parsed.
    pub input_errors: Vec<InputError>,
    /// How many VaultConnections were checked.
    pub checked: usize,
}

impl Report {
    /// Exit code: 2 for unreadable input, 1 for problems, 0 when clean.
    pub fn exit_code(&self) -> u8 {
        if !self.input_errors.is_empty() {
            2
        } else if !self.problems.is_empty() {
            1
        } else {
            0
        }
    }
}

/// One parsed YAML document and where it came from.
struct Doc {
    file: String,
    index: usize,
    value: serde_yaml::Value,
}

/// A Secret found in the input, reduced to what the checks need (never printed).
struct InputSecret {
    labelled: bool,
    data: SecretData,
    /// Keys whose `data` value is not valid base64.
    bad_keys: Vec<String>,
}

/// Checks every VaultConnection in `inputs` (files, directories, or `-` for stdin). Like
/// `kubectl apply -f`, a directory's subdirectories are read only when `recursive`.
pub fn validate_paths(inputs: &[PathBuf], recursive: bool) -> Report {
    let mut report = Report::default();
    let mut docs = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => parse_docs("<stdin>", &text, &mut docs, &mut report),
                Err(e) => report.input_errors.push(InputError {
                    location: "<stdin>".into(),
                    message: format!("cannot read: {e}"),
                }),
            }
            continue;
        }
        for file in expand(input, recursive, &mut report) {
            let name = file.display().to_string();
            match std::fs::read_to_string(&file) {
                Ok(text) => parse_docs(&name, &text, &mut docs, &mut report),
                Err(e) => report.input_errors.push(InputError {
                    location: name,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
    }
    check_docs(&docs, &mut report);
    report
}

/// Checks the documents of one YAML text (used by the fuzz target and tests).
pub fn validate_text(name: &str, text: &str) -> Report {
    let mut report = Report::default();
    let mut docs = Vec::new();
    parse_docs(name, text, &mut docs, &mut report);
    check_docs(&docs, &mut report);
    report
}

/// Lists the YAML and JSON files in `path` (sorted), or `path` itself.
fn expand(path: &Path, recursive: bool, report: &mut Report) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                report.input_errors.push(InputError {
                    location: dir.display().to_string(),
                    message: format!("cannot read directory: {e}"),
                });
                continue;
            }
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                if recursive {
                    stack.push(p);
                }
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn parse_docs(name: &str, text: &str, docs: &mut Vec<Doc>, report: &mut Report) {
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match serde_yaml::Value::deserialize(de) {
            Ok(serde_yaml::Value::Null) => {}
            Ok(value) => docs.push(Doc {
                file: name.to_owned(),
                index,
                value,
            }),
            Err(e) => {
                let location = match e.location() {
                    Some(l) => format!("{name}:{}:{}", l.line(), l.column()),
                    None => format!("{name}:{index}"),
                };
                report.input_errors.push(InputError {
                    location,
                    message: format!("invalid YAML: {}", yaml_message(&e)),
                });
                // The parser cannot resynchronise after an error; skip the rest of the file.
                return;
            }
        }
    }
}

/// serde_yaml's message without its trailing location (we print our own). Errors about a value
/// rather than the syntax quote that value and its key path (`stringData.token: invalid value:
/// string "...", expected an integer` for a scalar tagged `!!int`), and in a Secret the value is
/// a credential: for those, print a fixed description instead; the location still points at it.
fn yaml_message(e: &serde_yaml::Error) -> String {
    let text = e.to_string();
    if text.contains("duplicate entry") {
        return "a mapping has the same key twice".to_owned();
    }
    if text.contains("invalid value: ") || text.contains("invalid type: ") {
        return "a value does not match its tag (such as !!int, !!bool, !!float or !!null)"
            .to_owned();
    }
    match text.find(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

fn str_at<'a>(v: &'a serde_yaml::Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

fn kind_of(v: &serde_yaml::Value) -> (Option<&str>, Option<&str>) {
    (str_at(v, &["apiVersion"]), str_at(v, &["kind"]))
}

/// Secrets in the input, keyed by (file, namespace, name).
type SecretIndex<'a> = BTreeMap<(&'a str, Option<&'a str>, &'a str), InputSecret>;

/// The Secret a connection refers to: one in the same file first, else the only one with that
/// namespace and name in the whole input (several would be ambiguous, so none is chosen).
fn find_secret<'a>(
    secrets: &'a SecretIndex<'_>,
    file: &str,
    ns: Option<&str>,
    name: &str,
) -> Option<&'a InputSecret> {
    let same = |(f, n, s): &(&str, Option<&str>, &str)| *n == ns && *s == name && *f == file;
    if let Some((_, secret)) = secrets.iter().find(|(k, _)| same(k)) {
        return Some(secret);
    }
    let mut elsewhere = secrets
        .iter()
        .filter(|((_, n, s), _)| *n == ns && *s == name)
        .map(|(_, secret)| secret);
    match (elsewhere.next(), elsewhere.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

fn check_docs(docs: &[Doc], report: &mut Report) {
    let secrets: SecretIndex = docs
        .iter()
        .filter(|d| kind_of(&d.value) == (Some("v1"), Some("Secret")))
        .filter_map(|d| {
            let name = str_at(&d.value, &["metadata", "name"])?;
            let ns = str_at(&d.value, &["metadata", "namespace"]);
            Some(((d.file.as_str(), ns, name), input_secret(&d.value)))
        })
        .collect();

    for doc in docs {
        let (api_version, kind) = kind_of(&doc.value);
        if kind != Some("VaultConnection")
            || !api_version.is_some_and(|v| v.starts_with("vaultconnections.io/"))
        {
            continue;
        }
        report.checked += 1;
        let mut problem = |field: String, message: String| {
            report.problems.push(Problem {
                file: doc.file.clone(),
                index: doc.index,
                field,
                message,
            })
        };
        if api_version != Some("vaultconnections.io/v1alpha1") {
            problem(
                "apiVersion".into(),
                "unknown version; use vaultconnections.io/v1alpha1".into(),
            );
            continue;
        }
        let vc: VaultConnection = match serde_path_to_error::deserialize(doc.value.clone()) {
            Ok(vc) => vc,
            Err(e) => {
                let path = e.path().to_string();
                let field = if path == "." {
                    "(document)".into()
                } else {
                    path
                };
                problem(
                    field,
                    format!("does not match the VaultConnection schema: {}", e.inner()),
                );
                continue;
            }
        };
        let Some(name) = vc.metadata.name.as_deref() else {
            problem("metadata.name".into(), "is required".into());
            continue;
        };
        let spec = match validate_spec(name, &vc.spec) {
            Ok(spec) => spec,
            Err(errors) => {
                for e in errors {
                    problem(e.field, e.message);
                }
                continue;
            }
        };
        let ns = vc.metadata.namespace.as_deref();
        let Some(secret) = find_secret(&secrets, &doc.file, ns, &spec.secret_name) else {
            continue; // the Secret is not in the input: nothing more to check offline
        };
        let field = format!("Secret/{}", spec.secret_name);
        if !secret.labelled {
            problem(
                field.clone(),
                format!(
                    "is not labelled {CREDENTIALS_LABEL}: \"true\"; the operator reads only labelled Secrets"
                ),
            );
        }
        for key in &secret.bad_keys {
            problem(
                format!("{field}[{key}]"),
                "data value is not valid base64".into(),
            );
        }
        if let Err(errors) = validate_credentials(&spec, &secret.data) {
            for e in errors.into_iter().filter(|e| {
                // A key whose base64 is broken was reported above; do not call it missing too.
                !secret
                    .bad_keys
                    .iter()
                    .any(|k| e.field == format!("{field}[{k}]"))
            }) {
                problem(e.field, e.message);
            }
        }
    }
}

/// Reads a Secret's label and data by hand, so no decoding error can echo a value.
fn input_secret(v: &serde_yaml::Value) -> InputSecret {
    let labelled = str_at(v, &["metadata", "labels", CREDENTIALS_LABEL]) == Some("true");
    let mut data = SecretData::new();
    let mut bad_keys = Vec::new();
    if let Some(map) = v.get("data").and_then(|d| d.as_mapping()) {
        for (k, val) in map {
            let Some(key) = k.as_str() else { continue };
            let text = val.as_str().unwrap_or_default();
            match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                Ok(bytes) => {
                    data.insert(key.to_owned(), bytes);
                }
                Err(_) => bad_keys.push(key.to_owned()),
            }
        }
    }
    if let Some(map) = v.get("stringData").and_then(|d| d.as_mapping()) {
        for (k, val) in map {
            if let (Some(key), Some(text)) = (k.as_str(), val.as_str()) {
                bad_keys.retain(|b| b != key);
                data.insert(key.to_owned(), text.as_bytes().to_vec());
            }
        }
    }
    InputSecret {
        labelled,
        data,
        bad_keys,
    }
}
