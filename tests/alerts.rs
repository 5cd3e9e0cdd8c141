//! The chart's alerts and dashboard (prometheusRule.*, dashboard.*) checked by Prometheus' own
//! promtool: the rules and every dashboard query must parse (`promtool check rules`), and each
//! alert must fire — and only then — on series scraped from the real operator's /metrics while
//! it fails in that way (`promtool test rules`). The scrapes are taken live in the test, so the
//! metric names and labels the alerts use cannot drift from what the operator exports.

mod chart_support;
mod common;
mod ecosystem;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use chart_support::{find, template};
use common::{Operator, OperatorOptions, TestEnv, eventually, install_crd, namespace, unique};

/// The release name used for rendering; the alerts select `job="<fullname>-metrics"`.
const RELEASE: &str = "rel";
const JOB: &str = "rel-vault-connection-operator-metrics";

const ALERTS: [&str; 7] = [
    "VaultConnectionNotReady",
    "VaultConnectionDriftFound",
    "VaultConnectionOperatorSsmErrors",
    "VaultConnectionOperatorSsmThrottled",
    "VaultConnectionOperatorReconcileErrors",
    "VaultConnectionOperatorNoLeader",
    "VaultConnectionOperatorDown",
];

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(unique("vco-alerts"));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The rendered PrometheusRule's `spec` (a Prometheus rule file: `groups`).
fn rendered_rules(env: &TestEnv) -> Value {
    let objects = template(
        env,
        RELEASE,
        "ops",
        &["--set", "prometheusRule.enabled=true"],
    );
    find(
        &objects,
        "PrometheusRule",
        "rel-vault-connection-operator",
        Some("ops"),
    )["spec"]
        .clone()
}

/// The alerting rules by name.
fn alert_rules(rules: &Value) -> BTreeMap<String, Value> {
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| (r["alert"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

/// Every PromQL query of the rendered dashboard, with Grafana's variables given values.
fn dashboard_queries(env: &TestEnv) -> Vec<(String, String)> {
    let objects = template(env, RELEASE, "ops", &["--set", "dashboard.enabled=true"]);
    let cm = find(
        &objects,
        "ConfigMap",
        "rel-vault-connection-operator-dashboard",
        Some("ops"),
    );
    assert_eq!(
        cm["metadata"]["labels"]["grafana_dashboard"], "1",
        "the sidecar label"
    );
    let dashboard: Value = serde_json::from_str(
        cm["data"]["vault-connection-operator.json"]
            .as_str()
            .unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            queries.push((
                format!("panel {} {}", panel["title"], target["refId"]),
                expr.replace("$__rate_interval", "5m").replace("$job", ".+"),
            ));
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"]["query"].as_str() {
            // label_values(METRIC, LABEL) is Grafana's; what Prometheus evaluates is METRIC.
            let metric = q
                .trim_start_matches("label_values(")
                .split(',')
                .next()
                .unwrap()
                .to_owned();
            queries.push((format!("variable {}", var["name"]), metric));
        }
    }
    queries
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(ecosystem::tool("promtool"))
        .args(args)
        .output()
        .expect("run promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn promtool_accepts_the_alert_rules_and_every_dashboard_query() {
    let env = TestEnv::get();
    let scratch = Scratch::new();
    let rules = rendered_rules(&env);
    assert_eq!(
        alert_rules(&rules).keys().cloned().collect::<BTreeSet<_>>(),
        ALERTS.iter().map(|s| s.to_string()).collect(),
        "the chart renders exactly the documented alerts"
    );
    let file = scratch.write("rules.yaml", &serde_yaml::to_string(&rules).unwrap());
    let (ok, out) = promtool(&["check", "rules", file.to_str().unwrap()]);
    assert!(ok, "promtool check rules: {out}");

    // Dashboard queries as recording rules, so promtool parses each one.
    let records: Vec<Value> = dashboard_queries(&env)
        .into_iter()
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("dashboard:query_{i}"), "expr": expr}))
        .collect();
    let file = scratch.write(
        "dashboard-rules.yaml",
        &serde_yaml::to_string(&json!({"groups": [{"name": "dashboard", "rules": records}]}))
            .unwrap(),
    );
    let (ok, out) = promtool(&["check", "rules", file.to_str().unwrap()]);
    assert!(ok, "promtool check rules (dashboard queries): {out}");
}

#[test]
fn disabled_alerts_are_left_out_and_alert_labels_are_added() {
    let env = TestEnv::get();
    let objects = template(
        &env,
        RELEASE,
        "ops",
        &[
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "prometheusRule.disabled={VaultConnectionOperatorSsmThrottled}",
            "--set",
            "prometheusRule.alertLabels.team=platform",
            "--set",
            "prometheusRule.job=custom",
        ],
    );
    let rules = find(
        &objects,
        "PrometheusRule",
        "rel-vault-connection-operator",
        Some("ops"),
    );
    let alerts = alert_rules(&rules["spec"]);
    assert!(!alerts.contains_key("VaultConnectionOperatorSsmThrottled"));
    assert_eq!(alerts.len(), ALERTS.len() - 1);
    for (name, rule) in &alerts {
        assert_eq!(rule["labels"]["team"], "platform", "{name}");
        assert!(
            rule["expr"].as_str().unwrap().contains(r#"job="custom""#),
            "{name}: {}",
            rule["expr"]
        );
    }
}

#[tokio::test]
async fn the_dashboard_config_map_is_accepted_by_the_api_server_where_the_sidecar_looks() {
    let env = TestEnv::get();
    let client = env.kube().await;
    let ns = namespace(&client, "dashboard").await;
    let grafana = namespace(&client, "grafana").await;
    let manifests = chart_support::template_text(
        &env,
        RELEASE,
        &ns,
        &[
            "--set",
            "dashboard.enabled=true",
            "--set",
            &format!("dashboard.namespace={grafana}"),
            "--show-only",
            "templates/dashboard.yaml",
        ],
    );
    let out = chart_support::run(
        &env,
        "kubectl",
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&manifests),
    )
    .expect_success();
    assert!(
        out.contains("configmap/rel-vault-connection-operator-dashboard created (server dry run)"),
        "{out}"
    );
    let objects = chart_support::parse_documents(&manifests);
    assert_eq!(objects[0]["metadata"]["namespace"], grafana.as_str());
}

// ---- live scrapes -----------------------------------------------------------------------------

/// One sample of a scrape: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text format as the operator writes it (no escapes in label values,
/// no timestamps), skipping comments and the OpenMetrics `# EOF`.
fn parse_scrape(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (
                    name,
                    rest.trim_end_matches('}')
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').expect("label=value");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect(),
                ),
                None => (series, BTreeMap::new()),
            };
            (name.to_owned(), labels, value.parse().expect("a number"))
        })
        .collect()
}

/// Two scrapes of one operator, some seconds apart, as Prometheus would label them.
struct Scrapes {
    instance: String,
    before: Vec<Sample>,
    after: Vec<Sample>,
    /// Whether the target answered (Prometheus' `up`).
    up: bool,
}

impl Scrapes {
    /// The value of the sample NAME with the given labels in a scrape.
    fn value(samples: &[Sample], name: &str, labels: &BTreeMap<String, String>) -> Option<f64> {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|(_, _, v)| *v)
    }

    /// How much the counter NAME grew between the scrapes, per label set.
    fn growth(&self, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        self.after
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| {
                (
                    l.clone(),
                    v - Self::value(&self.before, name, l).unwrap_or(0.0),
                )
            })
            .collect()
    }

    /// promtool input series: one step per minute for an hour. A counter grows each minute by
    /// what it grew between the two real scrapes (the alerts test for a rate above zero, so the
    /// time scale does not matter); a gauge keeps its last value; `up` is whether it answered.
    fn input_series(&self) -> Vec<Value> {
        let mut series: Vec<Value> = self
            .after
            .iter()
            .map(|(name, labels, v)| {
                let mut labels = labels.clone();
                let counter = name.ends_with("_total")
                    || name.ends_with("_bucket")
                    || name.ends_with("_count")
                    || name.ends_with("_sum");
                let values = if counter {
                    let before = Self::value(&self.before, name, &labels).unwrap_or(0.0);
                    format!("{before}+{}x60", v - before)
                } else {
                    format!("{v}x60")
                };
                labels.insert("job".into(), JOB.into());
                labels.insert("instance".into(), self.instance.clone());
                json!({"series": selector(name, &labels), "values": values})
            })
            .collect();
        let up = BTreeMap::from([
            ("job".to_owned(), JOB.to_owned()),
            ("instance".to_owned(), self.instance.clone()),
        ]);
        series.push(json!({
            "series": selector("up", &up),
            "values": format!("{}x60", u8::from(self.up)),
        }));
        series
    }
}

fn selector(name: &str, labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Scrapes `op` now and again once `grown` holds for the second scrape (polling up to 60 s).
async fn scrape(op: &Operator, instance: &str, grown: impl Fn(&Scrapes) -> bool) -> Scrapes {
    let before = parse_scrape(&op.metrics_text().await);
    eventually(60, &format!("{instance}'s counters to grow"), || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = Scrapes {
            instance: instance.to_owned(),
            before: before.clone(),
            after: parse_scrape(&op.metrics_text().await),
            up: true,
        };
        grown(&s).then_some(s)
    })
    .await
}

/// The labels and annotations promtool must report for `alert` with `labels` and `value`:
/// the rule's own labels, and its annotations with `$labels.X` and `$value` filled in.
fn expect(rules: &Value, alert: &str, labels: &[(&str, &str)], value: &str) -> Value {
    let rule = &alert_rules(rules)[alert];
    let mut exp_labels = rule["labels"].as_object().unwrap().clone();
    for (k, v) in labels {
        exp_labels.insert((*k).to_owned(), json!(v));
    }
    let fill = |text: &str| {
        let mut text = text.replace("{{ $value }}", value);
        for (k, v) in labels {
            text = text.replace(&format!("{{{{ $labels.{k} }}}}"), v);
        }
        text
    };
    let annotations: serde_json::Map<String, Value> = rule["annotations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), json!(fill(v.as_str().unwrap()))))
        .collect();
    json!({"exp_labels": exp_labels, "exp_annotations": annotations})
}

/// A promtool test case: `firing` alerts (with their expected labels) at 60 minutes, every
/// other alert silent; and nothing firing yet at `quiet_until` minutes.
fn case(
    name: &str,
    scrapes: &[&Scrapes],
    firing: &BTreeMap<&str, Vec<Value>>,
    quiet_until: u32,
) -> Value {
    let series: Vec<Value> = scrapes.iter().flat_map(|s| s.input_series()).collect();
    let mut checks = Vec::new();
    for alert in ALERTS {
        checks.push(json!({
            "eval_time": "60m",
            "alertname": alert,
            "exp_alerts": firing.get(alert).cloned().unwrap_or_default(),
        }));
        checks.push(
            json!({"eval_time": format!("{quiet_until}m"), "alertname": alert, "exp_alerts": []}),
        );
    }
    json!({"name": name, "interval": "1m", "input_series": series, "alert_rule_test": checks})
}

/// An SSM endpoint answering every call with the AWS JSON error `code`.
async fn ssm_answering(code: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| async move {
                    let body = format!(r#"{{"__type":"{code}","message":"answered by the test"}}"#);
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = StatusCode::BAD_REQUEST;
                    response.headers_mut().insert(
                        "content-type",
                        "application/x-amz-json-1.1".parse().unwrap(),
                    );
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn onepassword(name: &str, key: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: {name}, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{{key}: "ops_value"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: {name}}}
spec: {{vaultType: onepassword, credentialsSecretRef: {{name: {name}}}}}
---
"#
    )
}

fn opts(env: &[(&str, &str)]) -> OperatorOptions {
    OperatorOptions {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// Operations whose `outcome` counter grew, by name.
fn grew(s: &Scrapes, outcome: &str) -> BTreeSet<String> {
    s.growth("vault_connection_operator_ssm_calls_total")
        .into_iter()
        .filter(|(l, d)| l["outcome"] == outcome && *d > 0.0)
        .map(|(l, _)| l["operation"].clone())
        .collect()
}

fn reasons_grown(s: &Scrapes, name: &str) -> BTreeSet<String> {
    s.growth(name)
        .into_iter()
        .filter(|(_, d)| *d > 0.0)
        .map(|(l, _)| l["reason"].clone())
        .collect()
}

/// Drift results other than `unchanged` whose count grew.
fn drift_found(s: &Scrapes) -> BTreeSet<String> {
    s.growth("vault_connection_operator_drift_checked_total")
        .into_iter()
        .filter(|(l, d)| l["result"] != "unchanged" && *d > 0.0)
        .map(|(l, _)| l["result"].clone())
        .collect()
}

/// Not-ready connections by Ready reason in the last scrape.
fn not_ready(s: &Scrapes) -> BTreeMap<String, f64> {
    s.after
        .iter()
        .filter(|(n, l, v)| {
            n == "vault_connection_operator_connections" && l["status"] != "True" && *v > 0.0
        })
        .map(|(_, l, v)| (l["reason"].clone(), *v))
        .collect()
}

#[tokio::test]
async fn each_alert_fires_on_series_scraped_from_an_operator_failing_that_way_and_no_sooner() {
    let env = TestEnv::get();
    let client = env.kube().await;
    install_crd(&client).await;
    let rules = rendered_rules(&env);
    let metric_names: BTreeSet<String> = {
        let text = serde_json::to_string(&rules).unwrap()
            + &dashboard_queries(&env)
                .into_iter()
                .map(|(_, q)| q)
                .collect::<String>();
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("vault_connection_operator_"))
            .map(str::to_owned)
            .collect()
    };

    // Healthy: one synced connection, SSM answering.
    let ns = namespace(&client, "alerts-ok").await;
    let healthy = Operator::start(&env, &ns, &format!("/{}", unique("a")), &opts(&[])).await;
    env.apply(&ns, &onepassword("ok", "access_token"));
    let healthy = scrape(&healthy, "healthy", |s| {
        not_ready(s).is_empty()
            && s.growth("vault_connection_operator_reconciles_total")
                .iter()
                .any(|(l, _)| l["reason"] == "Synced")
    })
    .await;

    // Throttled: SSM throttles every call; one connection also misses its key. Leader election
    // on, with a standby replica for the no-leader case.
    let ns = namespace(&client, "alerts-throttled").await;
    let lease = unique("lease");
    let leading = [
        (
            "AWS_ENDPOINT_URL_SSM",
            ssm_answering("ThrottlingException").await,
        ),
        ("VCO_LEADER_ELECTION", "true".to_owned()),
        ("VCO_LEASE_NAMESPACE", ns.clone()),
        ("VCO_LEASE_NAME", lease.clone()),
    ];
    let leading: Vec<(&str, &str)> = leading.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let prefix = format!("/{}", unique("a"));
    let leader = Operator::start(&env, &ns, &prefix, &opts(&leading)).await;
    eventually(20, "the first replica to lead", || async {
        leader.logs().contains("became leader").then_some(())
    })
    .await;
    let standby = Operator::start(&env, &ns, &prefix, &opts(&leading)).await;
    env.apply(
        &ns,
        &(onepassword("throttled", "access_token") + &onepassword("keyless", "token")),
    );
    let throttled = scrape(&leader, "leader", |s| {
        // Both connections have reported (a connection not reconciled yet counts as Pending).
        !grew(s, "throttled").is_empty()
            && not_ready(s).keys().eq(["MissingKey", "Throttled"].iter())
    })
    .await;
    let standby = scrape(&standby, "standby", |_| true).await;

    // Failing: nothing listens where SSM should be.
    let ns = namespace(&client, "alerts-down").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut failing = Operator::start(
        &env,
        &ns,
        &format!("/{}", unique("a")),
        &opts(&[
            ("AWS_ENDPOINT_URL_SSM", &nowhere),
            ("VCO_SSM_TIMEOUT", "1s"),
        ]),
    )
    .await;
    env.apply(&ns, &onepassword("unreachable", "access_token"));
    let erroring = scrape(&failing, "failing", |s| {
        !grew(s, "error").is_empty() && not_ready(s).contains_key("SyncFailed")
    })
    .await;
    // Down: the same operator stopped; Prometheus' scrape fails.
    failing.kill();
    assert!(failing.metrics_text().await.is_empty(), "the scrape fails");
    let down = Scrapes {
        instance: "failing".into(),
        before: Vec::new(),
        after: Vec::new(),
        up: false,
    };

    // Drift: a parameter written around the operator (its tags left in place) is found by the
    // next sweep and repaired.
    let ns = namespace(&client, "alerts-drift").await;
    let drift_prefix = format!("/{}", unique("a"));
    let drifting = Operator::start(
        &env,
        &ns,
        &drift_prefix,
        &opts(&[("VCO_DRIFT_CHECK_INTERVAL", "2s")]),
    )
    .await;
    env.apply(&ns, &onepassword("drifted", "access_token"));
    let ssm = env.ssm().await;
    let name = format!("{drift_prefix}/default/{ns}/drifted");
    eventually(20, "the parameter to be written", || async {
        ssm.get_parameter().name(&name).send().await.ok()
    })
    .await;
    let before_drift = parse_scrape(&drifting.metrics_text().await);
    ssm.put_parameter()
        .name(&name)
        .value("written around the operator")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .expect("out-of-band write");
    let drifted = eventually(30, "the drift to be found", || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = Scrapes {
            instance: "drifting".to_owned(),
            before: before_drift.clone(),
            after: parse_scrape(&drifting.metrics_text().await),
            up: true,
        };
        (!drift_found(&s).is_empty() && not_ready(&s).is_empty()).then_some(s)
    })
    .await;

    // What the operator exports covers every metric the alerts and the dashboard use.
    let exported: BTreeSet<String> = [&healthy, &throttled, &standby, &erroring, &drifted]
        .iter()
        .flat_map(|s| s.after.iter().map(|(n, _, _)| n.clone()))
        .collect();
    let missing: Vec<&String> = metric_names
        .iter()
        .filter(|m| !exported.contains(*m))
        .collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}");

    // The expected alerts, from what the scrapes show.
    let mut firing_throttled: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (reason, count) in not_ready(&throttled) {
        firing_throttled
            .entry("VaultConnectionNotReady")
            .or_default()
            .push(expect(
                &rules,
                "VaultConnectionNotReady",
                &[("reason", &reason)],
                &count.to_string(),
            ));
    }
    for op in grew(&throttled, "throttled") {
        firing_throttled
            .entry("VaultConnectionOperatorSsmThrottled")
            .or_default()
            .push(expect(
                &rules,
                "VaultConnectionOperatorSsmThrottled",
                &[("operation", &op)],
                "",
            ));
    }
    for reason in reasons_grown(
        &throttled,
        "vault_connection_operator_reconcile_errors_total",
    ) {
        firing_throttled
            .entry("VaultConnectionOperatorReconcileErrors")
            .or_default()
            .push(expect(
                &rules,
                "VaultConnectionOperatorReconcileErrors",
                &[("reason", &reason)],
                "",
            ));
    }
    assert_eq!(
        not_ready(&throttled).keys().cloned().collect::<Vec<_>>(),
        ["MissingKey", "Throttled"],
        "the failing state this test means"
    );
    let mut firing_errors: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (reason, count) in not_ready(&erroring) {
        firing_errors
            .entry("VaultConnectionNotReady")
            .or_default()
            .push(expect(
                &rules,
                "VaultConnectionNotReady",
                &[("reason", &reason)],
                &count.to_string(),
            ));
    }
    for op in grew(&erroring, "error") {
        firing_errors
            .entry("VaultConnectionOperatorSsmErrors")
            .or_default()
            .push(expect(
                &rules,
                "VaultConnectionOperatorSsmErrors",
                &[("operation", &op)],
                "",
            ));
    }
    for reason in reasons_grown(
        &erroring,
        "vault_connection_operator_reconcile_errors_total",
    ) {
        firing_errors
            .entry("VaultConnectionOperatorReconcileErrors")
            .or_default()
            .push(expect(
                &rules,
                "VaultConnectionOperatorReconcileErrors",
                &[("reason", &reason)],
                "",
            ));
    }
    let firing_drift: BTreeMap<&str, Vec<Value>> = BTreeMap::from([(
        "VaultConnectionDriftFound",
        drift_found(&drifted)
            .iter()
            .map(|result| {
                expect(
                    &rules,
                    "VaultConnectionDriftFound",
                    &[("result", result)],
                    "",
                )
            })
            .collect(),
    )]);
    assert_eq!(
        drift_found(&drifted).into_iter().collect::<Vec<_>>(),
        ["changed"],
        "the drift this test means"
    );
    let no_leader = BTreeMap::from([(
        "VaultConnectionOperatorNoLeader",
        vec![expect(&rules, "VaultConnectionOperatorNoLeader", &[], "")],
    )]);
    let operator_down = BTreeMap::from([(
        "VaultConnectionOperatorDown",
        // absent() over a comparison carries no labels of its own.
        vec![expect(&rules, "VaultConnectionOperatorDown", &[], "")],
    )]);

    let scratch = Scratch::new();
    let rules_file = scratch.write("rules.yaml", &serde_yaml::to_string(&rules).unwrap());
    let tests = json!({
        "rule_files": [rules_file],
        "evaluation_interval": "1m",
        "tests": [
            case("a healthy operator raises nothing", &[&healthy], &BTreeMap::new(), 59),
            // The standby scrapes too: one leader among two replicas is fine.
            case("SSM throttling and a missing key", &[&throttled, &standby], &firing_throttled, 4),
            case("SSM unreachable", &[&erroring], &firing_errors, 4),
            case("replicas up but none leads", &[&standby], &no_leader, 4),
            case("the operator's scrape fails", &[&down], &operator_down, 4),
            // A security event: it fires on the first evaluation after the sweep found it.
            case("a parameter written around the operator", &[&drifted], &firing_drift, 0),
        ],
    });
    let tests_file = scratch.write("tests.yaml", &serde_yaml::to_string(&tests).unwrap());
    println!(
        "promtool test input: {}",
        serde_yaml::to_string(&tests).unwrap()
    );
    let (ok, out) = promtool(&["test", "rules", tests_file.to_str().unwrap()]);
    assert!(ok, "promtool test rules:\n{out}");
}
