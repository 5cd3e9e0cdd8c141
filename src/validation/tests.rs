//! Every rule of the resource (docs/design.md §4), at its boundaries.

use super::*;
use crate::api::{
    CredentialKeys, CredentialsSecretRef, DopplerSpec, InfisicalSpec, SsmSpec, VaultConnectionSpec,
};
use secrecy::ExposeSecret;

const UUID: &str = "0b7b2d4e-3f0a-4c1e-9a55-2f4c8e1d6a77";

fn spec(vault_type: VaultType) -> VaultConnectionSpec {
    VaultConnectionSpec {
        vault_type,
        display_name: None,
        description: None,
        credentials_secret_ref: CredentialsSecretRef {
            name: "creds".into(),
            keys: None,
        },
        doppler: (vault_type == VaultType::Doppler).then(|| {
            Box::new(DopplerSpec {
                project: "proj".into(),
                config: "prd".into(),
            })
        }),
        infisical: (vault_type == VaultType::Infisical).then(|| {
            Box::new(InfisicalSpec {
                project_id: "project-1".into(),
                environment: "prod".into(),
                secret_path: "/".into(),
            })
        }),
        ssm: None,
        deletion_policy: DeletionPolicy::Delete,
    }
}

fn data(pairs: &[(&str, &[u8])]) -> SecretData {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
        .collect()
}

fn spec_errors(s: &VaultConnectionSpec) -> Vec<FieldError> {
    validate_spec("my-conn", s).expect_err("spec should be rejected")
}

fn only_error_on(s: &VaultConnectionSpec, field: &str) -> FieldError {
    let errors = spec_errors(s);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:?}");
    assert_eq!(errors[0].field, field);
    assert_eq!(errors[0].kind, ErrorKind::InvalidSpec);
    errors[0].clone()
}

fn credential_errors(s: &VaultConnectionSpec, d: &SecretData) -> Vec<FieldError> {
    let valid = validate_spec("my-conn", s).expect("spec is valid");
    validate_credentials(&valid, d, &Policy::default()).expect_err("credentials should be rejected")
}

fn accepts(s: &VaultConnectionSpec, d: &SecretData) -> Connection {
    let valid = validate_spec("my-conn", s).expect("spec is valid");
    validate_credentials(&valid, d, &Policy::default()).expect("credentials are valid")
}

fn token(v: &str) -> SecretData {
    data(&[("access_token", v.as_bytes())])
}

// ---- spec ------------------------------------------------------------------------------------

#[test]
fn display_name_defaults_to_metadata_name() {
    let v = validate_spec("my-conn", &spec(VaultType::OnePassword)).unwrap();
    assert_eq!(v.display_name, "my-conn");
}

#[test]
fn display_name_of_255_characters_is_accepted_and_256_rejected() {
    let mut s = spec(VaultType::OnePassword);
    s.display_name = Some("é".repeat(255)); // characters, not bytes
    assert!(validate_spec("n", &s).is_ok());
    s.display_name = Some("a".repeat(256));
    let e = only_error_on(&s, "spec.displayName");
    assert!(e.message.contains("1 to 255"), "{e}");
}

#[test]
fn empty_display_name_is_rejected() {
    let mut s = spec(VaultType::OnePassword);
    s.display_name = Some(String::new());
    only_error_on(&s, "spec.displayName");
}

#[test]
fn description_of_2000_characters_is_accepted_and_2001_rejected() {
    let mut s = spec(VaultType::OnePassword);
    s.description = Some("d".repeat(2000));
    assert!(validate_spec("n", &s).is_ok());
    s.description = Some("d".repeat(2001));
    let e = only_error_on(&s, "spec.description");
    assert!(e.message.contains("at most 2000"), "{e}");
}

#[test]
fn doppler_without_its_block_is_rejected() {
    let mut s = spec(VaultType::Doppler);
    s.doppler = None;
    let e = only_error_on(&s, "spec.doppler");
    assert!(e.message.contains("required"), "{e}");
}

#[test]
fn infisical_without_its_block_is_rejected() {
    let mut s = spec(VaultType::Infisical);
    s.infisical = None;
    only_error_on(&s, "spec.infisical");
}

#[test]
fn a_provider_block_that_does_not_match_vault_type_is_rejected() {
    let mut s = spec(VaultType::OnePassword);
    s.doppler = spec(VaultType::Doppler).doppler;
    let e = only_error_on(&s, "spec.doppler");
    assert!(e.message.contains("must be absent"), "{e}");

    let mut s = spec(VaultType::Doppler);
    s.infisical = spec(VaultType::Infisical).infisical;
    only_error_on(&s, "spec.infisical");
}

#[test]
fn doppler_project_and_config_are_1_to_255_characters() {
    for field in ["project", "config"] {
        let mut s = spec(VaultType::Doppler);
        let set = |s: &mut VaultConnectionSpec, v: String| {
            let d = s.doppler.as_mut().unwrap();
            if field == "project" {
                d.project = v
            } else {
                d.config = v
            }
        };
        set(&mut s, "p".repeat(255));
        assert!(validate_spec("n", &s).is_ok());
        set(&mut s, "p".repeat(256));
        only_error_on(&s, &format!("spec.doppler.{field}"));
        set(&mut s, String::new());
        only_error_on(&s, &format!("spec.doppler.{field}"));
    }
}

#[test]
fn infisical_project_id_is_1_to_255_characters_and_not_blank() {
    let mut s = spec(VaultType::Infisical);
    s.infisical.as_mut().unwrap().project_id = "x".repeat(255);
    assert!(validate_spec("n", &s).is_ok());
    s.infisical.as_mut().unwrap().project_id = "x".repeat(256);
    only_error_on(&s, "spec.infisical.projectId");
    s.infisical.as_mut().unwrap().project_id = "   ".into();
    only_error_on(&s, "spec.infisical.projectId");
}

#[test]
fn infisical_environment_is_1_to_100_characters_without_whitespace_or_slash() {
    let mut s = spec(VaultType::Infisical);
    let env =
        |s: &mut VaultConnectionSpec, v: &str| s.infisical.as_mut().unwrap().environment = v.into();
    env(&mut s, &"e".repeat(100));
    assert!(validate_spec("n", &s).is_ok());
    for bad in [
        "e".repeat(101),
        String::new(),
        "pro d".into(),
        "prod/eu".into(),
        "prod\t".into(),
    ] {
        env(&mut s, &bad);
        only_error_on(&s, "spec.infisical.environment");
    }
}

#[test]
fn infisical_secret_path_is_at_most_500_characters_and_gets_a_leading_slash() {
    let mut s = spec(VaultType::Infisical);
    s.infisical.as_mut().unwrap().secret_path = "aws".into();
    let v = validate_spec("n", &s).unwrap();
    assert_eq!(
        v.settings,
        ProviderSettings::Infisical {
            project_id: "project-1".into(),
            environment: "prod".into(),
            secret_path: "/aws".into()
        }
    );
    s.infisical.as_mut().unwrap().secret_path = format!("/{}", "p".repeat(499));
    assert!(validate_spec("n", &s).is_ok());
    s.infisical.as_mut().unwrap().secret_path = format!("/{}", "p".repeat(500));
    only_error_on(&s, "spec.infisical.secretPath");
}

#[test]
fn empty_secret_path_means_the_root() {
    assert_eq!(normalize_secret_path(""), "/");
    assert_eq!(normalize_secret_path("/a/b"), "/a/b");
}

#[test]
fn secret_name_must_be_a_dns_subdomain() {
    let mut s = spec(VaultType::OnePassword);
    for bad in ["", "Creds", "creds_1", "-creds", "a/b", &"a".repeat(254)] {
        s.credentials_secret_ref.name = bad.into();
        only_error_on(&s, "spec.credentialsSecretRef.name");
    }
    s.credentials_secret_ref.name = "team-a.creds".into();
    assert!(validate_spec("n", &s).is_ok());
}

#[test]
fn secret_keys_must_be_valid_secret_keys() {
    let mut s = spec(VaultType::OnePassword);
    s.credentials_secret_ref.keys = Some(Box::new(CredentialKeys {
        access_token: Some("bad key".into()),
        client_id: None,
        client_secret: None,
    }));
    only_error_on(&s, "spec.credentialsSecretRef.keys.accessToken");
}

#[test]
fn kms_key_id_is_1_to_2048_characters_without_whitespace() {
    let mut s = spec(VaultType::OnePassword);
    let kms = |s: &mut VaultConnectionSpec, v: &str| {
        s.ssm = Some(SsmSpec {
            kms_key_id: Some(v.into()),
        })
    };
    kms(&mut s, &"k".repeat(2048));
    assert!(validate_spec("n", &s).is_ok());
    kms(&mut s, &"k".repeat(2049));
    only_error_on(&s, "spec.ssm.kmsKeyId");
    kms(&mut s, "alias/team a");
    only_error_on(&s, "spec.ssm.kmsKeyId");
}

#[test]
fn all_spec_errors_are_reported_at_once() {
    let mut s = spec(VaultType::Doppler);
    s.display_name = Some(String::new());
    s.description = Some("d".repeat(2001));
    s.doppler.as_mut().unwrap().project = String::new();
    assert_eq!(spec_errors(&s).len(), 3);
}

// ---- credentials -----------------------------------------------------------------------------

#[test]
fn access_token_of_4096_characters_is_accepted_and_4097_rejected() {
    let s = spec(VaultType::OnePassword);
    let ok = format!("ops_{}", "a".repeat(4092));
    accepts(&s, &token(&ok));
    let long = format!("ops_{}", "a".repeat(4093));
    let e = credential_errors(&s, &token(&long));
    assert_eq!(e[0].kind, ErrorKind::InvalidCredentials);
    assert!(e[0].message.contains("1 to 4096"), "{}", e[0]);
}

#[test]
fn one_password_token_must_start_with_ops() {
    let s = spec(VaultType::OnePassword);
    accepts(&s, &token("ops_eyJzaWduSW5BZGRyZXNzIjoi"));
    let e = credential_errors(&s, &token("eyJzaWduSW5BZGRyZXNzIjoi"));
    assert_eq!(e[0].field, "Secret/creds[access_token]");
    assert!(e[0].message.contains("ops_"), "{}", e[0]);
}

#[test]
fn surrounding_whitespace_is_trimmed_and_inner_whitespace_rejected() {
    let s = spec(VaultType::OnePassword);
    let c = accepts(&s, &token("  ops_abc\n"));
    let Provider::OnePassword { access_token } = c.provider else {
        panic!("wrong provider")
    };
    assert_eq!(access_token.expose_secret(), "ops_abc");
    let e = credential_errors(&s, &token("ops_a bc"));
    assert!(e[0].message.contains("whitespace"), "{}", e[0]);
}

#[test]
fn a_token_that_is_only_whitespace_is_empty() {
    let e = credential_errors(&spec(VaultType::OnePassword), &token(" \n\t"));
    assert!(e[0].message.contains("has 0"), "{}", e[0]);
}

#[test]
fn non_utf8_and_control_characters_are_rejected() {
    let s = spec(VaultType::OnePassword);
    let e = credential_errors(&s, &data(&[("access_token", b"ops_\xff\xfe")]));
    assert!(e[0].message.contains("UTF-8"), "{}", e[0]);
    let e = credential_errors(&s, &token("ops_a\u{0}b"));
    assert!(e[0].message.contains("control"), "{}", e[0]);
}

#[test]
fn a_missing_key_is_reported_as_missing_key() {
    let e = credential_errors(&spec(VaultType::OnePassword), &data(&[("token", b"ops_x")]));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].kind, ErrorKind::MissingKey);
    assert_eq!(e[0].field, "Secret/creds[access_token]");
}

#[test]
fn custom_key_names_are_read() {
    let mut s = spec(VaultType::OnePassword);
    s.credentials_secret_ref.keys = Some(Box::new(CredentialKeys {
        access_token: Some("token".into()),
        client_id: None,
        client_secret: None,
    }));
    accepts(&s, &data(&[("token", b"ops_x")]));
}

#[test]
fn doppler_accepts_service_and_service_account_tokens_by_default() {
    let s = spec(VaultType::Doppler);
    for kind in ["st", "sa", "said"] {
        accepts(&s, &token(&format!("dp.{kind}.prd.abc123")));
    }
}

#[test]
fn doppler_personal_and_cli_tokens_are_refused_by_default_saying_why_and_naming_the_flag() {
    let s = spec(VaultType::Doppler);
    for kind in ["pt", "ct"] {
        let value = format!("dp.{kind}.CANARYpersonal42");
        let e = credential_errors(&s, &token(&value));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "Secret/creds[access_token]");
        assert_eq!(e[0].kind, ErrorKind::InvalidCredentials);
        assert!(e[0].message.contains("whole workspace"), "{}", e[0]);
        assert!(
            e[0].message.contains("--allow-doppler-personal-tokens"),
            "{}",
            e[0]
        );
        assert!(!format!("{e:?}{}", e[0]).contains("CANARYpersonal42"));
    }
}

#[test]
fn doppler_personal_and_cli_tokens_are_accepted_when_the_policy_allows_them() {
    let valid = validate_spec("my-conn", &spec(VaultType::Doppler)).unwrap();
    let policy = Policy {
        allow_doppler_personal_tokens: true,
        ..Policy::default()
    };
    for kind in ["st", "sa", "pt", "ct", "said"] {
        let d = token(&format!("dp.{kind}.prd.abc123"));
        assert!(validate_credentials(&valid, &d, &policy).is_ok(), "{kind}");
    }
    // Allowing personal tokens does not open the door to tokens that cannot read secrets.
    let d = token("dp.scim.abc");
    assert!(validate_credentials(&valid, &d, &policy).is_err());
}

fn with_kms(key: Option<&str>) -> ValidSpec {
    let mut s = spec(VaultType::OnePassword);
    s.ssm = key.map(|k| SsmSpec {
        kms_key_id: Some(k.into()),
    });
    validate_spec("my-conn", &s).unwrap()
}

#[test]
fn the_operator_policy_allows_only_its_default_kms_key_unless_more_are_listed() {
    let policy = Policy::for_operator(false, "alias/aws/ssm", &[]);
    assert!(check_kms_key(&with_kms(None), &policy).is_ok());
    assert!(check_kms_key(&with_kms(Some("alias/aws/ssm")), &policy).is_ok());
    let e = check_kms_key(&with_kms(Some("alias/someone-elses")), &policy).unwrap_err();
    assert_eq!(e.field, "spec.ssm.kmsKeyId");
    assert_eq!(e.kind, ErrorKind::KmsKeyNotAllowed);
    assert_eq!(e.kind.reason().as_str(), "KmsKeyNotAllowed");
    assert!(e.message.contains("--allowed-kms-keys"), "{e}");
    assert!(!e.message.contains("someone-elses"), "{e}");
}

#[test]
fn listed_kms_keys_are_allowed_as_written_and_the_default_stays_allowed() {
    let listed = [
        "alias/team-a".to_owned(),
        " alias/team-b ".to_owned(),
        String::new(),
    ];
    let policy = Policy::for_operator(false, "alias/default", &listed);
    for ok in [
        None,
        Some("alias/default"),
        Some("alias/team-a"),
        Some("alias/team-b"),
    ] {
        assert!(check_kms_key(&with_kms(ok), &policy).is_ok(), "{ok:?}");
    }
    // Another name of the same key is another string: the list must name each form used.
    for refused in [
        "alias/team-c",
        "arn:aws:kms:eu-west-1:123456789012:alias/team-a",
        "ALIAS/TEAM-A",
    ] {
        assert!(
            check_kms_key(&with_kms(Some(refused)), &policy).is_err(),
            "{refused}"
        );
    }
}

#[test]
fn without_an_allow_list_any_kms_key_passes_the_offline_check() {
    let policy = Policy::default();
    assert!(check_kms_key(&with_kms(Some("alias/anything")), &policy).is_ok());
}

#[test]
fn doppler_rejects_scim_audit_and_unknown_tokens() {
    let s = spec(VaultType::Doppler);
    for bad in ["dp.scim.abc", "dp.audit.abc"] {
        let e = credential_errors(&s, &token(bad));
        assert!(e[0].message.contains("cannot read secrets"), "{}", e[0]);
    }
    for bad in ["dp.xx.abc", "dp.st.", "dp.st", "st.abc", "ops_abc"] {
        let e = credential_errors(&s, &token(bad));
        assert_eq!(e[0].kind, ErrorKind::InvalidCredentials, "{bad}");
    }
}

fn infisical_data(id: &[u8], secret: &[u8]) -> SecretData {
    data(&[("client_id", id), ("client_secret", secret)])
}

#[test]
fn infisical_client_id_must_be_a_uuid() {
    let s = spec(VaultType::Infisical);
    accepts(
        &s,
        &infisical_data(UUID.as_bytes(), b"f".repeat(64).as_slice()),
    );
    let e = credential_errors(&s, &infisical_data(b"not-a-uuid", b"secret"));
    assert_eq!(e[0].field, "Secret/creds[client_id]");
    assert!(e[0].message.contains("UUID"), "{}", e[0]);
    let e = credential_errors(&s, &infisical_data("a".repeat(256).as_bytes(), b"secret"));
    assert!(e[0].message.contains("1 to 255"), "{}", e[0]);
}

#[test]
fn infisical_client_secret_is_1_to_1000_characters_without_whitespace() {
    let s = spec(VaultType::Infisical);
    accepts(
        &s,
        &infisical_data(UUID.as_bytes(), "s".repeat(1000).as_bytes()),
    );
    let e = credential_errors(
        &s,
        &infisical_data(UUID.as_bytes(), "s".repeat(1001).as_bytes()),
    );
    assert_eq!(e[0].field, "Secret/creds[client_secret]");
    let e = credential_errors(&s, &infisical_data(UUID.as_bytes(), b"abc def"));
    assert!(e[0].message.contains("whitespace"), "{}", e[0]);
    // Not necessarily 64 hex characters: never reject a valid credential.
    accepts(&s, &infisical_data(UUID.as_bytes(), b"Zz9-not-hex"));
}

#[test]
fn both_missing_infisical_keys_are_reported() {
    let e = credential_errors(&spec(VaultType::Infisical), &SecretData::new());
    let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["Secret/creds[client_id]", "Secret/creds[client_secret]"]
    );
}

#[test]
fn no_error_and_no_debug_output_contains_a_credential_value() {
    let canary = "CANARY7f3a9";
    let inputs: Vec<(VaultType, SecretData)> = vec![
        (VaultType::OnePassword, token(&format!("{canary} x"))),
        (VaultType::OnePassword, token(canary)),
        (VaultType::Doppler, token(&format!("dp.scim.{canary}"))),
        (VaultType::Doppler, token(&format!("dp.zz.{canary}"))),
        (
            VaultType::Infisical,
            infisical_data(canary.as_bytes(), format!("{canary} y").as_bytes()),
        ),
        (
            VaultType::OnePassword,
            token(&format!("ops_{canary}{}", "a".repeat(5000))),
        ),
    ];
    for (vt, d) in inputs {
        for e in credential_errors(&spec(vt), &d) {
            assert!(!format!("{e} {e:?}").contains(canary), "leak in {e:?}");
        }
    }
    let ok = accepts(
        &spec(VaultType::OnePassword),
        &token(&format!("ops_{canary}")),
    );
    assert!(
        !format!("{ok:?}").contains(canary),
        "Debug of a Connection leaks"
    );
}

#[test]
fn invisible_characters_such_as_a_bom_or_a_zero_width_space_are_rejected() {
    let s = spec(VaultType::Infisical);
    for bad in [
        "\u{feff}secret",
        "sec\u{200b}ret",
        "secret\u{202e}",
        "se\u{e0041}cret",
    ] {
        let e = credential_errors(&s, &infisical_data(UUID.as_bytes(), bad.as_bytes()));
        assert_eq!(e[0].field, "Secret/creds[client_secret]");
        assert!(e[0].message.contains("invisible"), "{}", e[0]);
    }
    // A BOM before a 1Password token is reported as such, not as a wrong prefix.
    let e = credential_errors(&spec(VaultType::OnePassword), &token("\u{feff}ops_abc"));
    assert!(e[0].message.contains("invisible"), "{}", e[0]);
}

#[test]
fn the_policy_fingerprint_follows_the_settings_and_the_rules_version() {
    let base = Policy::for_operator(false, "alias/aws/ssm", &[]);
    let same = Policy::for_operator(false, " alias/aws/ssm ", &["".into()]);
    assert_eq!(base.fingerprint(), same.fingerprint(), "the same policy");
    assert!(
        base.fingerprint().starts_with(&format!("{RULES_VERSION}-")),
        "{}",
        base.fingerprint()
    );
    let personal = Policy::for_operator(true, "alias/aws/ssm", &[]);
    let more_keys = Policy::for_operator(false, "alias/aws/ssm", &["alias/team".into()]);
    let any_key = Policy {
        allowed_kms_keys: None,
        ..base.clone()
    };
    for other in [&personal, &more_keys, &any_key] {
        assert_ne!(base.fingerprint(), other.fingerprint(), "{other:?}");
    }
}
