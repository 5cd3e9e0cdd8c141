//! Generators of arbitrary and hostile input for the property tests (tests/core_properties.rs,
//! tests/validate_properties.rs): hostile text (control and invisible characters, lookalike
//! letters, template and YAML syntax, huge values), specs (arbitrary, and built from the rules),
//! and Secret data (arbitrary, canary-carrying, and built from the rules); and the rules of the
//! resource restated from docs/design.md §4, not read from the code under test.
#![allow(dead_code)] // each property binary uses a different part

use proptest::prelude::*;
use vault_connection_operator::api::{
    CredentialKeys, CredentialsSecretRef, DeletionPolicy, DopplerSpec, InfisicalSpec, SsmSpec,
    VaultConnectionSpec, VaultType,
};
use vault_connection_operator::validation::{self, ProviderSettings, SecretData, ValidSpec};

use crate::planting::CANARY;

// ---- hostile text --------------------------------------------------------------------------

/// Pieces that make credential and manifest handling interesting.
#[rustfmt::skip]
pub const NASTY: &[&str] = &[
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

pub fn nasty_piece() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(NASTY).prop_map(str::to_owned),
        3 => "[A-Za-z0-9_.+/=-]{1,12}",
        2 => prop::collection::vec(any::<char>(), 1..6).prop_map(String::from_iter),
    ]
    .boxed()
}

/// Short concatenations of hostile pieces, and now and then a huge one (up to 100 000
/// characters).
pub fn nasty_string() -> BoxedStrategy<String> {
    prop_oneof![
        30 => prop::collection::vec(nasty_piece(), 0..8).prop_map(|p| p.concat()),
        1 => (nasty_piece(), 1_000usize..100_000)
            .prop_map(|(piece, n)| piece.chars().cycle().take(n).collect()),
    ]
    .boxed()
}

/// Strings whose length (in characters, not bytes) is at or next to the limits `min..=max`.
pub fn sized(min: usize, max: usize) -> BoxedStrategy<String> {
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

pub fn field(min: usize, max: usize) -> BoxedStrategy<String> {
    prop_oneof![sized(min, max), nasty_string()].boxed()
}

/// Text shaped like a credential: a prefix a rule looks at, then anything.
pub fn credential_text() -> BoxedStrategy<String> {
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

pub fn vault_type() -> impl Strategy<Value = VaultType> {
    prop::sample::select(vec![
        VaultType::OnePassword,
        VaultType::Doppler,
        VaultType::Infisical,
    ])
}

pub fn dns_subdomain() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9]([a-z0-9-]{0,59}[a-z0-9])?", 1..=4).prop_map(|l| l.join("."))
}

pub fn any_keys() -> impl Strategy<Value = Option<CredentialKeys>> {
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
pub fn any_spec() -> impl Strategy<Value = (String, VaultConnectionSpec)> {
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
                    credentials_secret_ref: CredentialsSecretRef {
                        name: secret,
                        keys: keys.map(Box::new),
                    },
                    doppler: doppler.map(Box::new),
                    infisical: infisical.map(Box::new),
                    ssm,
                    deletion_policy,
                };
                (name, spec)
            },
        )
}

pub fn chars_where(
    min: usize,
    max: usize,
    keep: fn(&char) -> bool,
) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>().prop_filter("rule", keep), min..=max)
        .prop_map(String::from_iter)
}

/// Specs built from the rules of the resource (docs/design.md §4), so every one of them is valid.
pub fn valid_spec(vault_type: VaultType) -> BoxedStrategy<VaultConnectionSpec> {
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
                    credentials_secret_ref: CredentialsSecretRef {
                        name: secret,
                        keys: keys.map(Box::new),
                    },
                    doppler: (vault_type == VaultType::Doppler).then(|| Box::new(doppler)),
                    infisical: (vault_type == VaultType::Infisical).then(|| Box::new(infisical)),
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
pub fn provider_spec() -> impl Strategy<Value = ValidSpec> {
    let key = prop::sample::select(KEYS);
    (vault_type(), key.clone(), key.clone(), key).prop_map(|(vt, a, i, s)| {
        let spec = VaultConnectionSpec {
            vault_type: vt,
            display_name: None,
            description: None,
            credentials_secret_ref: CredentialsSecretRef {
                name: "creds".into(),
                keys: Some(Box::new(CredentialKeys {
                    access_token: Some(a.into()),
                    client_id: Some(i.into()),
                    client_secret: Some(s.into()),
                })),
            },
            doppler: (vt == VaultType::Doppler).then(|| {
                Box::new(DopplerSpec {
                    project: "p".into(),
                    config: "c".into(),
                })
            }),
            infisical: (vt == VaultType::Infisical).then(|| {
                Box::new(InfisicalSpec {
                    project_id: "project".into(),
                    environment: "prod".into(),
                    secret_path: "/".into(),
                })
            }),
            ssm: None,
            deletion_policy: DeletionPolicy::Delete,
        };
        validation::validate_spec("conn", &spec).expect("the provider specs are valid")
    })
}

// ---- credentials -------------------------------------------------------------------------

pub const KEYS: &[&str] = &["access_token", "client_id", "client_secret", "token"];

/// Surrounding whitespace a Secret value may carry (`--from-file` adds a newline).
pub fn padding() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", " ", "\n", "\r\n", "\t", " \n\t"])
}

pub fn padded(value: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (padding(), value, padding()).prop_map(|(l, v, r)| format!("{l}{v}{r}"))
}

/// Credentials built from the rules of the resource (docs/design.md §4) for a spec's provider, keyed as it says.
pub fn valid_data(spec: &ValidSpec) -> BoxedStrategy<SecretData> {
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

pub fn any_value_bytes() -> impl Strategy<Value = Vec<u8>> {
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

pub fn any_data() -> impl Strategy<Value = SecretData> {
    prop::collection::btree_map(
        prop::sample::select(KEYS).prop_map(str::to_owned),
        any_value_bytes(),
        0..4,
    )
}

/// Secret data whose every value carries the canary somewhere inside hostile text.
pub fn canary_data() -> impl Strategy<Value = SecretData> {
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
pub fn invisible(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
        | '\u{e0000}'..='\u{e007f}')
}

pub fn is_dns_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

pub fn is_secret_key(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub fn chars(s: &str) -> usize {
    s.chars().count()
}
