//! Live VaultConnections, as the ecosystem's own code reads them: for every reason the operator
//! can reach, the verdict of kstatus (`sigs.k8s.io/cli-utils`, what Flux, kpt and cli-utils
//! waiters use), the chart's Argo CD health check run by gopher-lua, and `kubectl wait`.
//! Real kube-apiserver, real SSM emulator (or a real closed port / AWS-format error answers for
//! failures the emulator cannot produce), and the operator process.

mod common;
mod ecosystem;

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::Api;
use kube::api::{Patch, PatchParams};
use vault_connection_operator::api::VaultConnection;
use vault_connection_operator::status::ready_reason;

use common::{Operator, OperatorOptions, TestEnv, eventually, install_crd, namespace, run, unique};
use ecosystem::{argocd_health, kstatus};

/// Reasons the operator retries by itself: kstatus InProgress, Argo CD Progressing. Every other
/// reason that is not Synced needs a person: kstatus Failed, Argo CD Degraded.
const TRANSIENT: &[&str] = &["Throttled", "SyncFailed"];

/// (kstatus status, Argo CD health status) a connection with Ready reason `reason` must have.
fn expected(reason: &str) -> (&'static str, &'static str) {
    match reason {
        "Synced" => ("Current", "Healthy"),
        r if TRANSIENT.contains(&r) => ("InProgress", "Progressing"),
        _ => ("Failed", "Degraded"),
    }
}

struct World {
    env: TestEnv,
    client: kube::Client,
    ns: String,
    prefix: String,
}

impl World {
    async fn new(name: &str) -> World {
        let env = TestEnv::get();
        let client = env.kube().await;
        install_crd(&client).await;
        let ns = namespace(&client, name).await;
        let prefix = format!("/{}", unique("eco"));
        World {
            env,
            client,
            ns,
            prefix,
        }
    }

    async fn operator(&self, env: &[(&str, &str)]) -> Operator {
        let opts = OperatorOptions {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        Operator::start(&self.env, &self.ns, &self.prefix, &opts).await
    }

    fn vcs(&self) -> Api<VaultConnection> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn wait_reason(&self, name: &str, reason: &str) {
        let api = self.vcs();
        eventually(30, &format!("{name} to report {reason}"), || async {
            let vc = api.get(name).await.ok()?;
            (ready_reason(&vc) == Some(reason)).then_some(())
        })
        .await;
    }

    /// The live object exactly as the API server serves it (`kubectl get -o json`).
    fn live(&self, name: &str) -> serde_json::Value {
        let (ok, out, err) = run(self.env.command("kubectl").args([
            "get",
            "-n",
            &self.ns,
            "vaultconnection",
            name,
            "-o",
            "json",
        ]));
        assert!(ok, "kubectl get {name}: {err}");
        serde_json::from_str(&out).expect("kubectl prints JSON")
    }

    /// `kubectl wait --for=condition=COND` on one connection: (succeeded, output).
    fn kubectl_wait(&self, name: &str, condition: &str, timeout: &str) -> (bool, String) {
        let (ok, out, err) = run(self.env.command("kubectl").args([
            "wait",
            "-n",
            &self.ns,
            &format!("vaultconnection/{name}"),
            &format!("--for=condition={condition}"),
            &format!("--timeout={timeout}"),
        ]));
        (ok, format!("{out}{err}"))
    }

    /// Checks kstatus and Argo CD on the live object of a connection whose Ready reason is
    /// `reason`; returns what was wrong, if anything.
    fn verdicts(&self, name: &str, reason: &str) -> Option<String> {
        let obj = self.live(name);
        let (want_kstatus, want_health) = expected(reason);
        let k = kstatus(&obj);
        let h = argocd_health(&obj);
        println!("{reason:>20}: kstatus {k:?}; Argo CD {h:?}");
        let mut problems = Vec::new();
        if k.status != want_kstatus {
            problems.push(format!("kstatus {k:?}, want {want_kstatus}"));
        }
        if h.status != want_health {
            problems.push(format!("Argo CD {h:?}, want {want_health}"));
        }
        if reason != "Synced" && !h.message.starts_with(reason) {
            problems.push(format!(
                "Argo CD message {:?} does not lead with {reason}",
                h.message
            ));
        }
        if want_kstatus == "Failed" && k.message.is_empty() {
            problems.push("kstatus Failed without a message".into());
        }
        (!problems.is_empty()).then(|| format!("{name} ({reason}): {}", problems.join("; ")))
    }
}

fn check_all(problems: impl IntoIterator<Item = Option<String>>) {
    let problems: Vec<String> = problems.into_iter().flatten().collect();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

fn onepassword(name: &str, token: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: {name}, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{access_token: "{token}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: {name}}}
spec: {{vaultType: onepassword, credentialsSecretRef: {{name: {name}}}}}
---
"#
    )
}

#[tokio::test]
async fn synced_is_current_and_healthy_and_every_problem_with_the_inputs_is_failed_and_degraded() {
    let w = World::new("eco-reasons").await;
    // A parameter someone else owns, where `not-ours` would write.
    let ssm = w.env.ssm().await;
    ssm.put_parameter()
        .name(format!("{}/default/{}/not-ours", w.prefix, w.ns))
        .value("someone else's")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("plant a foreign parameter");
    let _op = w.operator(&[]).await;
    // 2000 four-byte characters: a description within its length limit whose document is over
    // the 8192 bytes of an Advanced parameter.
    let long = "\u{1F511}".repeat(2000);
    let yaml = [
        onepassword("synced", "ops_synced"),
        onepassword("not-ours", "ops_taken"),
        format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: huge, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{access_token: "ops_{token}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: huge}}
spec: {{vaultType: onepassword, credentialsSecretRef: {{name: huge}}, description: "{long}"}}
---
"#,
            token = "x".repeat(1000)
        ),
        r#"apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: no-secret}
spec: {vaultType: onepassword, credentialsSecretRef: {name: absent}}
---
apiVersion: v1
kind: Secret
metadata: {name: plain}
stringData: {access_token: "ops_x"}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: unlabelled}
spec: {vaultType: onepassword, credentialsSecretRef: {name: plain}}
---
apiVersion: v1
kind: Secret
metadata: {name: wrong-key, labels: {vaultconnections.io/credentials: "true"}}
stringData: {token: "ops_x"}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: no-key}
spec: {vaultType: onepassword, credentialsSecretRef: {name: wrong-key}}
---
apiVersion: v1
kind: Secret
metadata: {name: scim, labels: {vaultconnections.io/credentials: "true"}}
stringData: {access_token: "dp.scim.x"}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: bad-token}
spec:
  vaultType: doppler
  credentialsSecretRef: {name: scim}
  doppler: {project: p, config: c}
"#
        .to_owned(),
    ]
    .concat();
    w.env.apply(&w.ns, &yaml);
    let cases = [
        ("synced", "Synced"),
        ("not-ours", "ParameterNotOwned"),
        ("huge", "ValueTooLarge"),
        ("no-secret", "SecretNotFound"),
        ("unlabelled", "SecretNotLabeled"),
        ("no-key", "MissingKey"),
        ("bad-token", "InvalidCredentials"),
    ];
    for (name, reason) in cases {
        w.wait_reason(name, reason).await;
    }
    check_all(cases.map(|(name, reason)| w.verdicts(name, reason)));
}

#[tokio::test]
async fn a_connection_over_its_tier_limit_is_failed_and_degraded() {
    let w = World::new("eco-tier").await;
    let _op = w
        .operator(&[
            ("VCO_TIER_LIMITS", "free=1,team=10"),
            ("VCO_DEFAULT_TIER", "free"),
        ])
        .await;
    w.env.apply(&w.ns, &onepassword("first", "ops_first"));
    w.wait_reason("first", "Synced").await;
    w.env.apply(&w.ns, &onepassword("second", "ops_second"));
    w.wait_reason("second", "TierLimitExceeded").await;
    check_all([
        w.verdicts("first", "Synced"),
        w.verdicts("second", "TierLimitExceeded"),
    ]);
}

/// An SSM endpoint that answers every call with the AWS JSON error `code` (HTTP 400), as SSM
/// does for throttling, denied access or an unusable KMS key: failures the emulator cannot be
/// made to produce.
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

/// A loopback address where nothing listens: SSM is down.
fn ssm_down() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// One namespace and operator per SSM failure, with one valid connection each.
async fn ssm_failure(endpoint: String, reason: &str) -> Option<String> {
    let w = World::new(&format!("eco-{}", reason.to_lowercase())).await;
    let _op = w
        .operator(&[
            ("AWS_ENDPOINT_URL_SSM", endpoint.as_str()),
            ("VCO_SSM_TIMEOUT", "1s"),
        ])
        .await;
    w.env.apply(&w.ns, &onepassword("conn", "ops_valid"));
    w.wait_reason("conn", reason).await;
    w.verdicts("conn", reason)
}

#[tokio::test]
async fn ssm_failures_the_operator_retries_are_in_progress_and_progressing() {
    check_all([
        ssm_failure(ssm_down(), "SyncFailed").await,
        ssm_failure(ssm_answering("ThrottlingException").await, "Throttled").await,
    ]);
}

#[tokio::test]
async fn ssm_failures_that_need_a_person_are_failed_and_degraded() {
    check_all([
        ssm_failure(ssm_answering("AccessDeniedException").await, "AccessDenied").await,
        ssm_failure(
            ssm_answering("KMSInvalidStateException").await,
            "KmsKeyError",
        )
        .await,
    ]);
}

#[tokio::test]
async fn a_spec_change_the_operator_has_not_seen_yet_is_in_progress_and_progressing() {
    let w = World::new("eco-generation").await;
    let mut op = w.operator(&[]).await;
    w.env.apply(&w.ns, &onepassword("conn", "ops_valid"));
    w.wait_reason("conn", "Synced").await;
    check_all([w.verdicts("conn", "Synced")]);

    // With the operator stopped, a spec change raises the generation past the observed one.
    op.kill();
    let patch = serde_json::json!({"spec": {"description": "changed while nobody watched"}});
    w.vcs()
        .patch("conn", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch the spec");
    let obj = w.live("conn");
    assert!(
        obj["metadata"]["generation"].as_i64() > obj["status"]["observedGeneration"].as_i64(),
        "the change is not observed yet: {obj}"
    );
    let k = kstatus(&obj);
    let h = argocd_health(&obj);
    assert_eq!(
        (k.status.as_str(), h.status.as_str()),
        ("InProgress", "Progressing"),
        "kstatus {k:?}, Argo CD {h:?}"
    );
    assert!(
        k.message.contains("latest observed generation"),
        "kstatus says why: {k:?}"
    );

    // Once the operator is back it observes the change and the connection is Current again.
    let _op = w.operator(&[]).await;
    let api = w.vcs();
    eventually(30, "the new generation to be observed", || async {
        let vc = api.get("conn").await.ok()?;
        (vc.status?.observed_generation == vc.metadata.generation).then_some(())
    })
    .await;
    let obj = w.live("conn");
    assert_eq!(
        (kstatus(&obj).status, argocd_health(&obj).status),
        ("Current".to_owned(), "Healthy".to_owned())
    );
}

#[tokio::test]
async fn kubectl_wait_sees_ready_on_a_synced_connection_and_stalled_on_a_broken_one() {
    let w = World::new("eco-wait").await;
    let _op = w.operator(&[]).await;
    w.env.apply(
        &w.ns,
        &[
            onepassword("good", "ops_good"),
            r#"apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: broken}
spec: {vaultType: onepassword, credentialsSecretRef: {name: absent}}
"#
            .to_owned(),
        ]
        .concat(),
    );
    let (ok, out) = w.kubectl_wait("good", "Ready", "30s");
    assert!(ok, "kubectl wait --for=condition=Ready: {out}");
    assert!(out.contains("condition met"), "{out}");
    let (ok, out) = w.kubectl_wait("broken", "Stalled", "30s");
    assert!(ok, "kubectl wait --for=condition=Stalled: {out}");
    assert!(out.contains("condition met"), "{out}");
    // And the other way round: neither condition is claimed where it does not hold.
    let (ok, out) = w.kubectl_wait("good", "Stalled", "2s");
    assert!(!ok, "a synced connection is not Stalled: {out}");
    let (ok, out) = w.kubectl_wait("broken", "Ready", "2s");
    assert!(!ok, "a connection without its Secret is not Ready: {out}");
}
