//! Properties of the validation core over arbitrary and hostile input: arbitrary specs;
//! arbitrary Secret bytes (huge values, control and invisible characters, lookalike letters,
//! template syntax, padding); documents, tiers and parameter names. Nothing panics, nothing
//! shows a credential, every accepted credential follows every rule of the resource
//! (docs/design.md §4), and every valid input is accepted. (The offline `validate` path:
//! tests/validate_properties.rs.)
//!
//! Each property runs 256 cases (proptest's default); `PROPTEST_CASES=5000 cargo test --release
//! --test core_properties` searches deeper. The rules are restated from the design
//! (tests/generators), not read from the code under test.

mod generators;
mod planting;

use std::fmt;
use std::sync::LazyLock;

use proptest::prelude::*;
use secrecy::ExposeSecret;
use vault_connection_operator::api::{
    CredentialsSecretRef, DeletionPolicy, DopplerSpec, InfisicalSpec, VaultConnectionSpec,
    VaultType,
};
use vault_connection_operator::document::{self, Tier};
use vault_connection_operator::validation::{
    self, Connection, ErrorKind, FieldError, Provider, ProviderSettings, SecretData, ValidSpec,
};

use generators::*;
use planting::CANARY;

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
        doppler: (vt == VaultType::Doppler).then(|| {
            Box::new(DopplerSpec {
                project: "p".into(),
                config: "c".into(),
            })
        }),
        infisical: (vt == VaultType::Infisical).then(|| {
            Box::new(InfisicalSpec {
                project_id: "p".into(),
                environment: "e".into(),
                secret_path: "/".into(),
            })
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
