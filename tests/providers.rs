//! Every provider has every part (src/providers/mod.rs lists them): a test per part outside
//! `src/providers/`, over `VaultType::ALL`, so a provider added in Rust fails here until its CEL
//! rules, chart values, NetworkPolicy URL, flag, fake API and example exist — and a part left
//! behind by a provider that is gone fails too.

use std::path::Path;

use vault_connection_operator::api::{VaultType, crd};

fn file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

const CHART: &str = "charts/vault-connection-operator";

/// The spec's own fields; every other field of the spec is a provider's section.
const SHARED_SPEC_FIELDS: [&str; 6] = [
    "vaultType",
    "displayName",
    "description",
    "credentialsSecretRef",
    "ssm",
    "deletionPolicy",
];

/// The providers with a spec section, as the generated CRD has them.
fn sections() -> Vec<String> {
    let crd = crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has a schema");
    let spec = &schema.properties.as_ref().expect("properties")["spec"];
    spec.properties
        .as_ref()
        .expect("spec properties")
        .keys()
        .filter(|k| !SHARED_SPEC_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect()
}

#[test]
fn every_provider_has_an_example() {
    for vt in VaultType::ALL {
        let name = vt.as_str();
        let example = file(&format!("examples/{name}.yaml"));
        assert!(
            example.contains(&format!("vaultType: {name}")),
            "examples/{name}.yaml does not connect to {name}"
        );
    }
}

#[test]
fn every_spec_section_is_a_providers_and_the_crd_requires_it_only_for_its_provider() {
    let names: Vec<&str> = VaultType::ALL.iter().map(|v| v.as_str()).collect();
    let crd = file("crds/vaultconnections.yaml");
    for section in sections() {
        assert!(
            names.contains(&section.as_str()),
            "spec.{section} is neither a provider's section nor in SHARED_SPEC_FIELDS"
        );
        for rule in [
            format!("spec.{section} is required when spec.vaultType is {section}"),
            format!("spec.{section} must be absent unless spec.vaultType is {section}"),
        ] {
            assert!(crd.contains(&rule), "the CRD lacks the CEL rule: {rule}");
        }
    }
}

/// The URLs the verification NetworkPolicy opens, as the template lists them.
fn network_policy_urls() -> Vec<String> {
    let template = file(&format!(
        "{CHART}/templates/networkpolicy-verification.yaml"
    ));
    let line = template
        .lines()
        .find(|l| l.contains("range $url := list"))
        .expect("the NetworkPolicy ranges over a list of URLs");
    let list = line.split("list").nth(1).unwrap_or_default();
    list.split_whitespace()
        .filter_map(|w| w.strip_prefix("$v."))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_verifiable_provider_has_a_flag_chart_values_and_a_network_policy_url() {
    let values = file(&format!("{CHART}/values.yaml"));
    let schema = file(&format!("{CHART}/values.schema.json"));
    let deployment = file(&format!("{CHART}/templates/deployment.yaml"));
    let config = file("src/config.rs");
    let mut expected_urls = Vec::new();
    for vt in VaultType::ALL {
        let name = vt.as_str();
        let value = format!("{name}Url");
        let env = format!("VCO_VERIFY_{}_URL", name.to_ascii_uppercase());
        let Some(default) = vt.default_url() else {
            assert!(!vt.verifiable(), "{name} has checks but no default URL");
            for (what, text) in [("values.yaml", &values), ("deployment.yaml", &deployment)] {
                assert!(
                    !text.contains(&value),
                    "{what} has {value}, but {name} is not verified"
                );
            }
            continue;
        };
        expected_urls.push(value.clone());
        assert!(
            values.contains(&format!("{value}: {default}")),
            "values.yaml: operator.verification.{value} must default to {default}"
        );
        assert!(
            schema.contains(&format!("\"{value}\"")),
            "values.schema.json lacks {value}"
        );
        assert!(
            deployment.contains(&env) && deployment.contains(&format!(".{value}")),
            "deployment.yaml does not pass {value} as {env}"
        );
        assert!(
            config.contains(&env)
                && config.contains(&format!("crate::providers::{name}::DEFAULT_URL")),
            "src/config.rs lacks the flag --verify-{name}-url ({env}) defaulting to the provider's URL"
        );
    }
    assert!(!expected_urls.is_empty(), "no provider is verifiable");
    assert_eq!(
        network_policy_urls(),
        expected_urls,
        "networkpolicy-verification.yaml must open exactly the verifiable providers' URLs"
    );
}

#[test]
fn every_verifiable_provider_has_a_fake_serving_each_check() {
    let fakes = file("tests/common/providers.rs");
    for vt in VaultType::ALL {
        let name = vt.as_str();
        if !vt.verifiable() {
            continue;
        }
        assert!(
            fakes.contains(&format!("pub async fn {name}() -> Fake")),
            "tests/common/providers.rs has no fake {name} (Fake::{name}())"
        );
        for check in vt.checks() {
            let path = check
                .endpoint()
                .split_whitespace()
                .last()
                .unwrap_or_default();
            assert!(
                fakes.contains(&format!("\"{path}\"")),
                "the fake {name} does not serve {} ({})",
                check.endpoint(),
                check.label()
            );
        }
    }
}
