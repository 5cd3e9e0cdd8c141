//! The chart's values schema (charts/vault-connection-operator/values.schema.json) and
//! `helm lint`: good values pass, and every bad value is refused naming where it is. Needs only
//! the environment's helm (`hack/testenv.sh install`), no cluster.

mod common;

use common::chart::{CHART, Helm};

/// Lints each of CASES (values, what the error must mention) and fails once, listing every
/// values file that was accepted or refused without naming its problem.
fn assert_refused(helm: &Helm, cases: &[(&str, &str)]) {
    let mut wrong = Vec::new();
    for (values, expected) in cases {
        let out = helm.lint(values);
        let text = out.text();
        if out.success || !text.contains(expected) {
            wrong.push(format!(
                "values {values:?}: expected a failure mentioning {expected:?}, got: {text}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn helm_lint_accepts_the_default_values() {
    let Some(helm) = Helm::find() else {
        return;
    };
    helm.run(&["lint", CHART, "--strict"]).expect_success();
}

#[test]
fn helm_lint_rejects_a_replica_count_that_is_not_a_number() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let err = helm.lint("replicaCount: \"two\"\n").expect_failure();
    assert!(
        err.contains("/replicaCount"),
        "the error names the field: {err}"
    );
}

#[test]
fn helm_lint_rejects_a_default_tier_that_has_no_limit() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let err = helm
        .lint("operator:\n  defaultTier: gold\n")
        .expect_failure();
    assert!(
        err.contains("operator.defaultTier")
            && err.contains("gold")
            && err.contains("is not a key of operator.tierLimits"),
        "the error names the value and where tiers are defined: {err}"
    );
}

#[test]
fn the_values_schema_rejects_wrong_types_unknown_keys_and_malformed_flags() {
    let Some(helm) = Helm::find() else {
        return;
    };
    assert_refused(
        &helm,
        &[
            ("replicas: 2\n", "additional properties 'replicas'"),
            (
                "operator:\n  ssmPrefixx: /x\n",
                "additional properties 'ssmPrefixx'",
            ),
            (
                "operator:\n  tierLimits: {free: lots}\n",
                "/operator/tierLimits/free",
            ),
            (
                "operator:\n  tierLimits: {free: -1}\n",
                "/operator/tierLimits/free",
            ),
            (
                "operator:\n  tierLimits: {\"bad,tier\": 1}\n",
                "invalid propertyName 'bad,tier'",
            ),
            (
                "operator:\n  defaultTier: \"bad=tier\"\n",
                "/operator/defaultTier",
            ),
            ("operator:\n  logLevel: verbose\n", "/operator/logLevel"),
            ("operator:\n  logFormat: xml\n", "/operator/logFormat"),
            (
                "operator:\n  driftCheckInterval: 5 minutes\n",
                "/operator/driftCheckInterval",
            ),
            ("operator:\n  concurrency: 0\n", "/operator/concurrency"),
            ("operator:\n  ssmWriteRate: 0\n", "/operator/ssmWriteRate"),
            (
                "operator:\n  ssmPrefix: no-leading-slash\n",
                "/operator/ssmPrefix",
            ),
            (
                "operator:\n  watchNamespaces: [Team_A]\n",
                "/operator/watchNamespaces/0",
            ),
            (
                "operator:\n  watchNamespaces: team-a\n",
                "/operator/watchNamespaces",
            ),
            (
                "leaderElection:\n  enabled: \"auto\"\n",
                "/leaderElection/enabled",
            ),
            ("aws:\n  region: Frankfurt\n", "/aws/region"),
            ("extraEnv:\n  - value: x\n", "/extraEnv/0"),
            (
                "podAnnotations:\n  prometheus.io/port: 8080\n",
                "/podAnnotations/prometheus.io~1port",
            ),
            // ---- alerts and dashboard
            (
                "prometheusRule:\n  enabled: \"yes\"\n",
                "/prometheusRule/enabled",
            ),
            (
                "prometheusRule:\n  severityy: page\n",
                "additional properties 'severityy'",
            ),
            (
                "prometheusRule:\n  notReadyFor: 15 minutes\n",
                "/prometheusRule/notReadyFor",
            ),
            (
                "prometheusRule:\n  disabled: [VaultConnectionNotReadyy]\n",
                "/prometheusRule/disabled/0",
            ),
            (
                "prometheusRule:\n  alertLabels: {team: 1}\n",
                "/prometheusRule/alertLabels/team",
            ),
            (
                "prometheusRule:\n  alertLabels: {team-name: a}\n",
                "invalid propertyName 'team-name'",
            ),
            ("prometheusRule:\n  job: 'a\"b'\n", "/prometheusRule/job"),
            (
                "dashboard:\n  labels: {grafana_dashboard: 1}\n",
                "/dashboard/labels/grafana_dashboard",
            ),
            (
                "dashboard:\n  namespace: Monitoring\n",
                "/dashboard/namespace",
            ),
        ],
    );
}

#[test]
fn the_values_schema_rejects_malformed_policy_values() {
    let Some(helm) = Helm::find() else {
        return;
    };
    for (bad, expected) in [
        (
            "policy:\n  allowedKmsKeys: [\"a,b\"]\n",
            "/policy/allowedKmsKeys/0",
        ),
        (
            "policy:\n  allowedKmsKeys: [\"alias/a b\"]\n",
            "/policy/allowedKmsKeys/0",
        ),
        (
            "policy:\n  allowDopplerPersonalTokens: \"yes\"\n",
            "/policy/allowDopplerPersonalTokens",
        ),
        (
            "policy:\n  allowKms: []\n",
            "additional properties 'allowKms'",
        ),
    ] {
        let out = helm.lint(bad);
        let text = out.text();
        assert!(
            !out.success && text.contains(expected),
            "values {bad:?}: expected a failure mentioning {expected:?}, got: {text}"
        );
    }
}

#[test]
fn the_values_schema_refuses_a_plain_http_provider_url() {
    let Some(helm) = Helm::find() else {
        return;
    };
    for url in [
        "http://api.doppler.com",
        "https://user:pw@api.doppler.com",
        "api.doppler.com",
    ] {
        let err = helm
            .lint(&format!(
                "operator:\n  verification:\n    dopplerUrl: \"{url}\"\n"
            ))
            .expect_failure();
        assert!(err.contains("dopplerUrl"), "{url}: {err}");
    }
}
