//! The leak canary: distinctive credential values go through every path the operator has —
//! success, rotation, every kind of invalid credential, an unlabelled Secret, a tier rejection,
//! deletion — and then every output channel is gathered and searched for them: the status of
//! every object, all events, `kubectl get -o yaml` and `describe`, the operator's logs at trace
//! level for every crate, `/metrics`, and the `validate` command's output and errors.

mod common;

use kube::api::ListParams;

use common::{Connection, Credentials, Object, Options, Scratch, World, eventually, repo};

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

/// One connection per path, each with its Secret carrying a canary.
fn manifests() -> Vec<Object> {
    let c = CORES;
    let token = |name: &str, token: String| Credentials::secret(name).token(&token);
    vec![
        token("op", format!("ops_{}", c[0])).into(),
        Connection::onepassword("op").into(),
        token("dp", format!("dp.st.prd.{}", c[2])).into(),
        Connection::doppler("dp").into(),
        token("scim", format!("dp.scim.{}", c[3])).into(),
        Connection::doppler("scim").into(),
        token("spaced", format!("ops_{} tail", c[4])).into(),
        Connection::onepassword("spaced").into(),
        Credentials::secret("inf")
            .client(c[5], &format!("{} x", c[6]))
            .into(),
        Connection::infisical("inf").into(),
        token("plain", format!("ops_{}", c[7])).unlabelled().into(),
        Connection::onepassword("plain").into(),
    ]
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
    let Some(w) = World::new("leaks").await else {
        return;
    };
    // A tier that allows two parameters: `op` and `dp` hold them (the others never get as far
    // as writing), so the last valid connection, `over`, is refused.
    w.set_tier("small").await;
    let op = w
        .operator_with(
            Options::new()
                // Every crate at trace, not only the operator's own.
                .env("VCO_LOG_LEVEL", "trace,vault_connection_operator=trace")
                .env("VCO_TIER_LIMITS", "small=2,team=10"),
        )
        .await;
    for object in manifests() {
        w.apply(object).await;
    }
    for (name, reason) in [
        ("op", "Synced"),
        ("dp", "Synced"),
        ("scim", "InvalidCredentials"),
        ("spaced", "InvalidCredentials"),
        ("inf", "InvalidCredentials"),
        ("plain", "SecretNotLabeled"),
    ] {
        w.wait_reason(name, reason).await;
    }
    w.one_password("over", &format!("ops_{}", CORES[8])).await;
    w.wait_reason("over", "TierLimitExceeded").await;

    // A rotation and a deletion go through their paths too.
    w.rotate("op", "access_token", &format!("ops_{}", CORES[1]))
        .await;
    let vcs = w.vcs();
    eventually(20, "the rotation to be stored", || async {
        let vc = vcs.get("op").await.ok()?;
        (vc.status?.parameter?.version == 2).then_some(())
    })
    .await;
    w.delete("dp").await;
    eventually(20, "dp to be deleted", || async {
        vcs.get_opt("dp").await.ok()?.is_none().then_some(())
    })
    .await;

    // Gather every channel.
    let statuses: Vec<_> = vcs
        .list(&ListParams::default())
        .await
        .expect("list connections")
        .items
        .into_iter()
        .map(|vc| vc.status)
        .collect();
    assert_clean("status", &serde_json::to_string(&statuses).expect("JSON"));
    let events = w.all_events().await;
    assert!(events.len() >= 6, "events were published: {}", events.len());
    assert_clean("events", &serde_json::to_string(&events).expect("JSON"));
    for args in [
        vec!["get", "vc", "-o", "yaml"],
        vec!["describe", "vc"],
        vec!["get", "events"],
    ] {
        let mut all = args.clone();
        all.extend(["-n", &w.ns]);
        let out = w.env.kubectl(&all);
        assert!(out.success);
        assert_clean(&format!("kubectl {}", args.join(" ")), &out.stdout);
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
    let scratch = Scratch::new("leaks");
    let file = scratch.write("manifests.yaml", &common::fixtures::yaml(&manifests()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vault-connection-operator"))
        .current_dir(repo())
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .expect("run validate");
    assert_eq!(
        out.status.code(),
        Some(1),
        "validate found the invalid credentials"
    );
    assert_clean("validate stdout", &String::from_utf8_lossy(&out.stdout));
    assert_clean("validate stderr", &String::from_utf8_lossy(&out.stderr));
}
