//! Properties of the validation core and of the offline `validate` path over arbitrary and
//! hostile input: arbitrary specs; arbitrary Secret bytes (huge values, control and invisible
//! characters, lookalike letters, template syntax, padding); arbitrary YAML-ish text; arbitrary
//! Secret and VaultConnection documents. Nothing panics, nothing prints a credential, every
//! accepted credential follows every rule of the resource (docs/design.md §4), and every valid input is accepted.
//!
//! Each property runs 256 cases (proptest's default); `PROPTEST_CASES=5000 cargo test --release
//! --test properties` searches deeper. The rules are restated here from the design, not read
//! from the code under test.

mod planting;

use std::fmt;
use std::sync::LazyLock;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use proptest::prelude::*;
use secrecy::ExposeSecret;
use vault_connection_operator::api::{
    CREDENTIALS_LABEL, CredentialKeys, CredentialsSecretRef, DeletionPolicy, DopplerSpec,
    InfisicalSpec, SsmSpec, VaultConnection, VaultConnectionSpec, VaultType,
};
use vault_connection_operator::document::{self, Tier};
use vault_connection_operator::manifests::{self, Report};
use vault_connection_operator::validation::{
    self, Connection, ErrorKind, FieldError, Provider, ProviderSettings, SecretData, ValidSpec,
};

use planting::{CANARY, PLACEHOLDER};

// ---- hostile text --------------------------------------------------------------------------

/// Pieces that make credential and manifest handling interesting.
#[rustfmt::skip]
const NASTY: &[&str] = &[
    // control characters, C0 and C1, and DEL
    "\u{0}", "\u{7}", "\u{8}", "\u{1b}[31m", "\u{7f}", "\u{85}", "\u{9b}",
    // invisible: zero-width, bidi marks and overrides, BOM, soft hyphen, word joiner, tag letter
    "\u{200b}", "\u{200c}", "\u{200d}", "\u{200e}", "\u{200f}", "\u{202e}", "\u{2066}",
    "\u{feff}", "\u{ad}", "\u{2060}", "\u{e0041}",
    // whitespace of every kind, as padding or inside
    " ", "\t", "\n", "\r\n", "\u{a0}", "\u{2028}", "\u{3000}", "\u{b}",
    // lookalikes: Cyrillic o, s, p; fullwidth ops_ and dp.st.
    "о", "ѕ", "р", "оps_", "ｏｐｓ＿", "ｄｐ．ｓｔ．",
    // template and format syntax
    "{{", "}}", "{{ .Values.token }}", "${TOKEN}", "%s", "%n", "\\", "\"", "'", "`",
    // YAML syntax
    ": ", "#", "- ", "---", "...", "&a", "*a", "!!int", "|", ">", "[", "]", "{", "}", ",", "?",
    // credential shapes
    "ops_", "dp.", "dp.st.", "dp.sa.", "dp.said.", "dp.scim.", "dp.audit.", "dp.xx.",
    "0b7b2d4e-3f0a-4c1e-9a55-2f4c8e1d6a77", "{0b7b2d4e-3f0a-4c1e-9a55-2f4c8e1d6a77}",
    // wide characters
    "é", "漢", "😀", "\u{10ffff}",
];

fn nasty_piece() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(NASTY).prop_map(str::to_owned),
        3 => "[A-Za-z0-9_.+/=-]{1,12}",
        2 => prop::collection::vec(any::<char>(), 1..6).prop_map(String::from_iter),
    ]
    .boxed()
}

/// Short concatenations of hostile pieces, and now and then a huge one (up to 100 000
/// characters).
fn nasty_string() -> BoxedStrategy<String> {
    prop_oneof![
        30 => prop::collection::vec(nasty_piece(), 0..8).prop_map(|p| p.concat()),
        1 => (nasty_piece(), 1_000usize..100_000)
            .prop_map(|(piece, n)| piece.chars().cycle().take(n).collect()),
    ]
    .boxed()
}

/// Strings whose length (in characters, not bytes) is at or next to the limits `min..=max`.
fn sized(min: usize, max: usize) -> BoxedStrategy<String> {
    let len = prop_oneof![
        Just(min.saturating_sub(1)),
        Just(min),
        Just(max),
        Just(max + 1),
        0..max + 2,
    ];
    let fill = prop::sample::select(vec!['a', 'é', '😀', '-', ' ', '/', '\u{200b}']);
    (len, fill)
        .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect())
        .boxed()
}

fn field(min: usize, max: usize) -> BoxedStrategy<String> {
    prop_oneof![sized(min, max), nasty_string()].boxed()
}

/// Text shaped like a credential: a prefix a rule looks at, then anything.
fn credential_text() -> BoxedStrategy<String> {
    let prefix = prop::sample::select(vec![
        "",
        "ops_",
        "dp.st.",
        "dp.sa.",
        "dp.pt.",
        "dp.ct.",
        "dp.said.",
        "dp.scim.",
        "dp.audit.",
        "dp.",
        "оps_",
        "ｏｐｓ＿",
        " ops_",
        "\u{feff}ops_",
        "ops_\u{200b}",
        "0b7b2d4e-3f0a-4c1e-9a55-2f4c8e1d6a77",
    ]);
    (prefix, nasty_string())
        .prop_map(|(p, s)| format!("{p}{s}"))
        .boxed()
}

// ---- specs -----------------------------------------------------------------------------------

fn vault_type() -> impl Strategy<Value = VaultType> {
    prop::sample::select(vec![
        VaultType::OnePassword,
        VaultType::Doppler,
        VaultType::Infisical,
    ])
}

fn dns_subdomain() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9]([a-z0-9-]{0,59}[a-z0-9])?", 1..=4).prop_map(|l| l.join("."))
}

fn any_keys() -> impl Strategy<Value = Option<CredentialKeys>> {
    let key = || {
        prop::option::of(prop_oneof![
            "[-._a-zA-Z0-9]{1,20}",
            field(1, 253),
            Just("access_token".to_owned()),
        ])
    };
    prop::option::of((key(), key(), key()).prop_map(|(a, i, s)| CredentialKeys {
        access_token: a,
        client_id: i,
        client_secret: s,
    }))
}

/// Any spec at all: every field arbitrary, every optional block present or not.
fn any_spec() -> impl Strategy<Value = (String, VaultConnectionSpec)> {
    let doppler = prop::option::of(
        (field(1, 255), field(1, 255))
            .prop_map(|(project, config)| DopplerSpec { project, config }),
    );
    let infisical = prop::option::of((field(1, 255), field(1, 100), field(0, 500)).prop_map(
        |(project_id, environment, secret_path)| InfisicalSpec {
            project_id,
            environment,
            secret_path,
        },
    ));
    let ssm = prop::option::of(
        prop::option::of(field(1, 2048)).prop_map(|kms_key_id| SsmSpec { kms_key_id }),
    );
    let secret_name = prop_oneof![dns_subdomain(), field(1, 253)];
    let deletion_policy =
        prop::sample::select(vec![DeletionPolicy::Delete, DeletionPolicy::Retain]);
    (
        "[a-z0-9-]{1,30}",
        vault_type(),
        prop::option::of(field(1, 255)),
        prop::option::of(field(0, 2000)),
        secret_name,
        any_keys(),
        doppler,
        infisical,
        ssm,
        deletion_policy,
    )
        .prop_map(
            |(
                name,
                vault_type,
                display_name,
                description,
                secret,
                keys,
                doppler,
                infisical,
                ssm,
                deletion_policy,
            )| {
                let spec = VaultConnectionSpec {
                    vault_type,
                    display_name,
                    description,
                    credentials_secret_ref: CredentialsSecretRef { name: secret, keys },
                    doppler,
                    infisical,
                    ssm,
                    deletion_policy,
                };
                (name, spec)
            },
        )
}

fn chars_where(min: usize, max: usize, keep: fn(&char) -> bool) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>().prop_filter("rule", keep), min..=max)
        .prop_map(String::from_iter)
}

/// Specs built from the rules of the resource (docs/design.md §4), so every one of them is valid.
fn valid_spec(vault_type: VaultType) -> BoxedStrategy<VaultConnectionSpec> {
    let key = || prop::option::of("[-._a-zA-Z0-9]{1,40}");
    let keys = prop::option::of((key(), key(), key()).prop_map(|(a, i, s)| CredentialKeys {
        access_token: a,
        client_id: i,
        client_secret: s,
    }));
    let doppler = (chars_where(1, 255, |_| true), chars_where(1, 255, |_| true))
        .prop_map(|(project, config)| DopplerSpec { project, config });
    let infisical = (
        (
            any::<char>().prop_filter("not blank", |c| !c.is_whitespace()),
            chars_where(0, 254, |_| true),
        ),
        chars_where(1, 100, |c| !c.is_whitespace() && *c != '/'),
        chars_where(0, 500, |_| true),
    )
        .prop_map(|((first, rest), environment, secret_path)| InfisicalSpec {
            project_id: format!("{first}{rest}"),
            environment,
            secret_path,
        });
    (
        prop::option::of(chars_where(1, 255, |_| true)),
        prop::option::of(
            prop_oneof![4 => chars_where(0, 100, |_| true), 1 => chars_where(0, 2000, |_| true)],
        ),
        dns_subdomain(),
        keys,
        doppler,
        infisical,
        prop::option::of(chars_where(1, 100, |c| !c.is_whitespace())),
        prop::sample::select(vec![DeletionPolicy::Delete, DeletionPolicy::Retain]),
    )
        .prop_map(
            move |(
                display_name,
                description,
                secret,
                keys,
                doppler,
                infisical,
                kms,
                deletion_policy,
            )| {
                VaultConnectionSpec {
                    vault_type,
                    display_name,
                    description,
                    credentials_secret_ref: CredentialsSecretRef { name: secret, keys },
                    doppler: (vault_type == VaultType::Doppler).then_some(doppler),
                    infisical: (vault_type == VaultType::Infisical).then_some(infisical),
                    ssm: kms.map(|k| SsmSpec {
                        kms_key_id: Some(k),
                    }),
                    deletion_policy,
                }
            },
        )
        .boxed()
}

/// A valid spec of each provider whose Secret keys are among [`KEYS`] (so arbitrary data hits
/// them).
fn provider_spec() -> impl Strategy<Value = ValidSpec> {
    let key = prop::sample::select(KEYS);
    (vault_type(), key.clone(), key.clone(), key).prop_map(|(vt, a, i, s)| {
        let spec = VaultConnectionSpec {
            vault_type: vt,
            display_name: None,
            description: None,
            credentials_secret_ref: CredentialsSecretRef {
                name: "creds".into(),
                keys: Some(CredentialKeys {
                    access_token: Some(a.into()),
                    client_id: Some(i.into()),
                    client_secret: Some(s.into()),
                }),
            },
            doppler: (vt == VaultType::Doppler).then(|| DopplerSpec {
                project: "p".into(),
                config: "c".into(),
            }),
            infisical: (vt == VaultType::Infisical).then(|| InfisicalSpec {
                project_id: "project".into(),
                environment: "prod".into(),
                secret_path: "/".into(),
            }),
            ssm: None,
            deletion_policy: DeletionPolicy::Delete,
        };
        validation::validate_spec("conn", &spec).expect("the provider specs are valid")
    })
}

// ---- credentials -------------------------------------------------------------------------

const KEYS: &[&str] = &["access_token", "client_id", "client_secret", "token"];

/// Surrounding whitespace a Secret value may carry (`--from-file` adds a newline).
fn padding() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", " ", "\n", "\r\n", "\t", " \n\t"])
}

fn padded(value: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (padding(), value, padding()).prop_map(|(l, v, r)| format!("{l}{v}{r}"))
}

/// Credentials built from the rules of the resource (docs/design.md §4) for a spec's provider, keyed as it says.
fn valid_data(spec: &ValidSpec) -> BoxedStrategy<SecretData> {
    let entry = |key: &str, value: BoxedStrategy<String>| {
        let key = key.to_owned();
        padded(value).prop_map(move |v| (key.clone(), v.into_bytes()))
    };
    match spec.settings {
        ProviderSettings::OnePassword => {
            let token = prop_oneof![
                "ops_[A-Za-z0-9_=+/.-]{1,200}",
                (1usize..=4092).prop_map(|n| format!("ops_{}", "x".repeat(n))),
            ];
            entry(&spec.access_token_key, token.boxed())
                .prop_map(|e| SecretData::from([e]))
                .boxed()
        }
        ProviderSettings::Doppler { .. } => {
            let kind = prop::sample::select(vec!["st", "sa", "said"]);
            let token =
                (kind, "[A-Za-z0-9._-]{1,100}").prop_map(|(k, rest)| format!("dp.{k}.{rest}"));
            entry(&spec.access_token_key, token.boxed())
                .prop_map(|e| SecretData::from([e]))
                .boxed()
        }
        ProviderSettings::Infisical { .. } => {
            let id =
                (any::<[u8; 16]>(), 0..4usize, any::<bool>()).prop_map(|(bytes, form, upper)| {
                    let id = uuid::Uuid::from_bytes(bytes);
                    let hex = if upper {
                        id.hyphenated().to_string().to_uppercase()
                    } else {
                        id.hyphenated().to_string()
                    };
                    match form {
                        0 => hex,
                        1 => hex.replace('-', ""),
                        2 => format!("{{{hex}}}"),
                        _ => format!("urn:uuid:{hex}"),
                    }
                });
            let secret = prop_oneof!["[0-9a-f]{64}", "[!-~é漢]{1,100}", Just("s".repeat(1000)),];
            let id_key = spec.client_id_key.clone();
            let secret_key = spec.client_secret_key.clone();
            (
                entry(&id_key, id.boxed()),
                entry(&secret_key, secret.boxed()),
            )
                .prop_filter("one key for both", move |_| id_key != secret_key)
                .prop_map(|(i, s)| SecretData::from([i, s]))
                .boxed()
        }
    }
}

fn any_value_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => credential_text().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (credential_text(), any::<u8>()).prop_map(|(t, b)| {
            let mut bytes = t.into_bytes();
            bytes.insert(bytes.len() / 2, b | 0x80); // most likely invalid UTF-8 now
            bytes
        }),
    ]
}

fn any_data() -> impl Strategy<Value = SecretData> {
    prop::collection::btree_map(
        prop::sample::select(KEYS).prop_map(str::to_owned),
        any_value_bytes(),
        0..4,
    )
}

/// Secret data whose every value carries the canary somewhere inside hostile text.
fn canary_data() -> impl Strategy<Value = SecretData> {
    let value = (credential_text(), nasty_string()).prop_map(|(l, r)| format!("{l}{CANARY}{r}"));
    prop::collection::btree_map(
        prop::sample::select(KEYS).prop_map(str::to_owned),
        value.prop_map(String::into_bytes),
        0..4,
    )
}

// ---- rules, restated from docs/design.md §4 ---------------------------------------------------

/// Characters nobody can see: zero-width, bidi marks and overrides, BOM, soft hyphen, word
/// joiner and invisible operators, tag characters.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
        | '\u{e0000}'..='\u{e007f}')
}

fn is_dns_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn is_secret_key(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// What every accepted spec satisfies.
fn check_valid_spec(
    name: &str,
    spec: &VaultConnectionSpec,
    v: &ValidSpec,
) -> Result<(), TestCaseError> {
    let display = spec.display_name.as_deref().unwrap_or(name);
    prop_assert_eq!(&v.display_name, display);
    prop_assert!((1..=255).contains(&chars(&v.display_name)));
    prop_assert!(chars(&v.description) <= 2000);
    prop_assert!(is_dns_subdomain(&v.secret_name));
    for key in [&v.access_token_key, &v.client_id_key, &v.client_secret_key] {
        prop_assert!(is_secret_key(key), "bad key {:?}", key);
    }
    if let Some(kms) = &v.kms_key_id {
        prop_assert!((1..=2048).contains(&chars(kms)) && !kms.chars().any(char::is_whitespace));
    }
    prop_assert_eq!(v.vault_type(), spec.vault_type);
    prop_assert_eq!(v.deletion_policy, spec.deletion_policy);
    // A provider block that does not match vaultType is an error.
    prop_assert_eq!(
        spec.doppler.is_some(),
        spec.vault_type == VaultType::Doppler
    );
    prop_assert_eq!(
        spec.infisical.is_some(),
        spec.vault_type == VaultType::Infisical
    );
    match &v.settings {
        ProviderSettings::OnePassword => {}
        ProviderSettings::Doppler { project, config } => {
            prop_assert!((1..=255).contains(&chars(project)));
            prop_assert!((1..=255).contains(&chars(config)));
        }
        ProviderSettings::Infisical {
            project_id,
            environment,
            secret_path,
        } => {
            prop_assert!((1..=255).contains(&chars(project_id)) && !project_id.trim().is_empty());
            prop_assert!((1..=100).contains(&chars(environment)));
            prop_assert!(!environment.chars().any(|c| c.is_whitespace() || c == '/'));
            prop_assert!(secret_path.starts_with('/'));
            let given = &spec
                .infisical
                .as_ref()
                .expect("infisical block")
                .secret_path;
            prop_assert!(chars(given) <= 500);
            let with_slash = format!("/{given}");
            prop_assert!(secret_path == given || *secret_path == with_slash);
        }
    }
    Ok(())
}

/// One accepted credential: exactly the Secret's value trimmed, within its length, with no
/// whitespace, control or invisible character.
fn check_credential(
    value: &str,
    data: &SecretData,
    key: &str,
    (min, max): (usize, usize),
) -> Result<(), TestCaseError> {
    let raw = std::str::from_utf8(&data[key]).map_err(|_| TestCaseError::fail("not UTF-8"))?;
    prop_assert_eq!(value, raw.trim());
    prop_assert!(
        (min..=max).contains(&chars(value)),
        "length {}",
        chars(value)
    );
    prop_assert!(
        !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || invisible(c)),
        "accepted {:?}",
        value
    );
    Ok(())
}

/// What every accepted connection satisfies.
fn check_accepted(
    spec: &ValidSpec,
    data: &SecretData,
    c: &Connection,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(&c.spec, spec);
    match (&c.provider, &spec.settings) {
        (Provider::OnePassword { access_token }, ProviderSettings::OnePassword) => {
            let t = access_token.expose_secret();
            check_credential(t, data, &spec.access_token_key, (1, 4096))?;
            prop_assert!(t.starts_with("ops_"));
        }
        (
            Provider::Doppler {
                access_token,
                project,
                config,
            },
            ProviderSettings::Doppler {
                project: p,
                config: q,
            },
        ) => {
            let t = access_token.expose_secret();
            check_credential(t, data, &spec.access_token_key, (1, 4096))?;
            prop_assert!(!t.starts_with("dp.scim.") && !t.starts_with("dp.audit."));
            // Personal (pt) and CLI (ct) tokens only when the policy allows them; it does not here.
            prop_assert!(
                ["st", "sa", "said"].iter().any(|k| t
                    .strip_prefix(&format!("dp.{k}."))
                    .is_some_and(|rest| !rest.is_empty())),
                "not a service token that can read secrets"
            );
            prop_assert_eq!((project, config), (p, q));
        }
        (
            Provider::Infisical {
                client_id,
                client_secret,
                project_id,
                environment,
                secret_path,
            },
            ProviderSettings::Infisical {
                project_id: p,
                environment: e,
                secret_path: s,
            },
        ) => {
            let id = client_id.expose_secret();
            check_credential(id, data, &spec.client_id_key, (1, 255))?;
            prop_assert!(uuid::Uuid::try_parse(id).is_ok(), "client id is not a UUID");
            check_credential(
                client_secret.expose_secret(),
                data,
                &spec.client_secret_key,
                (1, 1000),
            )?;
            prop_assert_eq!((project_id, environment, secret_path), (p, e, s));
        }
        _ => return Err(TestCaseError::fail("the provider does not match the spec")),
    }
    check_rendering(c)
}

/// The keys and values of a JSON object, in the order they were written.
struct Ordered(Vec<(String, String)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(Ordered(pairs))
            }
        }
        d.deserialize_map(Pairs)
    }
}

/// The document is JSON with the fixed keys in the fixed order, holding exactly the
/// connection's values, and equal content renders to equal bytes.
fn check_rendering(c: &Connection) -> Result<(), TestCaseError> {
    let rendered = document::render(c);
    let text = rendered.expose_secret();
    let Ordered(pairs) = serde_json::from_str(text).map_err(|e| {
        TestCaseError::fail(format!("the document is not a JSON object of strings: {e}"))
    })?;
    let s = &c.spec;
    let mut expected = vec![
        ("vault_type", s.vault_type().as_str()),
        ("name", &s.display_name),
        ("description", &s.description),
    ];
    match &c.provider {
        Provider::OnePassword { access_token } => {
            expected.push(("access_token", access_token.expose_secret()));
        }
        Provider::Doppler {
            access_token,
            project,
            config,
        } => expected.extend([
            ("access_token", access_token.expose_secret()),
            ("project", project),
            ("config", config),
        ]),
        Provider::Infisical {
            client_id,
            client_secret,
            project_id,
            environment,
            secret_path,
        } => expected.extend([
            ("client_id", client_id.expose_secret()),
            ("client_secret", client_secret.expose_secret()),
            ("project_id", project_id),
            ("environment", environment),
            ("secret_path", secret_path),
        ]),
    }
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    prop_assert_eq!(pairs, expected);
    let again = document::render(c);
    prop_assert_eq!(again.expose_secret(), text);
    Ok(())
}

/// Every credential error names the Secret key it is about and has its kind; a missing key is
/// reported as missing and only then.
fn check_credential_errors(
    spec: &ValidSpec,
    data: &SecretData,
    errors: &[FieldError],
) -> Result<(), TestCaseError> {
    prop_assert!(!errors.is_empty(), "rejected without a reason");
    let keys: Vec<&str> = match spec.settings {
        ProviderSettings::Infisical { .. } => vec![&spec.client_id_key, &spec.client_secret_key],
        _ => vec![&spec.access_token_key],
    };
    for e in errors {
        let key = keys
            .iter()
            .find(|k| e.field == format!("Secret/{}[{k}]", spec.secret_name));
        prop_assert!(key.is_some(), "error names no credential field: {}", e);
        let missing = !data.contains_key(*key.expect("checked above"));
        let want = if missing {
            ErrorKind::MissingKey
        } else {
            ErrorKind::InvalidCredentials
        };
        prop_assert_eq!(e.kind, want);
        prop_assert!(!e.message.is_empty());
    }
    Ok(())
}

/// Every message template the credential checks can produce, gathered by tripping each rule.
static TEMPLATES: LazyLock<String> = LazyLock::new(|| {
    let probes: [&[u8]; 10] = [
        b"",
        b"\xff",
        b"x",
        b"ops_ x",
        b"ops_\x01",
        b"dp.scim.x",
        b"dp.xx.x",
        b"not-a-uuid",
        &[b'a'; 5000],
        "ops_\u{200b}".as_bytes(),
    ];
    let mut text = String::new();
    for vt in [
        VaultType::OnePassword,
        VaultType::Doppler,
        VaultType::Infisical,
    ] {
        let spec = spec_of(vt);
        let mut cases: Vec<SecretData> = vec![SecretData::new()];
        for p in probes {
            cases.push(KEYS.iter().map(|k| ((*k).to_owned(), p.to_vec())).collect());
        }
        for data in cases {
            if let Err(errors) =
                validation::validate_credentials(&spec, &data, &validation::Policy::default())
            {
                for e in errors {
                    text.push_str(&format!("{e}\n{e:?}\n"));
                }
            }
        }
    }
    text
});

fn spec_of(vt: VaultType) -> ValidSpec {
    let spec = VaultConnectionSpec {
        vault_type: vt,
        display_name: None,
        description: None,
        credentials_secret_ref: CredentialsSecretRef {
            name: "creds".into(),
            keys: None,
        },
        doppler: (vt == VaultType::Doppler).then(|| DopplerSpec {
            project: "p".into(),
            config: "c".into(),
        }),
        infisical: (vt == VaultType::Infisical).then(|| InfisicalSpec {
            project_id: "p".into(),
            environment: "e".into(),
            secret_path: "/".into(),
        }),
        ssm: None,
        deletion_policy: DeletionPolicy::Delete,
    };
    validation::validate_spec("conn", &spec).expect("valid")
}

/// Whether any output shows `value`, where `value` is distinctive enough to tell: at least 8
/// characters and not part of a fixed message.
fn shows(output: &str, value: &str) -> bool {
    chars(value) >= 8 && !TEMPLATES.contains(value) && output.contains(value)
}

// ---- the validation core -------------------------------------------------------------------

proptest! {
    #[test]
    fn any_spec_is_accepted_only_when_it_follows_every_rule_and_else_each_error_names_a_field(
        (name, spec) in any_spec()
    ) {
        match validation::validate_spec(&name, &spec) {
            Ok(valid) => check_valid_spec(&name, &spec, &valid)?,
            Err(errors) => {
                prop_assert!(!errors.is_empty(), "rejected without a reason");
                for e in &errors {
                    prop_assert!(e.field.starts_with("spec.") && e.field.len() > 5, "no field: {}", e);
                    prop_assert_eq!(e.kind, ErrorKind::InvalidSpec);
                    prop_assert!(!e.message.is_empty());
                    let prefix = format!("{}: ", e.field);
                    prop_assert!(e.to_string().starts_with(&prefix));
                }
            }
        }
    }

    #[test]
    fn any_secret_data_is_accepted_only_when_every_credential_follows_the_rules(
        spec in provider_spec(),
        data in any_data(),
    ) {
        match validation::validate_credentials(&spec, &data, &validation::Policy::default()) {
            Ok(connection) => check_accepted(&spec, &data, &connection)?,
            Err(errors) => check_credential_errors(&spec, &data, &errors)?,
        }
    }

    #[test]
    fn no_error_display_or_debug_shows_a_credential(
        spec in provider_spec(),
        data in prop_oneof![canary_data(), any_data()],
    ) {
        let result = validation::validate_credentials(&spec, &data, &validation::Policy::default());
        let output = match &result {
            Ok(connection) => format!("{connection:?}"),
            Err(errors) => format!("{}\n{errors:?}\n{}", validation::summarize(errors),
                errors.iter().map(|e| format!("{e}\n{e:?}\n")).collect::<String>()),
        };
        prop_assert!(!output.contains(CANARY), "a planted credential shows: {}", output);
        for bytes in data.values() {
            if let Ok(value) = std::str::from_utf8(bytes) {
                prop_assert!(!shows(&output, value) && !shows(&output, value.trim()),
                    "a credential shows: {}", output);
            }
        }
    }

    #[test]
    fn valid_credentials_built_from_the_rules_are_accepted_and_render_to_their_document(
        (name, spec, data) in vault_type()
            .prop_flat_map(valid_spec)
            .prop_flat_map(|spec| {
                let valid = validation::validate_spec("conn", &spec).expect("built from the rules");
                ("[a-z0-9]{1,20}", Just(spec), valid_data(&valid))
            })
    ) {
        let valid = validation::validate_spec(&name, &spec);
        prop_assert!(valid.is_ok(), "valid spec rejected: {:?}", valid.err());
        let valid = valid.expect("checked above");
        check_valid_spec(&name, &spec, &valid)?;
        match validation::validate_credentials(&valid, &data, &validation::Policy::default()) {
            Ok(connection) => check_accepted(&valid, &data, &connection)?,
            Err(errors) => prop_assert!(false, "valid credentials rejected: {}", validation::summarize(&errors)),
        }
    }

    #[test]
    fn tier_for_is_monotonic_and_never_downgrades(
        a in 0usize..20_000,
        b in 0usize..20_000,
        current in prop::option::of(prop::sample::select(vec![Tier::Standard, Tier::Advanced])),
    ) {
        let (small, large) = (a.min(b), a.max(b));
        for len in [small, large] {
            match document::tier_for(len, current) {
                Ok(tier) => {
                    prop_assert!(len <= 8192);
                    prop_assert!(current.is_none_or(|c| tier >= c), "downgraded");
                    let standard = len <= 4096 && current != Some(Tier::Advanced);
                    prop_assert_eq!(tier == Tier::Standard, standard);
                }
                Err(_) => prop_assert!(len > 8192),
            }
        }
        if let (Ok(s), Ok(l)) = (document::tier_for(small, current), document::tier_for(large, current)) {
            prop_assert!(s <= l, "a larger value got a lower tier");
        }
        // Knowing the current tier never lowers the pick.
        if let (Ok(without), Ok(with)) = (document::tier_for(a, None), document::tier_for(a, current)) {
            prop_assert!(with >= without);
        }
    }
}

proptest! {
    #[test]
    fn a_parameter_name_lies_under_its_own_namespace_and_names_one_connection_only(
        prefix in prop_oneof![
            2 => Just("/vault-connections".to_owned()),
            2 => "/[a-z]{1,8}(/[a-z_.-]{1,8}){0,3}",
            1 => nasty_string(),
        ],
        cluster in prop_oneof![2 => "[a-z0-9-]{1,20}", 1 => nasty_string()],
        namespace in prop_oneof![3 => "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", 1 => nasty_string()],
        name in prop_oneof![3 => dns_subdomain(), 1 => nasty_string()],
    ) {
        let Ok(full) = document::parameter_name(&prefix, &cluster, &namespace, &name) else {
            return Ok(());
        };
        // Exactly {prefix}/{cluster}/{namespace}/{name}, and reading the levels back from the
        // end gives the same namespace and name: no two connections share a parameter, and no
        // connection reaches into another namespace's levels.
        prop_assert_eq!(&full, &format!("{prefix}/{cluster}/{namespace}/{name}"));
        let mut levels = full.rsplitn(4, '/');
        prop_assert_eq!(levels.next(), Some(name.as_str()));
        prop_assert_eq!(levels.next(), Some(namespace.as_str()));
        prop_assert_eq!(levels.next(), Some(cluster.as_str()));
        prop_assert_eq!(levels.next(), Some(prefix.as_str()));
        prop_assert!(full.len() <= 1011 && full.split('/').count() - 1 <= 15);
        prop_assert!(full.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b)));
    }
}

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
