//! `/metrics`, `/healthz` and `/readyz`: the families operators alert on, and readiness that
//! means something.

mod common;

use std::time::Duration;

use common::operator::{free_port, http_get};
use common::{Connection, Options, TestEnv, World, eventually, unique};

#[tokio::test]
async fn metrics_report_reconciles_ssm_calls_and_connections_by_condition() {
    let Some(w) = World::new("metrics").await else {
        return;
    };
    let op = w.operator().await;
    w.one_password("good", "ops_m").await;
    w.apply(Connection::onepassword("orphan").secret("missing"))
        .await;
    let text = eventually(20, "both connections in the metrics", || async {
        let text = op.metrics_text().await;
        (text.contains(r#"vault_connection_operator_connections{condition="Ready",status="True",reason="Synced"} 1"#)
            && text.contains(r#"vault_connection_operator_connections{condition="Ready",status="False",reason="SecretNotFound"} 1"#)
            // The status lands before the reconcile is counted: wait for the counters too.
            && text.contains(r#"vault_connection_operator_reconciles_total{reason="Synced"}"#)
            && text.contains(r#"vault_connection_operator_reconciles_total{reason="SecretNotFound"}"#))
        .then_some(text)
    })
    .await;
    for family in [
        r#"vault_connection_operator_ssm_calls_total{operation="PutParameter",outcome="success"} 1"#,
        // The create looks before it writes, then reads back its version and time (both
        // without decryption).
        r#"vault_connection_operator_ssm_calls_total{operation="GetParameters",outcome="success"} 2"#,
        r#"vault_connection_operator_reconciles_total{reason="Synced"}"#,
        r#"vault_connection_operator_reconciles_total{reason="SecretNotFound"}"#,
        "vault_connection_operator_reconcile_duration_seconds_bucket{le=",
        "# HELP vault_connection_operator_ssm_calls SSM API calls by operation and outcome.",
        // The work queue: nothing waits once both are decided.
        "vault_connection_operator_queue_waiting 0",
        "vault_connection_operator_reconciles_running ",
    ] {
        assert!(text.contains(family), "missing {family:?} in:\n{text}");
    }
    let health = http_get(&format!("{}/healthz", op.metrics)).await;
    assert_eq!(health.map(|(code, _)| code), Some(200));
    let ready = http_get(&format!("{}/readyz", op.metrics)).await;
    assert_eq!(ready.map(|(code, _)| code), Some(200));
}

#[tokio::test]
async fn readiness_waits_for_the_api_server_while_liveness_answers() {
    let Some(env) = TestEnv::live() else {
        return;
    };
    // A kubeconfig that points at a port where nothing listens.
    let dead = free_port();
    let text = std::fs::read_to_string(&env.kubeconfig).expect("the kubeconfig");
    let broken = with_server(&text, &format!("https://127.0.0.1:{dead}"));
    let scratch = common::Scratch::new("dead");
    let path = scratch.write("kubeconfig", &broken);
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vault-connection-operator"))
        .arg("run")
        .envs(env.child_env())
        .env("KUBECONFIG", &path)
        .env("VCO_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("VCO_SSM_PREFIX", format!("/{}", unique("dead")))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the operator");
    let base = format!("http://127.0.0.1:{port}");
    let health = eventually(10, "/healthz to answer", || async {
        http_get(&format!("{base}/healthz")).await
    })
    .await;
    assert_eq!(health.0, 200, "alive");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready = http_get(&format!("{base}/readyz")).await;
    assert_eq!(
        ready.map(|(code, _)| code),
        Some(503),
        "not ready without an API server"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_standby_replica_is_ready_while_it_waits_for_the_lease() {
    let Some(w) = World::new("standby").await else {
        return;
    };
    let opts = Options::new().leader_election(&w.ns, &unique("lease"));
    let leader = w.operator_with(opts.clone()).await;
    eventually(15, "the first replica to lead", || async {
        leader.leads().then_some(())
    })
    .await;
    // Operator::start returns only once /readyz answers 200.
    let standby = w.operator_with(opts).await;
    assert!(standby.logs().contains("standing by for leadership"));
    assert!(!standby.leads());
    // The leader gauge tells them apart (the chart's no-leader alert sums it).
    let gauge = |text: String| {
        text.lines()
            .find_map(|l| l.strip_prefix("vault_connection_operator_leader "))
            .map(str::to_owned)
    };
    assert_eq!(gauge(leader.metrics_text().await).as_deref(), Some("1"));
    assert_eq!(gauge(standby.metrics_text().await).as_deref(), Some("0"));
}

/// The kubeconfig with its `server:` line replaced.
fn with_server(kubeconfig: &str, server: &str) -> String {
    kubeconfig
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("server:") {
                format!("    server: {server}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
