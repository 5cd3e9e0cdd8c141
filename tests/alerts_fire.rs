//! Each of the chart's alerts fires — and only then — on series scraped from the real
//! operator's /metrics while it fails in that way (`promtool test rules`): healthy, SSM
//! throttling with a missing key, SSM unreachable, no leader, and the scrape failing. The
//! scrapes are taken live in the test, so the metric names and labels the alerts use cannot
//! drift from what the operator exports. (The rules as rendered: tests/alerts.rs.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use common::alerts::{ALERTS, JOB, Promtool, alert_rules, dashboard_queries, rendered_rules};
use common::chart::Helm;
use common::fake_ssm::{answering, nowhere};
use common::{
    Connection, Credentials, Operator, Options, Scratch, TestEnv, World, eventually, ssm, unique,
};

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
    let mut exp_labels = rule["labels"].as_object().expect("labels").clone();
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
        .expect("annotations")
        .iter()
        .map(|(k, v)| (k.clone(), json!(fill(v.as_str().expect("a template")))))
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

/// A 1Password connection NAME whose Secret NAME holds a valid token under KEY.
async fn connection(w: &World, name: &str, key: &str) {
    w.apply(Credentials::secret(name).key(key, "ops_value"))
        .await;
    w.apply(Connection::onepassword(name)).await;
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

/// The value of the unlabelled gauge NAME in the last scrape.
fn gauge(s: &Scrapes, name: &str) -> Option<f64> {
    s.after
        .iter()
        .find(|(n, l, _)| n == name && l.is_empty())
        .map(|(_, _, v)| *v)
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
    let Some(env) = TestEnv::live() else {
        return;
    };
    let Some(helm) = Helm::find() else {
        return;
    };
    let Some(promtool) = Promtool::find() else {
        return;
    };
    let rules = rendered_rules(&helm);
    let metric_names: BTreeSet<String> = {
        let text = serde_json::to_string(&rules).expect("JSON")
            + &dashboard_queries(&helm)
                .into_iter()
                .map(|(_, q)| q)
                .collect::<String>();
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("vault_connection_operator_"))
            .map(str::to_owned)
            .collect()
    };

    // Healthy: one synced connection, SSM answering.
    let w = World::on(&env, "alerts-ok").await;
    let healthy = w.operator().await;
    connection(&w, "ok", "access_token").await;
    let healthy = scrape(&healthy, "healthy", |s| {
        not_ready(s).is_empty()
            && s.growth("vault_connection_operator_reconciles_total")
                .iter()
                .any(|(l, _)| l["reason"] == "Synced")
    })
    .await;

    // Throttled: SSM throttles every call; one connection also misses its key. Leader election
    // on, with a standby replica for the no-leader case.
    let w = World::on(&env, "alerts-throttled").await;
    let leading = Options::new()
        .env(
            "AWS_ENDPOINT_URL_SSM",
            answering("ThrottlingException").await,
        )
        .leader_election(&w.ns, &unique("lease"));
    let leader = w.operator_with(leading.clone()).await;
    eventually(20, "the first replica to lead", || async {
        leader.leads().then_some(())
    })
    .await;
    let standby = w.operator_with(leading).await;
    connection(&w, "throttled", "access_token").await;
    connection(&w, "keyless", "token").await;
    let throttled = scrape(&leader, "leader", |s| {
        // Both connections have reported (a connection not reconciled yet counts as Pending).
        !grew(s, "throttled").is_empty()
            && not_ready(s).keys().eq(["MissingKey", "Throttled"].iter())
    })
    .await;
    let standby = scrape(&standby, "standby", |_| true).await;

    // Failing: nothing listens where SSM should be.
    let w = World::on(&env, "alerts-down").await;
    let mut failing = w
        .operator_with(
            Options::new()
                .env("AWS_ENDPOINT_URL_SSM", nowhere())
                .env("VCO_SSM_TIMEOUT", "1s"),
        )
        .await;
    connection(&w, "unreachable", "access_token").await;
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
    let w = World::on(&env, "alerts-drift").await;
    let drifting = w
        .operator_with(Options::new().env("VCO_DRIFT_CHECK_INTERVAL", "2s"))
        .await;
    connection(&w, "drifted", "access_token").await;
    w.wait_reason("drifted", "Synced").await;
    let before_drift = parse_scrape(&drifting.metrics_text().await);
    ssm::overwrite(&w.ssm, &w.param("drifted"), "written around the operator").await;
    let drifted = eventually(30, "the drift to be found and repaired", || async {
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

    // Deletions held: more connections deleted at once than the deletion budget allows.
    let w = World::on(&env, "alerts-held").await;
    let holding = w
        .operator_with(Options::new().env("VCO_MAX_DELETIONS", "1"))
        .await;
    for name in ["first", "second"] {
        connection(&w, name, "access_token").await;
        w.wait_reason(name, "Synced").await;
    }
    let before_held = parse_scrape(&holding.metrics_text().await);
    w.delete("first").await;
    w.delete("second").await;
    let held = eventually(30, "a deletion to be held", || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = Scrapes {
            instance: "holding".to_owned(),
            before: before_held.clone(),
            after: parse_scrape(&holding.metrics_text().await),
            up: true,
        };
        (gauge(&s, "vault_connection_operator_deletions_held") == Some(1.0)).then_some(s)
    })
    .await;

    // What the operator exports covers every metric the alerts and the dashboard use.
    let exported: BTreeSet<String> = [&healthy, &throttled, &standby, &erroring, &drifted, &held]
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
    let mut firing_held: BTreeMap<&str, Vec<Value>> = BTreeMap::from([(
        "VaultConnectionDeletionsHeld",
        vec![expect(&rules, "VaultConnectionDeletionsHeld", &[], "")],
    )]);
    for reason in reasons_grown(&held, "vault_connection_operator_reconcile_errors_total") {
        firing_held
            .entry("VaultConnectionOperatorReconcileErrors")
            .or_default()
            .push(expect(
                &rules,
                "VaultConnectionOperatorReconcileErrors",
                &[("reason", &reason)],
                "",
            ));
    }
    let no_leader = BTreeMap::from([(
        "VaultConnectionOperatorNoLeader",
        vec![expect(&rules, "VaultConnectionOperatorNoLeader", &[], "")],
    )]);
    let operator_down = BTreeMap::from([(
        "VaultConnectionOperatorDown",
        // absent() over a comparison carries no labels of its own.
        vec![expect(&rules, "VaultConnectionOperatorDown", &[], "")],
    )]);

    let scratch = Scratch::new("vco-alerts");
    let rules_file = scratch.write("rules.yaml", &serde_yaml::to_string(&rules).expect("YAML"));
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
            case("more deletions at once than the budget allows", &[&held], &firing_held, 0),
        ],
    });
    let tests_file = scratch.write("tests.yaml", &serde_yaml::to_string(&tests).expect("YAML"));
    println!(
        "promtool test input: {}",
        serde_yaml::to_string(&tests).expect("YAML")
    );
    let (ok, out) = promtool.run(&["test", "rules", tests_file.to_str().expect("UTF-8")]);
    assert!(ok, "promtool test rules:\n{out}");
}
