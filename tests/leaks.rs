//! The leak canary: distinctive credential values go through every path the operator has —
//! success, rotation, every kind of invalid credential, an unlabelled Secret, a tier rejection,
//! deletion — and then every output channel is gathered and searched for them: the status of
//! every object, all events, `kubectl get -o yaml` and `describe`, the operator's logs at trace
//! level for every crate, `/metrics`, and the `validate` command's output and errors.

mod common;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use vault_connection_operator::api::VaultConnection;
use vault_connection_operator::status::ready_reason;

use common::{
    Operator, OperatorOptions, TestEnv, eventually, install_crd, namespace, repo, unique,
};

/// Each canary's distinctive core; a value carries it so that a partial or trimmed echo is
/// caught as well as a whole one.
const CORES: [&str; 9] = [
    "CANARYk1onepass",
    "CANARYk2rotated",
    "CANARYk3doppler",
    "CANARYk4scimtok",
    "CANARYk5spaced",
    "CANARYk6clientid",
    "CANARYk7clsecret",
    "CANARYk8unlabel",
    "CANARYk9overtier",
];

fn manifests() -> String {
    let c = CORES;
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: op, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{access_token: "ops_{op}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: op}}
spec: {{vaultType: onepassword, credentialsSecretRef: {{name: op}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: dp, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{access_token: "dp.st.prd.{dp}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: dp}}
spec:
  vaultType: doppler
  credentialsSecretRef: {{name: dp}}
  doppler: {{project: p, config: c}}
---
apiVersion: v1
kind: Secret
metadata: {{name: scim, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{access_token: "dp.scim.{scim}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: scim}}
spec:
  vaultType: doppler
  credentialsSecretRef: {{name: scim}}
  doppler: {{project: p, config: c}}
---
apiVersion: v1
kind: Secret
metadata: {{name: spaced, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{access_token: "ops_{spaced} tail"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: spaced}}
spec: {{vaultType: onepassword, credentialsSecretRef: {{name: spaced}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: inf, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{client_id: "{id}", client_secret: "{secret} x"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: inf}}
spec:
  vaultType: infisical
  credentialsSecretRef: {{name: inf}}
  infisical: {{projectId: p, environment: prod}}
---
apiVersion: v1
kind: Secret
metadata: {{name: plain}}
stringData: {{access_token: "ops_{unlabelled}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: plain}}
spec: {{vaultType: onepassword, credentialsSecretRef: {{name: plain}}}}
"#,
        op = c[0],
        dp = c[2],
        scim = c[3],
        spaced = c[4],
        id = c[5],
        secret = c[6],
        unlabelled = c[7],
    )
}

fn assert_clean(channel: &str, text: &str) {
    for core in CORES {
        assert!(
            !text.contains(core),
            "credential {core:?} leaked into {channel}"
        );
    }
}

#[tokio::test]
async fn no_credential_value_reaches_any_output_channel() {
    let env = TestEnv::get();
    let client = env.kube().await;
    install_crd(&client).await;
    let ns = namespace(&client, "leaks").await;
    let prefix = format!("/{}", unique("leaks"));
    // A tier that allows two parameters: `op` and `dp` hold them (the others never get as far
    // as writing), so the last valid connection, `over`, is refused.
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let label = serde_json::json!({"metadata": {"labels": {"vaultconnections.io/tier": "small"}}});
    ns_api
        .patch(&ns, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let opts = OperatorOptions {
        env: vec![
            // Every crate at trace, not only the operator's own.
            (
                "VCO_LOG_LEVEL".into(),
                "trace,vault_connection_operator=trace".into(),
            ),
            ("VCO_TIER_LIMITS".into(), "small=2,team=10".into()),
        ],
    };
    let op = Operator::start(&env, &ns, &prefix, &opts).await;
    env.apply(&ns, &manifests());
    let vcs: Api<VaultConnection> = Api::namespaced(client.clone(), &ns);
    for (name, reason) in [
        ("op", "Synced"),
        ("dp", "Synced"),
        ("scim", "InvalidCredentials"),
        ("spaced", "InvalidCredentials"),
        ("inf", "InvalidCredentials"),
        ("plain", "SecretNotLabeled"),
    ] {
        eventually(20, &format!("{name} to report {reason}"), || async {
            let vc = vcs.get(name).await.ok()?;
            (ready_reason(&vc) == Some(reason)).then_some(())
        })
        .await;
    }
    env.apply(
        &ns,
        &format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: over, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{access_token: "ops_{}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: over}}
spec: {{vaultType: onepassword, credentialsSecretRef: {{name: over}}}}
"#,
            CORES[8]
        ),
    );
    eventually(20, "the last connection to be over the tier", || async {
        let vc = vcs.get("over").await.ok()?;
        (ready_reason(&vc) == Some("TierLimitExceeded")).then_some(())
    })
    .await;

    // A rotation and a deletion go through their paths too.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let rotate = serde_json::json!({"stringData": {"access_token": format!("ops_{}", CORES[1])}});
    secrets
        .patch("op", &PatchParams::default(), &Patch::Merge(&rotate))
        .await
        .unwrap();
    eventually(20, "the rotation to be stored", || async {
        let vc = vcs.get("op").await.ok()?;
        (vc.status?.parameter?.version == 2).then_some(())
    })
    .await;
    vcs.delete("dp", &DeleteParams::default()).await.unwrap();
    eventually(20, "dp to be deleted", || async {
        vcs.get_opt("dp").await.ok()?.is_none().then_some(())
    })
    .await;

    // Gather every channel.
    let statuses: Vec<_> = vcs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|vc| vc.status)
        .collect();
    assert_clean("status", &serde_json::to_string(&statuses).unwrap());
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let events = events.list(&ListParams::default()).await.unwrap().items;
    assert!(events.len() >= 6, "events were published: {}", events.len());
    assert_clean("events", &serde_json::to_string(&events).unwrap());
    for args in [
        vec!["get", "vc", "-o", "yaml"],
        vec!["describe", "vc"],
        vec!["get", "events"],
    ] {
        let out = env
            .command("kubectl")
            .args(&args)
            .args(["-n", &ns])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_clean(
            &format!("kubectl {}", args.join(" ")),
            &String::from_utf8_lossy(&out.stdout),
        );
    }
    let logs = op.logs();
    assert!(
        logs.contains("\"level\":\"TRACE\""),
        "logs were taken at trace level"
    );
    assert!(
        logs.contains("\"target\":\"kube_client"),
        "dependency logs are included"
    );
    assert_clean("operator logs", &logs);
    assert_clean("/metrics", &op.metrics_text().await);

    // The offline validate command on the same manifests: output and errors.
    let file = std::env::temp_dir().join(format!("{}.yaml", unique("leaks")));
    std::fs::write(&file, manifests()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vault-connection-operator"))
        .current_dir(repo())
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "validate found the invalid credentials"
    );
    assert_clean("validate stdout", &String::from_utf8_lossy(&out.stdout));
    assert_clean("validate stderr", &String::from_utf8_lossy(&out.stderr));
}
