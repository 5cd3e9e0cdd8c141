//! The chart's alerts and dashboard (prometheusRule.*, dashboard.*) as rendered, checked by
//! Prometheus' own promtool: the rules and every dashboard query must parse (`promtool check
//! rules`), disabled alerts are left out, and the dashboard's ConfigMap lands where Grafana's
//! sidecar looks. Rendering and promtool need no cluster. That each alert fires on a real
//! operator's series, and only then: tests/alerts_fire.rs.

mod common;

use std::collections::BTreeSet;

use serde_json::{Value, json};

use common::alerts::{ALERTS, Promtool, alert_rules, dashboard_queries, rendered_rules};
use common::chart::{FULLNAME, Helm, parse_documents};
use common::{Scratch, World};

#[test]
fn promtool_accepts_the_alert_rules_and_every_dashboard_query() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let Some(promtool) = Promtool::find() else {
        return;
    };
    let scratch = Scratch::new("vco-alerts");
    let rules = rendered_rules(&helm);
    assert_eq!(
        alert_rules(&rules).keys().cloned().collect::<BTreeSet<_>>(),
        ALERTS.iter().map(|s| s.to_string()).collect(),
        "the chart renders exactly the documented alerts"
    );
    let file = scratch.write("rules.yaml", &serde_yaml::to_string(&rules).expect("YAML"));
    let (ok, out) = promtool.run(&["check", "rules", file.to_str().expect("UTF-8")]);
    assert!(ok, "promtool check rules: {out}");

    // Dashboard queries as recording rules, so promtool parses each one.
    let records: Vec<Value> = dashboard_queries(&helm)
        .into_iter()
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("dashboard:query_{i}"), "expr": expr}))
        .collect();
    let file = scratch.write(
        "dashboard-rules.yaml",
        &serde_yaml::to_string(&json!({"groups": [{"name": "dashboard", "rules": records}]}))
            .expect("YAML"),
    );
    let (ok, out) = promtool.run(&["check", "rules", file.to_str().expect("UTF-8")]);
    assert!(ok, "promtool check rules (dashboard queries): {out}");
}

#[test]
fn disabled_alerts_are_left_out_and_alert_labels_are_added() {
    let Some(helm) = Helm::find() else {
        return;
    };
    let r = helm.render(&[
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.disabled={VaultConnectionOperatorSsmThrottled}",
        "--set",
        "prometheusRule.alertLabels.team=platform",
        "--set",
        "prometheusRule.job=custom",
    ]);
    let rules = r.find_in("PrometheusRule", FULLNAME, "ops");
    let alerts = alert_rules(&rules["spec"]);
    assert!(!alerts.contains_key("VaultConnectionOperatorSsmThrottled"));
    assert_eq!(alerts.len(), ALERTS.len() - 1);
    for (name, rule) in &alerts {
        assert_eq!(rule["labels"]["team"], "platform", "{name}");
        assert!(
            rule["expr"]
                .as_str()
                .is_some_and(|e| e.contains(r#"job="custom""#)),
            "{name}: {}",
            rule["expr"]
        );
    }
}

#[tokio::test]
async fn the_dashboard_config_map_is_accepted_by_the_api_server_where_the_sidecar_looks() {
    let Some(w) = World::new("dashboard").await else {
        return;
    };
    let Some(helm) = Helm::find() else {
        return;
    };
    let grafana = w.namespace("grafana").await;
    let manifests = helm.template(
        "rel",
        &w.ns,
        &[
            "--set",
            "dashboard.enabled=true",
            "--set",
            &format!("dashboard.namespace={grafana}"),
            "--show-only",
            "templates/dashboard.yaml",
        ],
    );
    let out = w
        .env
        .kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], &manifests)
        .expect_success();
    assert!(
        out.contains("configmap/rel-vault-connection-operator-dashboard created (server dry run)"),
        "{out}"
    );
    let objects = parse_documents(&manifests);
    assert_eq!(objects[0]["metadata"]["namespace"], grafana.as_str());
}
