//! The cluster admin's policy against the real API server and SSM emulator: which KMS keys a
//! connection may name, and whether Doppler personal tokens are accepted. A refused connection
//! reports why and nothing is written.

mod common;

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use vault_connection_operator::api::VaultConnection;

use common::{Operator, OperatorOptions, TestEnv, eventually, install_crd, namespace, unique};

struct World {
    env: TestEnv,
    client: kube::Client,
    ssm: aws_sdk_ssm::Client,
    ns: String,
    prefix: String,
}

impl World {
    async fn new(name: &str) -> World {
        let env = TestEnv::get();
        let client = env.kube().await;
        install_crd(&client).await;
        let ns = namespace(&client, name).await;
        let ssm = env.ssm().await;
        World {
            env,
            client,
            ssm,
            ns,
            prefix: format!("/{}", unique("p")),
        }
    }

    async fn operator(&self, env: &[(&str, &str)]) -> Operator {
        let opts = OperatorOptions {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        Operator::start(&self.env, &self.ns, &self.prefix, &opts).await
    }

    fn vcs(&self) -> Api<VaultConnection> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Waits until `name`'s Ready condition has `reason`: (status, message), and the Valid
    /// condition's (status, reason).
    async fn wait_reason(&self, name: &str, reason: &str) -> ((String, String), (String, String)) {
        let api = self.vcs();
        eventually(20, &format!("{name} to report {reason}"), || async {
            let vc = api.get(name).await.ok()?;
            let conditions = vc.status?.conditions;
            let find = |t: &str| conditions.iter().find(|c| c.type_ == t).cloned();
            let ready = find("Ready").filter(|c| c.reason == reason)?;
            let valid = find("Valid")?;
            Some(((ready.status, ready.message), (valid.status, valid.reason)))
        })
        .await
    }

    /// Whether the connection's parameter exists.
    async fn written(&self, name: &str) -> bool {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let param = format!("{}/default/{}/{name}", self.prefix, self.ns);
        match self.ssm.get_parameter().name(&param).send().await {
            Ok(_) => true,
            Err(e) => {
                let code = aws_sdk_ssm::error::ProvideErrorMetadata::code(&e).map(str::to_owned);
                assert_eq!(code.as_deref(), Some("ParameterNotFound"), "{e:?}");
                false
            }
        }
    }
}

#[tokio::test]
async fn a_kms_key_outside_the_allow_list_gets_kms_key_not_allowed_and_nothing_is_written() {
    let w = World::new("kms-allow").await;
    let _op = w
        .operator(&[("VCO_ALLOWED_KMS_KEYS", "alias/team-a")])
        .await;
    let connection = |name: &str, kms: &str| {
        format!(
            r#"apiVersion: v1
kind: Secret
metadata:
  name: {name}-creds
  labels: {{vaultconnections.io/credentials: "true"}}
stringData: {{access_token: "ops_kms"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: {name}}}
spec:
  vaultType: onepassword
  credentialsSecretRef: {{name: {name}-creds}}
  ssm: {{kmsKeyId: {kms}}}
"#
        )
    };
    w.env
        .apply(&w.ns, &connection("other", "alias/someone-elses-key"));
    w.env.apply(&w.ns, &connection("listed", "alias/team-a"));

    let ((status, message), valid) = w.wait_reason("other", "KmsKeyNotAllowed").await;
    assert_eq!(status, "False");
    assert!(message.starts_with("spec.ssm.kmsKeyId: "), "{message}");
    assert!(message.contains("--allowed-kms-keys"), "{message}");
    assert!(
        !message.contains("someone-elses"),
        "no value in the message: {message}"
    );
    assert_eq!(valid, ("False".to_owned(), "KmsKeyNotAllowed".to_owned()));
    assert!(
        !w.written("other").await,
        "nothing is written for a refused key"
    );

    w.wait_reason("listed", "Synced").await;
    assert!(w.written("listed").await);

    // Dropping the key falls back to the default key, which is always allowed.
    let patch = serde_json::json!({"spec": {"ssm": null}});
    w.vcs()
        .patch("other", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch the connection");
    w.wait_reason("other", "Synced").await;
}

#[tokio::test]
async fn a_doppler_personal_token_is_refused_unless_the_operator_allows_it() {
    let w = World::new("doppler-pt").await;
    let mut op = w.operator(&[]).await;
    w.env.apply(
        &w.ns,
        r#"apiVersion: v1
kind: Secret
metadata:
  name: personal
  labels: {vaultconnections.io/credentials: "true"}
stringData: {access_token: "dp.pt.CANARYperson"}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: personal}
spec:
  vaultType: doppler
  credentialsSecretRef: {name: personal}
  doppler: {project: p, config: c}
"#,
    );
    let ((status, message), _) = w.wait_reason("personal", "InvalidCredentials").await;
    assert_eq!(status, "False");
    assert!(
        message.starts_with("Secret/personal[access_token]: is a Doppler personal"),
        "{message}"
    );
    assert!(
        message.contains("--allow-doppler-personal-tokens"),
        "{message}"
    );
    assert!(!message.contains("CANARY"), "{message}");
    assert!(!w.written("personal").await);

    op.kill();
    let _op = w
        .operator(&[("VCO_ALLOW_DOPPLER_PERSONAL_TOKENS", "true")])
        .await;
    w.wait_reason("personal", "Synced").await;
    assert!(w.written("personal").await);
}
