//! The controller against the real API server and SSM emulator: one operator process per test,
//! scoped to the test's namespace and SSM prefix. What it stores, when it writes, and the
//! reason it reports for each bad input. (Tier limits: tests/tiers.rs; parameters that are not
//! ours: tests/ownership.rs.)

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use vault_connection_operator::api::FINALIZER;

use common::{CLUSTER, Connection, Credentials, Options, World, cond, document, eventually};

#[tokio::test]
async fn each_provider_becomes_ready_with_its_document_tags_status_and_events() {
    let Some(w) = World::new("providers").await else {
        return;
    };
    let _op = w.operator().await;
    for file in [
        "examples/onepassword.yaml",
        "examples/doppler.yaml",
        "examples/infisical.yaml",
    ] {
        w.apply_file(file);
    }
    let cases = [
        (
            "onepassword-shared",
            r#"{"vault_type":"onepassword","name":"1Password shared vault","description":"Service account for the team's shared vault","access_token":"ops_FAKEexampleTOKENdoNotUse0000000000000000000000"}"#,
        ),
        (
            "doppler-production",
            r#"{"vault_type":"doppler","name":"Doppler Production","description":"Production config","access_token":"dp.st.prd.FAKEexampleTOKENdoNotUse00000000000000","project":"my-project","config":"production"}"#,
        ),
        (
            "infisical-staging",
            r#"{"vault_type":"infisical","name":"Infisical staging","description":"","client_id":"00000000-0000-4000-8000-000000000000","client_secret":"0000000000000000000000000000000000000000000000000000000000000000","project_id":"6630f1a2b3c4d5e6f7a8b9c0","environment":"staging","secret_path":"/aws"}"#,
        ),
    ];
    for (name, expected) in cases {
        let vc = w.wait_reason(name, "Synced").await;
        let (value, version) = w.read(name).await.expect("parameter exists");
        assert_eq!(value, expected, "{name}: exact bytes, fixed key order");
        assert_eq!(version, 1);

        let tags = w.tags(name).await;
        assert_eq!(tags["managed-by"], "vault-connection-operator");
        assert_eq!(tags["vaultconnections.io/namespace"], w.ns);
        assert_eq!(tags["vaultconnections.io/name"], name);
        assert_eq!(tags["vaultconnections.io/cluster"], CLUSTER);
        assert_eq!(
            Some(&tags["vaultconnections.io/uid"]),
            vc.metadata.uid.as_ref()
        );
        assert_eq!(
            tags["vaultconnections.io/vault-type"],
            vc.spec.vault_type.as_str()
        );

        let status = vc.status.clone().expect("a status");
        assert_eq!(status.observed_generation, vc.metadata.generation);
        for t in ["Ready", "Valid", "Synced"] {
            let c = common::condition(&vc, t).unwrap_or_else(|| panic!("{name}: no {t}"));
            assert_eq!(c.status, "True", "{name} {t}");
            assert_eq!(c.observed_generation, vc.metadata.generation);
        }
        let p = status.parameter.expect("a parameter in status");
        assert_eq!(
            (p.name.as_str(), p.version, p.tier.as_str()),
            (w.param(name).as_str(), 1, "Standard")
        );
        assert!(status.last_sync_time.is_some());
        assert!(
            vc.metadata
                .finalizers
                .unwrap_or_default()
                .contains(&FINALIZER.to_owned())
        );

        let events = eventually(10, "a Created event", || async {
            let e = w.events(name).await;
            e.iter().any(|(r, _)| r == "Created").then_some(e)
        })
        .await;
        assert!(
            events.iter().any(|(_, note)| note.contains(&w.param(name))),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn rotating_the_secret_updates_the_parameter_exactly_once() {
    let Some(w) = World::new("rotate").await else {
        return;
    };
    let op = w.operator().await;
    w.one_password("rot", "ops_first").await;
    w.wait_reason("rot", "Synced").await;
    assert_eq!(w.read("rot").await.expect("written").1, 1);

    let started = Instant::now();
    w.rotate("rot", "access_token", "ops_second").await;
    let (value, _) = eventually(10, "the new version", || async {
        w.read("rot").await.filter(|(_, v)| *v == 2)
    })
    .await;
    println!(
        "rotation latency: Secret update to parameter version 2 in {:?}",
        started.elapsed()
    );
    assert_eq!(document(&value)["access_token"], "ops_second");

    // Status catches up, and nothing more is written.
    eventually(10, "status at version 2", || async {
        let vc = w.vcs().get("rot").await.ok()?;
        (vc.status?.parameter?.version == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        w.read("rot").await.expect("written").1,
        2,
        "exactly one new version"
    );
    assert_eq!(
        op.ssm_calls("PutParameter").await,
        2,
        "one create, one update"
    );
}

#[tokio::test]
async fn an_unchanged_secret_and_a_restart_write_nothing() {
    let Some(w) = World::new("idle").await else {
        return;
    };
    let mut op = w.operator().await;
    w.one_password("idle", "ops_same").await;
    w.wait_reason("idle", "Synced").await;

    // Touch the Secret without changing its data: a reconcile, but no write.
    tokio::time::sleep(Duration::from_secs(1)).await; // our own status patch is reconciled too
    let before = op.reconciles("Synced").await;
    w.patch_secret(
        "idle",
        json!({"metadata": {"annotations": {"touched": "yes"}}}),
    )
    .await;
    eventually(10, "the touch to be reconciled", || async {
        (op.reconciles("Synced").await > before).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        w.read("idle").await.expect("written").1,
        1,
        "no write for unchanged data"
    );
    assert_eq!(
        op.ssm_calls("GetParameter").await,
        0,
        "what the operator wrote itself is never decrypted to be compared"
    );

    op.kill();
    let resource_version = || async {
        let vc = w.vcs().get("idle").await.expect("the connection");
        vc.metadata.resource_version
    };
    let rv_before = resource_version().await;
    let op2 = w.operator().await;
    // Status records what was synced (Secret version, document format): the restarted operator
    // checks the parameter's version with one batched, non-decrypting call and reads no secret.
    eventually(
        10,
        "the restarted operator to check the parameter's version",
        || async { (op2.ssm_calls("GetParameters").await >= 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        op2.ssm_calls("GetParameter").await,
        0,
        "no decrypting read after a restart"
    );
    assert_eq!(
        w.read("idle").await.expect("written").1,
        1,
        "restart wrote nothing to SSM"
    );
    assert_eq!(op2.ssm_calls("PutParameter").await, 0);
    assert_eq!(
        rv_before,
        resource_version().await,
        "restart wrote nothing to the API server either"
    );
}

#[tokio::test]
async fn an_out_of_band_edit_is_repaired_at_the_next_drift_check() {
    let Some(w) = World::new("drift").await else {
        return;
    };
    let _op = w
        .operator_with(Options::new().env("VCO_DRIFT_CHECK_INTERVAL", "2s"))
        .await;
    w.one_password("drift", "ops_good").await;
    w.wait_reason("drift", "Synced").await;
    let (original, _) = w.read("drift").await.expect("written");

    common::ssm::overwrite(&w.ssm, &w.param("drift"), "tampered").await;
    let (value, version) = eventually(10, "the repair", || async {
        w.read("drift").await.filter(|(v, _)| *v != "tampered")
    })
    .await;
    assert_eq!(value, original);
    assert_eq!(version, 3, "1 = ours, 2 = tampered, 3 = repair");

    // Deleted out of band: the sweep finds it missing and the full check writes it again.
    common::ssm::delete(&w.ssm, &w.param("drift")).await;
    let (value, version) = eventually(10, "the parameter to be written again", || async {
        w.read("drift").await
    })
    .await;
    assert_eq!(
        (value, version),
        (original, 1),
        "a new parameter, ours again"
    );
    assert_eq!(
        w.tags("drift").await.get("managed-by").map(String::as_str),
        Some("vault-connection-operator")
    );
}

#[tokio::test]
async fn a_secret_without_the_opt_in_label_is_never_read() {
    let Some(w) = World::new("unlabelled").await else {
        return;
    };
    let _op = w.operator().await;
    w.apply_file("tests/fixtures/bad/unlabelled.yaml");
    let vc = w.wait_reason("unlabelled", "SecretNotLabeled").await;
    let (_, _, message) = cond(&vc, "Ready");
    assert!(message.contains("vaultconnections.io/credentials"));
    w.nothing_written("unlabelled").await;

    // Opting in later is picked up by the Secret watch.
    let label = json!({"metadata": {"labels": {"vaultconnections.io/credentials": "true"}}});
    w.patch_secret("plain", label).await;
    w.wait_reason("unlabelled", "Synced").await;
}

#[tokio::test]
async fn a_missing_secret_a_missing_key_and_an_invalid_credential_each_have_their_reason() {
    let Some(w) = World::new("reasons").await else {
        return;
    };
    let _op = w.operator().await;
    for file in ["no-secret", "no-key", "bad-token"] {
        w.apply_file(&format!("tests/fixtures/bad/{file}.yaml"));
    }
    for (name, reason, says) in [
        ("no-secret", "SecretNotFound", "Secret absent not found"),
        (
            "no-key",
            "MissingKey",
            "Secret/wrong-key[access_token]: key is missing",
        ),
        ("bad-token", "InvalidCredentials", "SCIM or audit token"),
    ] {
        let vc = w.wait_reason(name, reason).await;
        let (status, _, message) = cond(&vc, "Ready");
        assert_eq!(status, "False");
        assert!(message.contains(says), "{name}: {message}");
        let (valid, valid_reason, _) = cond(&vc, "Valid");
        assert_eq!((valid.as_str(), valid_reason.as_str()), ("False", reason));
        w.nothing_written(name).await;
    }
    // Creating the missing Secret fixes the first one without touching the connection.
    w.apply(Credentials::secret("absent").token("ops_now"))
        .await;
    w.wait_reason("no-secret", "Synced").await;
}

#[tokio::test]
async fn deletion_honours_the_policy_and_never_hangs() {
    let Some(w) = World::new("delete").await else {
        return;
    };
    let _op = w.operator().await;
    w.one_password("gone", "ops_a").await;
    w.apply(Credentials::secret("kept").token("ops_b")).await;
    w.apply(Connection::onepassword("kept").retain()).await;
    w.wait_reason("gone", "Synced").await;
    w.wait_reason("kept", "Synced").await;
    w.apply(Connection::onepassword("orphan").secret("never-created"))
        .await;
    w.wait_reason("orphan", "SecretNotFound").await;

    for name in ["gone", "kept", "orphan"] {
        w.delete(name).await;
    }
    for name in ["gone", "kept", "orphan"] {
        w.wait_gone(name).await;
    }
    assert_eq!(w.read("gone").await, None, "Delete removes the parameter");
    assert!(w.read("kept").await.is_some(), "Retain keeps the parameter");
}
