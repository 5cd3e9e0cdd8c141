//! Offline checks of manifests for CI and GitOps pipelines (`vault-connection-operator validate`).
//!
//! Reads files, directories or stdin as multi-document YAML, checks every VaultConnection with
//! the same [`crate::validation`] core the controller uses, and — when the referenced Secret is
//! in the input too — its opt-in label and credentials. Never prints a value.
//!
//! The input may be hostile (a pull request's tree), so reading is bounded: links inside a
//! directory are not followed, only regular files are opened, and each file is read up to a size
//! limit. Output is escaped so no manifest can forge a line.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::api::{CREDENTIALS_LABEL, VaultConnection};
use crate::validation::{
    Policy, SecretData, check_kms_key, is_invisible, validate_credentials, validate_spec,
};

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

/// Whether a viewer may start a new line at `c`: besides the control characters (`\n`, `\r`,
/// vertical tab, form feed, NEL U+0085, the information separators), the Unicode line and
/// paragraph separators U+2028 and U+2029, which editors, browsers and some log viewers honour.
pub fn is_line_break(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `text` fit for one line of output: anything a viewer may break a line at (a newline, NEL,
/// U+2028), control characters (an ANSI escape) and invisible ones (a bidi override) are written
/// as escapes such as `\u{2028}`. Field paths and schema messages quote the manifest, and a
/// manifest must not be able to forge extra output lines or restyle the terminal or CI log that
/// shows them.
pub fn one_line(text: &str) -> Cow<'_, str> {
    let escape = |c: char| is_line_break(c) || is_invisible(c);
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

/// The default per-file size limit: far above any real manifest file (Kubernetes stores an
/// object of at most about 1.5 MiB), far below what exhausts a CI runner's memory.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// How a run reads its input and which operator policy it checks against.
#[derive(Debug, Clone)]
pub struct Options {
    /// Also read the subdirectories of directories.
    pub recursive: bool,
    /// Largest file (or stdin) read, in bytes; a larger one is an input error.
    pub max_file_bytes: u64,
    /// The same policy the operator applies (Doppler personal tokens, KMS keys).
    pub policy: Policy,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            recursive: false,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            policy: Policy::default(),
        }
    }
}

/// Checks every VaultConnection in `inputs` (files, directories, or `-` for stdin). Like
/// `kubectl apply -f`, a directory's subdirectories are read only when `options.recursive`.
/// A path named in `inputs` may be a link (the caller chose it); links found inside a
/// directory are reported and not followed.
pub fn validate_paths(inputs: &[PathBuf], options: &Options) -> Report {
    let mut report = Report::default();
    let mut docs = Vec::new();
    let limit = options.max_file_bytes;
    for input in inputs {
        if input.as_os_str() == "-" {
            match read_capped(std::io::stdin().lock(), limit) {
                Ok(text) => parse_docs("<stdin>", &text, &mut docs, &mut report),
                Err(message) => report.input_errors.push(InputError {
                    location: "<stdin>".into(),
                    message,
                }),
            }
            continue;
        }
        for (file, follow) in expand(input, options.recursive, &mut report) {
            let name = file.display().to_string();
            match read_manifest(&file, follow, limit) {
                Ok(text) => parse_docs(&name, &text, &mut docs, &mut report),
                Err(message) => report.input_errors.push(InputError {
                    location: name,
                    message,
                }),
            }
        }
    }
    check_docs(&docs, &options.policy, &mut report);
    report
}

/// Checks the documents of one YAML text (used by the fuzz target and tests).
pub fn validate_text(name: &str, text: &str) -> Report {
    let mut report = Report::default();
    let mut docs = Vec::new();
    parse_docs(name, text, &mut docs, &mut report);
    check_docs(&docs, &Policy::default(), &mut report);
    report
}

fn is_manifest_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Lists the YAML and JSON files in `path` (sorted), or `path` itself, each with whether a link
/// may be followed to open it (only for `path` itself). Inside a directory, links are never
/// followed: `ln -s . loop` would count every file again on each turn, two links to each other
/// never end, and a link can point anywhere (`/dev/zero`, `/`). A link that would have been
/// read — a manifest name, or a directory under `recursive` — is reported as an input error, so
/// no manifest hides behind one unchecked.
fn expand(path: &Path, recursive: bool, report: &mut Report) -> Vec<(PathBuf, bool)> {
    if !path.is_dir() {
        return vec![(path.to_owned(), true)];
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
            // `file_type` describes the entry itself, never a link's target.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_symlink() {
                let to_dir = recursive && std::fs::metadata(&p).is_ok_and(|m| m.is_dir());
                if to_dir || is_manifest_name(&p) {
                    report.input_errors.push(InputError {
                        location: p.display().to_string(),
                        message: "is a symbolic link, and links inside a directory are not \
                                  followed; name its target with -f, or replace the link"
                            .into(),
                    });
                }
            } else if kind.is_dir() {
                if recursive {
                    stack.push(p);
                }
            } else if is_manifest_name(&p) {
                files.push((p, false));
            }
        }
    }
    files.sort();
    files
}

/// What kind of file `meta` describes, for an error message.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "something other than a regular file"
    }
}

fn not_regular(meta: &std::fs::Metadata) -> String {
    format!("is {}; only regular files are read", file_kind(meta))
}

fn too_large(limit: u64) -> String {
    format!("is larger than the limit of {limit} bytes per file; split it or raise --max-file-size")
}

/// Reads one manifest file: only a regular file, at most `limit` bytes. The type is checked
/// before opening (opening a FIFO waits for a writer; opening some devices acts on them) and
/// again on the open handle, in case the path changed in between.
fn read_manifest(path: &Path, follow_link: bool, limit: u64) -> Result<String, String> {
    let meta = if follow_link {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    }
    .map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: a path swapped for a FIFO since the check does not block the open (it
        // changes nothing for a regular file). O_NOFOLLOW: nor is a path swapped for a link
        // followed.
        let mut flags = libc::O_NONBLOCK;
        if !follow_link {
            flags |= libc::O_NOFOLLOW;
        }
        options.custom_flags(flags);
    }
    let file = options
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    if meta.len() > limit {
        return Err(too_large(limit));
    }
    read_capped(file, limit)
}

/// Reads UTF-8 text from `input`, failing once it passes `limit` bytes (a file that grows, or
/// stdin fed from `/dev/zero`, stops there rather than filling memory).
fn read_capped(input: impl Read, limit: u64) -> Result<String, String> {
    let mut bytes = Vec::new();
    input
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    String::from_utf8(bytes).map_err(|_| "cannot read: the file is not valid UTF-8".to_owned())
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

fn check_docs(docs: &[Doc], policy: &Policy, report: &mut Report) {
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
        if let Err(e) = check_kms_key(&spec, policy) {
            problem(e.field, e.message);
        }
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
        if let Err(errors) = validate_credentials(&spec, &secret.data, policy) {
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
