//! The Argo CD health check shipped with the chart (docs/argocd-health.lua) gives the verdicts the
//! chart's README promises, evaluated as Argo CD evaluates it: by gopher-lua (Lua 5.1) with only
//! the libraries Argo CD opens, through the `vco-ecosystem argocd-health` helper (built by
//! `hack/testenv.sh install`; no cluster needed). The same script is run over live objects in
//! tests/ecosystem_status.rs.

mod common;

use serde_json::{Value, json};

use common::Scratch;
use common::ecosystem::Ecosystem;

fn connection(generation: i64, status: Value) -> Value {
    json!({
        "apiVersion": "vaultconnections.io/v1alpha1",
        "kind": "VaultConnection",
        "metadata": {"name": "doppler-production", "namespace": "team-a", "generation": generation},
        "spec": {"vaultType": "doppler"},
        "status": status,
    })
}

fn cond(type_: &str, status: &str, reason: &str, message: Option<&str>, observed: i64) -> Value {
    let mut c =
        json!({"type": type_, "status": status, "reason": reason, "observedGeneration": observed});
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// A status as operators before Stalled/Reconciling wrote it: Valid and Ready only.
fn ready_only(status: &str, reason: &str, message: Option<&str>, observed: i64) -> Value {
    json!({
        "observedGeneration": observed,
        "conditions": [
            cond("Valid", "True", "Valid", Some("spec is valid"), observed),
            cond("Ready", status, reason, message, observed),
        ],
    })
}

/// A status with kstatus' abnormal-true conditions next to Ready.
fn with_kstatus(ready: &str, reason: &str, stalled: bool, reconciling: bool) -> Value {
    let tf = |b: bool| if b { "True" } else { "False" };
    json!({
        "observedGeneration": 3,
        "conditions": [
            cond("Ready", ready, reason, Some("what happened"), 3),
            cond("Stalled", tf(stalled), reason, Some("what happened"), 3),
            cond("Reconciling", tf(reconciling), reason, Some("what happened"), 3),
        ],
    })
}

fn check(
    eco: &Ecosystem,
    name: &str,
    obj: Value,
    status: &str,
    message: Option<&str>,
) -> Option<String> {
    let got = eco.argocd_health(&obj);
    let ok = got.status == status && message.is_none_or(|m| got.message == m);
    (!ok).then(|| format!("{name}: got {got:?}, want {status} {message:?}"))
}

#[test]
fn argo_cd_health_check_maps_ready_only_statuses_to_health() {
    let Some(eco) = Ecosystem::find() else {
        return;
    };
    let cases = [
        (
            "a Ready connection is Healthy with the Ready message",
            connection(
                3,
                ready_only("True", "Synced", Some("credentials stored in SSM"), 3),
            ),
            "Healthy",
            Some("credentials stored in SSM"),
        ),
        (
            "invalid credentials are Degraded with reason and message",
            connection(
                3,
                ready_only(
                    "False",
                    "InvalidCredentials",
                    Some("accessToken must start with dp.st."),
                    3,
                ),
            ),
            "Degraded",
            Some("InvalidCredentials: accessToken must start with dp.st."),
        ),
        (
            "a tier limit is Degraded",
            connection(
                3,
                ready_only("False", "TierLimitExceeded", Some("tier free allows 1"), 3),
            ),
            "Degraded",
            Some("TierLimitExceeded: tier free allows 1"),
        ),
        (
            "throttling is Progressing (the operator retries)",
            connection(
                3,
                ready_only(
                    "False",
                    "Throttled",
                    Some("SSM throttled the write; retrying"),
                    3,
                ),
            ),
            "Progressing",
            Some("Throttled: SSM throttled the write; retrying"),
        ),
        (
            "a failed sync is Progressing (the operator retries)",
            connection(
                3,
                ready_only("False", "SyncFailed", Some("SSM did not answer"), 3),
            ),
            "Progressing",
            None,
        ),
        (
            "no status yet is Progressing, waiting for the operator",
            connection(1, Value::Null),
            "Progressing",
            Some("Waiting for the operator"),
        ),
        (
            "a status for an older generation is Progressing, even if it said Ready",
            connection(
                4,
                ready_only("True", "Synced", Some("credentials stored in SSM"), 3),
            ),
            "Progressing",
            Some("Waiting for the operator"),
        ),
        (
            "a status without observedGeneration is Progressing",
            connection(
                2,
                json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "ok"}]}),
            ),
            "Progressing",
            Some("Waiting for the operator"),
        ),
        (
            "a Ready condition older than the status is Progressing",
            connection(
                4,
                json!({"observedGeneration": 4, "conditions": [cond("Ready", "False", "SecretNotFound", Some("x"), 3)]}),
            ),
            "Progressing",
            Some("Waiting for the operator"),
        ),
        (
            "Ready=Unknown is Progressing",
            connection(
                3,
                ready_only("Unknown", "Reconciling", Some("validating the spec"), 3),
            ),
            "Progressing",
            Some("Reconciling: validating the spec"),
        ),
        (
            "a status without a Ready condition is Progressing",
            connection(3, json!({"observedGeneration": 3, "conditions": []})),
            "Progressing",
            Some("Waiting for the operator"),
        ),
        (
            "Ready=False without a message still names the reason",
            connection(3, ready_only("False", "AccessDenied", None, 3)),
            "Degraded",
            Some("AccessDenied"),
        ),
    ];
    let failures: Vec<String> = cases
        .into_iter()
        .filter_map(|(name, obj, status, message)| check(&eco, name, obj, status, message))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn argo_cd_health_check_follows_stalled_and_reconciling_over_the_reason() {
    let Some(eco) = Ecosystem::find() else {
        return;
    };
    let cases = [
        (
            "Stalled=True is Degraded even for a reason the old table calls transient",
            connection(3, with_kstatus("False", "SyncFailed", true, false)),
            "Degraded",
            Some("SyncFailed: what happened"),
        ),
        (
            "Reconciling=True is Progressing even for a reason the old table calls permanent",
            connection(3, with_kstatus("False", "AccessDenied", false, true)),
            "Progressing",
            Some("AccessDenied: what happened"),
        ),
        (
            "Ready=True with Stalled and Reconciling False is Healthy",
            connection(3, with_kstatus("True", "Synced", false, false)),
            "Healthy",
            Some("what happened"),
        ),
        (
            "a Stalled condition from an older generation is Progressing",
            connection(
                4,
                json!({"observedGeneration": 4, "conditions": [
                    cond("Ready", "False", "MissingKey", Some("m"), 4),
                    cond("Stalled", "True", "MissingKey", Some("m"), 3),
                ]}),
            ),
            "Progressing",
            Some("Waiting for the operator"),
        ),
    ];
    let failures: Vec<String> = cases
        .into_iter()
        .filter_map(|(name, obj, status, message)| check(&eco, name, obj, status, message))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_health_check_runs_without_the_libraries_argo_cd_leaves_out() {
    let Some(eco) = Ecosystem::find() else {
        return;
    };
    // The evaluator really withholds them: a script using the string library fails there, so a
    // passing health check proves ours does not depend on it.
    let scratch = Scratch::new("vco-lua");
    let script = scratch.write(
        "uses-string.lua",
        "return { status = string.upper(\"healthy\") }\n",
    );
    let script = script.to_str().expect("UTF-8 path");
    let out = eco.run(&["argocd-health", script], &connection(1, Value::Null));
    assert!(!out.success, "string library must be absent");
    assert!(
        out.stderr
            .contains("non-table object(nil) with key 'upper'"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_argocd_cm_example_carries_the_tested_health_check() {
    let docs = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/vault-connection-operator/docs"
    );
    let script =
        std::fs::read_to_string(format!("{docs}/argocd-health.lua")).expect("argocd-health.lua");
    let cm: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{docs}/argocd-cm.yaml")).expect("argocd-cm.yaml"),
    )
    .expect("argocd-cm.yaml is YAML");
    let key = "resource.customizations.health.vaultconnections.io_VaultConnection";
    assert_eq!(
        cm["data"][key].as_str(),
        Some(script.as_str()),
        "argocd-cm.yaml must embed docs/argocd-health.lua verbatim under {key}"
    );
}
