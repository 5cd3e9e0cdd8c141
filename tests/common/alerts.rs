//! The chart's alerts and dashboard as Prometheus sees them: the rendered rule file, the
//! alerting rules by name, every dashboard query, and Prometheus' own promtool to check them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::chart::{FULLNAME, Helm};
use super::process::Output;
use super::tools;

/// The alerts the chart documents.
pub const ALERTS: [&str; 8] = [
    "VaultConnectionNotReady",
    "VaultConnectionDriftFound",
    "VaultConnectionDeletionsHeld",
    "VaultConnectionOperatorSsmErrors",
    "VaultConnectionOperatorSsmThrottled",
    "VaultConnectionOperatorReconcileErrors",
    "VaultConnectionOperatorNoLeader",
    "VaultConnectionOperatorDown",
];

/// The job the alerts select by default for the offline release: `<fullname>-metrics`.
pub const JOB: &str = "rel-vault-connection-operator-metrics";

/// The rendered PrometheusRule's `spec` (a Prometheus rule file: `groups`).
pub fn rendered_rules(helm: &Helm) -> Value {
    let r = helm.render(&["--set", "prometheusRule.enabled=true"]);
    r.find_in("PrometheusRule", FULLNAME, "ops")["spec"].clone()
}

/// The alerting rules by name.
pub fn alert_rules(rules: &Value) -> BTreeMap<String, Value> {
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| (r["alert"].as_str().expect("an alert").to_owned(), r.clone()))
        .collect()
}

/// Every PromQL query of the rendered dashboard, with Grafana's variables given values.
pub fn dashboard_queries(helm: &Helm) -> Vec<(String, String)> {
    let r = helm.render(&["--set", "dashboard.enabled=true"]);
    let cm = r.find_in("ConfigMap", &format!("{FULLNAME}-dashboard"), "ops");
    assert_eq!(
        cm["metadata"]["labels"]["grafana_dashboard"], "1",
        "the sidecar label"
    );
    let dashboard: Value = serde_json::from_str(
        cm["data"]["vault-connection-operator.json"]
            .as_str()
            .expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            queries.push((
                format!("panel {} {}", panel["title"], target["refId"]),
                expr.replace("$__rate_interval", "5m").replace("$job", ".+"),
            ));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(q) = var["query"]["query"].as_str() {
            // label_values(METRIC, LABEL) is Grafana's; what Prometheus evaluates is METRIC.
            let metric = q
                .trim_start_matches("label_values(")
                .split(',')
                .next()
                .unwrap_or_default()
                .to_owned();
            queries.push((format!("variable {}", var["name"]), metric));
        }
    }
    queries
}

/// Prometheus' promtool, as `hack/testenv.sh install` builds it.
pub struct Promtool(PathBuf);

impl Promtool {
    /// The installed promtool, or `None` after one line saying how to build it.
    pub fn find() -> Option<Promtool> {
        Some(Promtool(tools::tool("promtool")?))
    }

    /// `promtool ARGS`: (success, everything it printed).
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Output::of(Command::new(&self.0).args(args), None);
        let text = format!("{}{}", out.stdout, out.stderr);
        (out.success, text)
    }
}
