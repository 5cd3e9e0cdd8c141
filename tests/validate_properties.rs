//! Properties of the offline `validate` path over arbitrary and hostile input: arbitrary
//! YAML-ish text, and arbitrary Secret and VaultConnection documents in every YAML style.
//! Nothing panics, the exit code is 0, 1 or 2, every finding prints as one plain line, nothing
//! prints a credential, and every valid manifest passes. (The validation core:
//! tests/core_properties.rs; the command line itself: tests/validate_cli.rs.)
//!
//! Each property runs 256 cases (proptest's default); `PROPTEST_CASES=5000 cargo test --release
//! --test validate_properties` searches deeper.

mod generators;
mod planting;

use std::sync::LazyLock;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use proptest::prelude::*;
use vault_connection_operator::api::{CREDENTIALS_LABEL, VaultConnection};
use vault_connection_operator::manifests::{self, Report};
use vault_connection_operator::validation;

use generators::*;
use planting::{CANARY, PLACEHOLDER};

// ---- the validate path -----------------------------------------------------------------------

/// The lines `validate` prints for a report.
fn lines(report: &Report) -> Vec<String> {
    let errors = report.input_errors.iter().map(|e| e.to_string());
    errors
        .chain(report.problems.iter().map(|p| p.to_string()))
        .collect()
}

/// What holds for any report: the exit code, and one printable line per finding.
fn check_report(report: &Report) -> Result<(), TestCaseError> {
    let code = report.exit_code();
    prop_assert!(code <= 2);
    prop_assert_eq!(code == 2, !report.input_errors.is_empty());
    prop_assert_eq!(
        code == 0,
        report.input_errors.is_empty() && report.problems.is_empty()
    );
    for line in lines(report) {
        prop_assert!(
            !line
                .chars()
                .any(|c| c.is_control() || invisible(c) || matches!(c, '\u{2028}' | '\u{2029}')),
            "a finding prints as more than one plain line: {:?}",
            line
        );
    }
    for p in &report.problems {
        prop_assert!(!p.field.is_empty() && !p.message.is_empty());
    }
    Ok(())
}

/// No input error ever shows the canary; no problem does when the canary stands only where
/// credentials live.
fn check_no_canary(text: &str, report: &Report) -> Result<(), TestCaseError> {
    for e in &report.input_errors {
        prop_assert!(
            !format!("{e} {e:?}").contains(CANARY),
            "input error shows a value: {}",
            e
        );
    }
    if planting::only_in_secret_values(text) {
        for p in &report.problems {
            prop_assert!(
                !format!("{p} {p:?}").contains(CANARY),
                "problem shows a credential: {}",
                p
            );
        }
    }
    Ok(())
}

static EXAMPLES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut texts = Vec::new();
    for dir in [root.clone(), root.join("invalid")] {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .expect("examples/ is readable")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        paths.sort();
        texts.extend(
            paths
                .iter()
                .map(|p| std::fs::read_to_string(p).expect("readable example")),
        );
    }
    assert!(texts.len() > 10, "the examples are missing");
    texts
});

#[rustfmt::skip]
const YAML_PIECES: &[&str] = &[
    "apiVersion: v1\n", "apiVersion: vaultconnections.io/v1alpha1\n",
    "apiVersion: vaultconnections.io/v2\n", "kind: Secret\n", "kind: VaultConnection\n",
    "metadata:\n", "  name: creds\n", "  namespace: team-a\n",
    "  labels:\n    vaultconnections.io/credentials: \"true\"\n", "stringData:\n", "data:\n",
    "  access_token: ", "  client_id: ", "  client_secret: ", "spec:\n", "  vaultType: doppler\n",
    "  vaultType: infisical\n", "  credentialsSecretRef:\n    name: creds\n",
    "  doppler: {project: p, config: c}\n",
    "---\n", "...\n", "- ", ": ", "? ", "{", "}", "[", "]", ", ", "&a ", "*a", "!!int ", "!!binary ",
    "!!str ", "!tag ", "|\n", ">-\n", "\"", "'", "# ", "%YAML 1.2\n", "%TAG ! tag:x,2000:\n",
    "<<: *a\n", "\t", "\n", "  ", "    ", "~", "null", "0x1F", "1e9999", "\u{feff}",
    "$$", "$$", "$$",
];

/// Text shaped a little like manifests: YAML pieces, hostile pieces, arbitrary characters, and
/// the examples with pieces spliced in. `$$` marks where a credential is planted.
fn yamlish_text() -> BoxedStrategy<String> {
    let piece = prop_oneof![
        3 => prop::sample::select(YAML_PIECES).prop_map(str::to_owned),
        1 => nasty_piece(),
    ];
    let spliced = (
        0..EXAMPLES.len(),
        prop::collection::vec((any::<prop::sample::Index>(), piece.clone()), 1..6),
    )
        .prop_map(|(i, edits)| {
            let mut text = EXAMPLES[i].clone();
            for (at, piece) in edits {
                let mut pos = at.index(text.len() + 1);
                while !text.is_char_boundary(pos) {
                    pos -= 1;
                }
                text.insert_str(pos, &piece);
            }
            text
        });
    prop_oneof![
        2 => prop::collection::vec(piece, 0..40).prop_map(|p| p.concat()),
        2 => spliced,
        1 => any::<String>(),
    ]
    .boxed()
}

// Rendering of generated documents. Every string goes through `dq` unless a style is asked for.

/// A YAML double-quoted scalar that reads back as exactly `s`.
fn dq(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            // Printable for YAML, and not a line break that folding would eat.
            c if c >= '\u{a0}'
                && !matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                out.push(c)
            }
            c if (c as u32) <= 0xff => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// How a Secret value is written in YAML.
#[derive(Debug, Clone, Copy)]
enum Style {
    Double,
    Single,
    Plain,
    Literal,
    Tagged(&'static str),
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![
        3 => Just(Style::Double),
        1 => Just(Style::Single),
        1 => Just(Style::Plain),
        1 => Just(Style::Literal),
        2 => prop::sample::select(vec!["!!str", "!!int", "!!bool", "!!float", "!!null", "!!binary",
            "!!timestamp", "!!map", "!custom"]).prop_map(Style::Tagged),
    ]
}

/// `s` written in `style` (in double quotes when that style cannot hold it), as the value of a
/// key indented by two spaces.
fn scalar(s: &str, style: Style) -> String {
    let simple = !s.is_empty()
        && s.chars().all(|c| {
            (' '..='~').contains(&c)
                || (c >= '\u{a0}'
                    && !matches!(
                        c,
                        '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                    ))
        });
    match style {
        Style::Single if simple => format!("'{}'", s.replace('\'', "''")),
        Style::Plain
            if s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.+/=-".contains(c)) =>
        {
            s.to_owned()
        }
        Style::Literal if simple && !s.starts_with(' ') && !s.ends_with(' ') => {
            format!("|-\n    {s}")
        }
        Style::Tagged(tag) => format!("{tag} {}", dq(s)),
        _ => dq(s),
    }
}

/// One Secret entry: its key, how it is stored, and its value.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    /// `stringData` when true, else `data`.
    string_data: bool,
    /// For `data`: store base64 of the value (true) or the raw value, which is not base64.
    base64: bool,
    value: String,
    style: Style,
}

#[derive(Debug, Clone)]
struct SecretDoc {
    name: String,
    namespace: Option<&'static str>,
    label: Option<&'static str>,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct ConnectionDoc {
    name: String,
    namespace: Option<&'static str>,
    vault_type: String,
    secret: String,
    keys: Option<(Option<String>, Option<String>, Option<String>)>,
    display_name: Option<String>,
    description: Option<String>,
    doppler: Option<(String, String)>,
    infisical: Option<(String, String, Option<String>)>,
    kms: Option<String>,
    deletion_policy: Option<String>,
}

fn namespace() -> impl Strategy<Value = Option<&'static str>> {
    prop::option::of(prop::sample::select(vec!["team-a", "team-b"]))
}

fn secret_doc() -> impl Strategy<Value = SecretDoc> {
    let key = prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => nasty_string(),
    ];
    let value =
        (credential_text(), nasty_string()).prop_map(|(l, r)| format!("{l}{PLACEHOLDER}{r}"));
    let entry = (key, any::<bool>(), any::<bool>(), value, style()).prop_map(
        |(key, string_data, base64, value, style)| Entry {
            key,
            string_data,
            base64,
            value,
            style,
        },
    );
    (
        prop_oneof![4 => Just("creds".to_owned()), 1 => Just("other".to_owned()), 1 => nasty_string()],
        namespace(),
        prop::option::of(prop::sample::select(vec!["true", "false", "True", ""])),
        prop::collection::vec(entry, 0..5),
    )
        .prop_map(|(name, namespace, label, entries)| SecretDoc { name, namespace, label, entries })
}

fn connection_doc() -> impl Strategy<Value = ConnectionDoc> {
    let key = || {
        prop::option::of(prop_oneof![
            prop::sample::select(KEYS).prop_map(str::to_owned),
            nasty_string()
        ])
    };
    let vault_type = prop_oneof![
        3 => prop::sample::select(vec!["onepassword", "doppler", "infisical"]).prop_map(str::to_owned),
        1 => nasty_string(),
    ];
    (
        (
            prop_oneof![3 => Just("conn".to_owned()), 1 => nasty_string()],
            namespace(),
            vault_type,
            prop_oneof![4 => Just("creds".to_owned()), 1 => nasty_string()],
            prop::option::of((key(), key(), key())),
            prop::option::of(field(1, 255)),
        ),
        (
            prop::option::of(nasty_string()),
            prop::option::of((field(1, 255), field(1, 255))),
            prop::option::of((
                field(1, 255),
                field(1, 100),
                prop::option::of(field(0, 500)),
            )),
            prop::option::of(field(1, 2048)),
            prop::option::of(prop_oneof![
                Just("Delete".to_owned()),
                Just("Retain".to_owned()),
                nasty_string()
            ]),
        ),
    )
        .prop_map(
            |(
                (name, namespace, vault_type, secret, keys, display_name),
                (description, doppler, infisical, kms, deletion_policy),
            )| {
                ConnectionDoc {
                    name,
                    namespace,
                    vault_type,
                    secret,
                    keys,
                    display_name,
                    description,
                    doppler,
                    infisical,
                    kms,
                    deletion_policy,
                }
            },
        )
}

impl SecretDoc {
    /// The YAML text, with every value planted; and the base64 texts that encode a planted
    /// value (they must not be printed either).
    fn render(&self) -> (String, Vec<String>) {
        let mut out = String::from("apiVersion: v1\nkind: Secret\nmetadata:\n");
        out += &format!("  name: {}\n", dq(&self.name));
        if let Some(ns) = self.namespace {
            out += &format!("  namespace: {ns}\n");
        }
        if let Some(label) = self.label {
            out += &format!("  labels:\n    {CREDENTIALS_LABEL}: {}\n", dq(label));
        }
        out += "type: Opaque\n";
        let mut encoded = Vec::new();
        for (section, string_data) in [("stringData", true), ("data", false)] {
            let entries: Vec<_> = self
                .entries
                .iter()
                .filter(|e| e.string_data == string_data)
                .collect();
            if entries.is_empty() {
                continue;
            }
            out += &format!("{section}:\n");
            for e in entries {
                let value = planting::plant(&e.value);
                let written = if !string_data && e.base64 {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&value);
                    encoded.push(b64.clone());
                    b64
                } else {
                    value
                };
                out += &format!("  {}: {}\n", dq(&e.key), scalar(&written, e.style));
            }
        }
        (out, encoded)
    }
}

impl ConnectionDoc {
    fn render(&self) -> String {
        let mut out = format!(
            "apiVersion: vaultconnections.io/v1alpha1\nkind: VaultConnection\nmetadata:\n  name: {}\n",
            dq(&self.name)
        );
        if let Some(ns) = self.namespace {
            out += &format!("  namespace: {ns}\n");
        }
        out += &format!(
            "spec:\n  vaultType: {}\n  credentialsSecretRef:\n    name: {}\n",
            dq(&self.vault_type),
            dq(&self.secret)
        );
        if let Some((a, i, s)) = &self.keys {
            out += "    keys:\n";
            for (k, v) in [("accessToken", a), ("clientId", i), ("clientSecret", s)] {
                if let Some(v) = v {
                    out += &format!("      {k}: {}\n", dq(v));
                }
            }
        }
        let mut optional = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                out += &format!("  {k}: {}\n", dq(v));
            }
        };
        optional("displayName", &self.display_name);
        optional("description", &self.description);
        optional("deletionPolicy", &self.deletion_policy);
        if let Some((p, c)) = &self.doppler {
            out += &format!(
                "  doppler:\n    project: {}\n    config: {}\n",
                dq(p),
                dq(c)
            );
        }
        if let Some((p, e, s)) = &self.infisical {
            out += &format!(
                "  infisical:\n    projectId: {}\n    environment: {}\n",
                dq(p),
                dq(e)
            );
            if let Some(s) = s {
                out += &format!("    secretPath: {}\n", dq(s));
            }
        }
        if let Some(k) = &self.kms {
            out += &format!("  ssm:\n    kmsKeyId: {}\n", dq(k));
        }
        out
    }
}

/// A VaultConnection and the labelled Secret it needs, built from the rules, as a user would
/// write them (serialised by serde, so any string is escaped correctly).
fn valid_manifest() -> impl Strategy<Value = String> {
    vault_type()
        .prop_flat_map(valid_spec)
        .prop_flat_map(|spec| {
            let valid = validation::validate_spec("conn", &spec).expect("built from the rules");
            (
                Just(spec),
                valid_data(&valid),
                namespace(),
                any::<bool>(),
                any::<bool>(),
            )
        })
        .prop_map(|(spec, data, namespace, as_data, secret_first)| {
            let secret_name = spec.credentials_secret_ref.name.clone();
            let mut vc = VaultConnection::new("conn", spec);
            vc.metadata.namespace = namespace.map(str::to_owned);
            let mut secret = Secret {
                metadata: ObjectMeta {
                    name: Some(secret_name),
                    namespace: namespace.map(str::to_owned),
                    labels: Some([(CREDENTIALS_LABEL.to_owned(), "true".to_owned())].into()),
                    ..ObjectMeta::default()
                },
                ..Secret::default()
            };
            if as_data {
                secret.data = Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect());
            } else {
                let text = |v: Vec<u8>| String::from_utf8(v).expect("valid credentials are UTF-8");
                secret.string_data = Some(data.into_iter().map(|(k, v)| (k, text(v))).collect());
            }
            let docs = [
                serde_yaml::to_string(&secret).expect("a Secret serialises"),
                serde_yaml::to_string(&vc).expect("a VaultConnection serialises"),
            ];
            if secret_first {
                docs.join("---\n")
            } else {
                format!("{}---\n{}", docs[1], docs[0])
            }
        })
}

proptest! {
    #[test]
    fn dq_writes_any_string_so_that_yaml_reads_it_back(s in nasty_string()) {
        let back: String = serde_yaml::from_str(&format!("v: {}", dq(&s)))
            .map(|m: std::collections::BTreeMap<String, String>| m["v"].clone())
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(back, s);
    }

    #[test]
    fn any_yamlish_text_never_panics_exits_0_1_or_2_and_never_prints_a_planted_credential(
        text in yamlish_text(),
    ) {
        let text = planting::plant(&text);
        let report = manifests::validate_text("input.yaml", &text);
        check_report(&report)?;
        check_no_canary(&text, &report)?;
    }

    #[test]
    fn any_secret_and_connection_documents_never_print_a_credential(
        secrets in prop::collection::vec(secret_doc(), 0..3),
        connections in prop::collection::vec(connection_doc(), 0..3),
        connections_first in any::<bool>(),
        json_name in any::<bool>(),
    ) {
        let mut docs = Vec::new();
        let mut encoded = Vec::new();
        for s in &secrets {
            let (text, b64) = s.render();
            docs.push(text);
            encoded.extend(b64);
        }
        let vcs = connections.iter().map(ConnectionDoc::render);
        if connections_first { docs.splice(0..0, vcs); } else { docs.extend(vcs); }
        let text = docs.join("---\n");
        // The canary stands only in Secret values: nothing else here can contain it.
        let planted: usize = secrets.iter().flat_map(|s| &s.entries)
            .filter(|e| e.string_data || !e.base64).count();
        prop_assume!(text.matches(CANARY).count() == planted);

        let name = if json_name { "input.json" } else { "input.yaml" };
        let report = manifests::validate_text(name, &text);
        check_report(&report)?;
        for line in lines(&report) {
            prop_assert!(!line.contains(CANARY), "a credential is printed: {}", line);
            for b64 in &encoded {
                prop_assert!(!line.contains(b64.as_str()), "a credential's base64 is printed: {}", line);
            }
        }
        prop_assert!(report.checked <= connections.len());
    }

    #[test]
    fn valid_manifests_built_from_the_rules_pass_validate(text in valid_manifest()) {
        let report = manifests::validate_text("valid.yaml", &text);
        prop_assert_eq!(report.exit_code(), 0, "{:?}\n{}", lines(&report), text);
        prop_assert_eq!(report.checked, 1);
    }
}
