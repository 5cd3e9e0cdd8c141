//! Parameter names, the document and its tier.

use secrecy::ExposeSecret;

use super::*;
use crate::api::DeletionPolicy;
use crate::validation::{Provider, ProviderSettings, ValidSpec};

fn connection(provider: Provider, description: &str) -> Connection {
    let settings = match &provider {
        Provider::OnePassword { .. } => ProviderSettings::OnePassword,
        Provider::Doppler {
            project, config, ..
        } => ProviderSettings::Doppler {
            project: project.clone(),
            config: config.clone(),
        },
        Provider::Infisical {
            project_id,
            environment,
            secret_path,
            ..
        } => ProviderSettings::Infisical {
            project_id: project_id.clone(),
            environment: environment.clone(),
            secret_path: secret_path.clone(),
        },
    };
    Connection {
        spec: ValidSpec {
            display_name: "Doppler \"Prod\"".into(),
            description: description.into(),
            settings,
            secret_name: "creds".into(),
            access_token_key: "access_token".into(),
            client_id_key: "client_id".into(),
            client_secret_key: "client_secret".into(),
            kms_key_id: None,
            deletion_policy: DeletionPolicy::Delete,
        },
        provider,
    }
}

#[test]
fn doppler_document_has_fixed_keys_in_fixed_order() {
    let c = connection(
        Provider::Doppler {
            access_token: "dp.st.x".into(),
            project: "p".into(),
            config: "c".into(),
        },
        "",
    );
    assert_eq!(
        render(&c).expose_secret(),
        r#"{"vault_type":"doppler","name":"Doppler \"Prod\"","description":"","access_token":"dp.st.x","project":"p","config":"c"}"#
    );
}

#[test]
fn infisical_and_one_password_documents_use_the_provider_api_names() {
    let i = connection(
        Provider::Infisical {
            client_id: "id".into(),
            client_secret: "s".into(),
            project_id: "pid".into(),
            environment: "prod".into(),
            secret_path: "/".into(),
        },
        "d",
    );
    assert_eq!(
        render(&i).expose_secret(),
        r#"{"vault_type":"infisical","name":"Doppler \"Prod\"","description":"d","client_id":"id","client_secret":"s","project_id":"pid","environment":"prod","secret_path":"/"}"#
    );
    let o = connection(
        Provider::OnePassword {
            access_token: "ops_t".into(),
        },
        "",
    );
    assert!(
        render(&o)
            .expose_secret()
            .ends_with(r#""access_token":"ops_t"}"#)
    );
}

#[test]
fn equal_content_renders_equal_bytes() {
    let make = || {
        connection(
            Provider::OnePassword {
                access_token: "ops_t".into(),
            },
            "x",
        )
    };
    assert_eq!(
        render(&make()).expose_secret(),
        render(&make()).expose_secret()
    );
}

#[test]
fn tier_is_standard_up_to_4096_bytes_then_advanced_up_to_8192() {
    assert_eq!(tier_for(4096, None), Ok(Tier::Standard));
    assert_eq!(tier_for(4097, None), Ok(Tier::Advanced));
    assert_eq!(tier_for(8192, None), Ok(Tier::Advanced));
    assert_eq!(
        tier_for(8193, None),
        Err(DocumentError::ValueTooLarge { len: 8193 })
    );
}

#[test]
fn tier_is_never_downgraded() {
    assert_eq!(tier_for(10, Some(Tier::Advanced)), Ok(Tier::Advanced));
    assert_eq!(tier_for(10, Some(Tier::Standard)), Ok(Tier::Standard));
}

#[test]
fn parameter_name_is_prefix_cluster_namespace_name() {
    assert_eq!(
        parameter_name(
            "/vault-connections",
            "default",
            "team-a",
            "doppler-production"
        ),
        Ok("/vault-connections/default/team-a/doppler-production".into())
    );
}

#[test]
fn parameter_name_follows_aws_rules() {
    let bad = |p: &str, c: &str| parameter_name(p, c, "ns", "n").is_err();
    assert!(bad("vault", "c"), "prefix must start with /");
    assert!(bad("/vault/", "c"), "prefix must not end with /");
    assert!(bad("/aws/x", "c"), "aws is reserved");
    assert!(bad("/SSM", "c"), "ssm is reserved, in any case");
    assert!(bad("/v", "c l"), "no spaces");
    assert!(bad("/v", "a/b"), "cluster is one level");
    let deep = (0..12).map(|i| format!("/l{i}")).collect::<String>(); // 12 + 3 = 15 levels
    assert!(parameter_name(&deep, "c", "ns", "n").is_ok());
    assert!(
        parameter_name(&format!("{deep}/x"), "c", "ns", "n").is_err(),
        "16 levels"
    );
    let long = format!("/{}", "p".repeat(1004)); // 1 + 1004 + "/c/ns/n" = 1012
    assert!(parameter_name(&format!("/{}", "p".repeat(1003)), "c", "ns", "n").is_ok());
    assert!(
        parameter_name(&long, "c", "ns", "n").is_err(),
        "over 1011 characters"
    );
}
