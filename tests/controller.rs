//! The controller against the real API server and SSM emulator: one operator process per test,
//! scoped to the test's namespace and SSM prefix.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use vault_connection_operator::api::VaultConnection;

use common::{
    Operator, OperatorOptions, TestEnv, eventually, install_crd, namespace, repo, unique,
};

/// One test's world: a namespace, an SSM prefix and clients.
struct World {
    env: TestEnv,
    client: kube::Client,
    ssm: aws_sdk_ssm::Client,
    ns: String,
    prefix: String,
}

impl World {
    async fn new(name: &str) -> World {
        let env = TestEnv::get();
        let client = env.kube().await;
        install_crd(&client).await;
        let ns = namespace(&client, name).await;
        let ssm = env.ssm().await;
        let prefix = format!("/{}", unique("t"));
        World {
            env,
            client,
            ssm,
            ns,
            prefix,
        }
    }

    async fn operator(&self) -> Operator {
        self.operator_with(&OperatorOptions::default()).await
    }

    async fn operator_with(&self, opts: &OperatorOptions) -> Operator {
        Operator::start(&self.env, &self.ns, &self.prefix, opts).await
    }

    fn param(&self, name: &str) -> String {
        format!("{}/default/{}/{name}", self.prefix, self.ns)
    }

    fn vcs(&self) -> Api<VaultConnection> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// `kubectl apply` of YAML text into the namespace.
    fn apply(&self, yaml: &str) {
        self.env.apply(&self.ns, yaml);
    }

    fn apply_file(&self, file: &str) {
        self.apply(&std::fs::read_to_string(repo().join(file)).unwrap());
    }

    /// Waits until the connection's Ready condition has `reason`, and returns the object.
    async fn wait_reason(&self, name: &str, reason: &str) -> VaultConnection {
        let api = self.vcs();
        eventually(20, &format!("{name} to report {reason}"), || async {
            let vc = api.get(name).await.ok()?;
            (ready(&vc).map(|c| c.1) == Some(reason.to_owned())).then_some(vc)
        })
        .await
    }

    /// The parameter's value and version, or None when absent.
    async fn read(&self, name: &str) -> Option<(String, i64)> {
        match self
            .ssm
            .get_parameter()
            .name(self.param(name))
            .with_decryption(true)
            .send()
            .await
        {
            Ok(out) => {
                let p = out.parameter?;
                Some((p.value?, p.version))
            }
            Err(e) => {
                let code = aws_sdk_ssm::error::ProvideErrorMetadata::code(&e).map(str::to_owned);
                assert_eq!(code.as_deref(), Some("ParameterNotFound"), "{e:?}");
                None
            }
        }
    }

    async fn tags(&self, name: &str) -> BTreeMap<String, String> {
        self.ssm
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(self.param(name))
            .send()
            .await
            .expect("list tags")
            .tag_list
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect()
    }

    async fn events(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        api.list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    async fn set_token(&self, secret: &str, key: &str, value: &str) {
        let patch = serde_json::json!({ "stringData": { key: value } });
        self.secrets()
            .patch(secret, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch secret");
    }
}

/// (status, reason, message) of the Ready condition.
fn ready(vc: &VaultConnection) -> Option<(String, String, String)> {
    vc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn json(value: &str) -> serde_json::Value {
    serde_json::from_str(value).expect("parameter holds JSON")
}

#[tokio::test]
async fn each_provider_becomes_ready_with_its_document_tags_status_and_events() {
    let w = World::new("providers").await;
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
        assert_eq!(tags["vaultconnections.io/cluster"], "default");
        assert_eq!(
            tags["vaultconnections.io/uid"],
            vc.metadata.uid.clone().unwrap()
        );
        assert_eq!(
            tags["vaultconnections.io/vault-type"],
            vc.spec.vault_type.as_str()
        );

        let status = vc.status.clone().unwrap();
        assert_eq!(status.observed_generation, vc.metadata.generation);
        for t in ["Ready", "Valid", "Synced"] {
            let c = status.conditions.iter().find(|c| c.type_ == t).unwrap();
            assert_eq!(c.status, "True", "{name} {t}");
            assert_eq!(c.observed_generation, vc.metadata.generation);
        }
        let p = status.parameter.unwrap();
        assert_eq!(
            (p.name.as_str(), p.version, p.tier.as_str()),
            (w.param(name).as_str(), 1, "Standard")
        );
        assert!(status.last_sync_time.is_some());
        assert!(
            vc.metadata
                .finalizers
                .unwrap_or_default()
                .contains(&"vaultconnections.io/cleanup".to_owned())
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

async fn one_password(w: &World, name: &str, token: &str) {
    w.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: {name}-creds
  labels: {{vaultconnections.io/credentials: "true"}}
stringData: {{access_token: "{token}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: {name}}}
spec:
  vaultType: onepassword
  credentialsSecretRef: {{name: {name}-creds}}
"#
    ));
}

#[tokio::test]
async fn rotating_the_secret_updates_the_parameter_exactly_once() {
    let w = World::new("rotate").await;
    let op = w.operator().await;
    one_password(&w, "rot", "ops_first").await;
    w.wait_reason("rot", "Synced").await;
    assert_eq!(w.read("rot").await.unwrap().1, 1);

    let started = Instant::now();
    w.set_token("rot-creds", "access_token", "ops_second").await;
    let (value, _) = eventually(10, "the new version", || async {
        w.read("rot").await.filter(|(_, v)| *v == 2)
    })
    .await;
    println!(
        "rotation latency: Secret update to parameter version 2 in {:?}",
        started.elapsed()
    );
    assert_eq!(json(&value)["access_token"], "ops_second");

    // Status catches up, and nothing more is written.
    eventually(10, "status at version 2", || async {
        let vc = w.vcs().get("rot").await.ok()?;
        (vc.status?.parameter?.version == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.read("rot").await.unwrap().1, 2, "exactly one new version");
    assert_eq!(
        op.ssm_calls("PutParameter").await,
        2,
        "one create, one update"
    );
}

#[tokio::test]
async fn an_unchanged_secret_and_a_restart_write_nothing() {
    let w = World::new("idle").await;
    let mut op = w.operator().await;
    one_password(&w, "idle", "ops_same").await;
    w.wait_reason("idle", "Synced").await;

    // Touch the Secret without changing its data: a reconcile, but no write.
    let synced = "reason=\"Synced\"";
    tokio::time::sleep(Duration::from_secs(1)).await; // our own status patch is reconciled too
    let before = op
        .metric("vault_connection_operator_reconciles_total", synced)
        .await;
    let patch = serde_json::json!({"metadata": {"annotations": {"touched": "yes"}}});
    w.secrets()
        .patch("idle-creds", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        w.read("idle").await.unwrap().1,
        1,
        "no write for unchanged data"
    );
    eventually(10, "the touch to be reconciled", || async {
        let now = op
            .metric("vault_connection_operator_reconciles_total", synced)
            .await;
        (now > before).then_some(())
    })
    .await;
    assert_eq!(
        op.ssm_calls("GetParameter").await,
        0,
        "what the operator wrote itself is never decrypted to be compared"
    );

    op.kill();
    let rv_before = w.vcs().get("idle").await.unwrap().metadata.resource_version;
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
        w.read("idle").await.unwrap().1,
        1,
        "restart wrote nothing to SSM"
    );
    assert_eq!(op2.ssm_calls("PutParameter").await, 0);
    let rv_after = w.vcs().get("idle").await.unwrap().metadata.resource_version;
    assert_eq!(
        rv_before, rv_after,
        "restart wrote nothing to the API server either"
    );
}

#[tokio::test]
async fn an_out_of_band_edit_is_repaired_at_the_next_drift_check() {
    let w = World::new("drift").await;
    let opts = OperatorOptions {
        env: vec![("VCO_DRIFT_CHECK_INTERVAL".into(), "2s".into())],
    };
    let _op = w.operator_with(&opts).await;
    one_password(&w, "drift", "ops_good").await;
    w.wait_reason("drift", "Synced").await;
    let (original, _) = w.read("drift").await.unwrap();

    w.ssm
        .put_parameter()
        .name(w.param("drift"))
        .value("tampered")
        .r#type(ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let (value, version) = eventually(10, "the repair", || async {
        w.read("drift").await.filter(|(v, _)| *v != "tampered")
    })
    .await;
    assert_eq!(value, original);
    assert_eq!(version, 3, "1 = ours, 2 = tampered, 3 = repair");

    // Deleted out of band: the sweep finds it missing and the full check writes it again.
    w.ssm
        .delete_parameter()
        .name(w.param("drift"))
        .send()
        .await
        .unwrap();
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

async fn assert_nothing_written(w: &World, name: &str) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.read(name).await, None, "{name}: nothing may be written");
}

#[tokio::test]
async fn a_secret_without_the_opt_in_label_is_never_read() {
    let w = World::new("unlabelled").await;
    let _op = w.operator().await;
    w.apply(
        r#"apiVersion: v1
kind: Secret
metadata: {name: plain}
stringData: {access_token: "ops_x"}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: unlabelled}
spec: {vaultType: onepassword, credentialsSecretRef: {name: plain}}
"#,
    );
    let vc = w.wait_reason("unlabelled", "SecretNotLabeled").await;
    assert!(
        ready(&vc)
            .unwrap()
            .2
            .contains("vaultconnections.io/credentials")
    );
    assert_nothing_written(&w, "unlabelled").await;

    // Opting in later is picked up by the Secret watch.
    let patch =
        serde_json::json!({"metadata": {"labels": {"vaultconnections.io/credentials": "true"}}});
    w.secrets()
        .patch("plain", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    w.wait_reason("unlabelled", "Synced").await;
}

#[tokio::test]
async fn a_missing_secret_a_missing_key_and_an_invalid_credential_each_have_their_reason() {
    let w = World::new("reasons").await;
    let _op = w.operator().await;
    w.apply(
        r#"apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: no-secret}
spec: {vaultType: onepassword, credentialsSecretRef: {name: absent}}
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
"#,
    );
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
        let (status, _, message) = ready(&vc).unwrap();
        assert_eq!(status, "False");
        assert!(message.contains(says), "{name}: {message}");
        let valid = vc
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Valid")
            .unwrap();
        assert_eq!(
            (valid.status.as_str(), valid.reason.as_str()),
            ("False", reason)
        );
        assert_nothing_written(&w, name).await;
    }
    // Creating the missing Secret fixes the first one without touching the connection.
    w.apply(
        r#"apiVersion: v1
kind: Secret
metadata: {name: absent, labels: {vaultconnections.io/credentials: "true"}}
stringData: {access_token: "ops_now"}
"#,
    );
    w.wait_reason("no-secret", "Synced").await;
}

async fn set_tier(w: &World, tier: &str) {
    let ns_api: Api<Namespace> = Api::all(w.client.clone());
    let patch = serde_json::json!({"metadata": {"labels": {"vaultconnections.io/tier": tier}}});
    ns_api
        .patch(&w.ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Reconciles that ended in `reason`, from the operator's metrics.
async fn reconciles(op: &Operator, reason: &str) -> f64 {
    op.metric(
        "vault_connection_operator_reconciles_total",
        &format!("reason=\"{reason}\""),
    )
    .await
}

#[tokio::test]
async fn the_tier_limit_bounds_parameters_and_a_served_connection_keeps_its_slot() {
    let w = World::new("tiers").await;
    set_tier(&w, "free").await; // free = 1
    let op = w.operator().await;

    one_password(&w, "first", "ops_a").await;
    w.wait_reason("first", "Synced").await;
    one_password(&w, "second", "ops_b").await;
    let vc = w.wait_reason("second", "TierLimitExceeded").await;
    let message = ready(&vc).unwrap().2;
    assert!(
        message.contains("tier free") && message.contains("allows 1"),
        "{message}"
    );
    assert!(
        !message.contains("number"),
        "no position that changes with others: {message}"
    );
    assert_nothing_written(&w, "second").await;

    // Events of a served sibling do not re-check the refused one: only a freed slot does.
    let refused = reconciles(&op, "TierLimitExceeded").await;
    for i in 0..3 {
        w.set_token("first-creds", "access_token", &format!("ops_a{i}"))
            .await;
        eventually(10, "the rotation", || async {
            w.read("first")
                .await
                .filter(|(_, v)| *v == 2 + i)
                .map(|_| ())
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        reconciles(&op, "TierLimitExceeded").await,
        refused,
        "no cascade"
    );

    // Deleting the served connection (policy Delete) frees its slot for the refused one.
    delete_and_wait(&w, "first").await;
    w.wait_reason("second", "Synced").await;

    // Raising the tier is picked up; lowering it again displaces nobody that holds a parameter.
    one_password(&w, "third", "ops_c").await;
    w.wait_reason("third", "TierLimitExceeded").await;
    set_tier(&w, "team").await;
    w.wait_reason("third", "Synced").await;
    set_tier(&w, "free").await;
    one_password(&w, "fourth", "ops_d").await;
    w.wait_reason("fourth", "TierLimitExceeded").await;
    w.set_token("third-creds", "access_token", "ops_c2").await;
    eventually(
        10,
        "a rotation of a connection over the lowered limit",
        || async { w.read("third").await.filter(|(_, v)| *v == 2).map(|_| ()) },
    )
    .await;
    for name in ["second", "third"] {
        let vc = w.wait_reason(name, "Synced").await;
        assert_eq!(ready(&vc).unwrap().0, "True", "{name} keeps its slot");
    }
    assert_nothing_written(&w, "fourth").await;
}

#[tokio::test]
async fn connections_created_at_once_take_exactly_the_free_slots() {
    let w = World::new("race").await;
    set_tier(&w, "free").await; // free = 1
    let _op = w.operator().await;
    let names: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    let yaml: String = names
        .iter()
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: {n}-creds, labels: {{vaultconnections.io/credentials: \"true\"}}}}\n\
                 stringData: {{access_token: \"ops_{n}\"}}\n---\n\
                 apiVersion: vaultconnections.io/v1alpha1\nkind: VaultConnection\nmetadata: {{name: {n}}}\n\
                 spec: {{vaultType: onepassword, credentialsSecretRef: {{name: {n}-creds}}}}\n---\n"
            )
        })
        .collect();
    w.apply(&yaml);
    let reasons = eventually(30, "every connection to be decided", || async {
        let mut reasons = Vec::new();
        for n in &names {
            let vc = w.vcs().get(n).await.ok()?;
            reasons.push(ready(&vc)?.1);
        }
        reasons
            .iter()
            .all(|r| r == "Synced" || r == "TierLimitExceeded")
            .then_some(reasons)
    })
    .await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "Synced").count(),
        1,
        "one slot, one connection served: {reasons:?}"
    );
    let mut stored = 0;
    for n in &names {
        stored += usize::from(w.read(n).await.is_some());
    }
    assert_eq!(stored, 1, "one parameter stored");
}

#[tokio::test]
async fn retained_and_orphaned_parameters_count_so_a_create_delete_loop_cannot_fill_ssm() {
    let w = World::new("fill").await;
    set_tier(&w, "free").await; // free = 1
    let mut op = w.operator().await;
    let retain = serde_json::json!({"spec": {"deletionPolicy": "Retain"}});

    // Round 1: a Retain connection is served, then deleted: its parameter stays and counts.
    one_password(&w, "r0", "ops_0").await;
    w.vcs()
        .patch("r0", &PatchParams::default(), &Patch::Merge(&retain))
        .await
        .unwrap();
    w.wait_reason("r0", "Synced").await;
    delete_and_wait(&w, "r0").await;
    assert!(w.read("r0").await.is_some(), "retained");
    one_password(&w, "r1", "ops_1").await;
    let vc = w.wait_reason("r1", "TierLimitExceeded").await;
    assert!(
        ready(&vc).unwrap().2.contains("retained"),
        "{:?}",
        ready(&vc)
    );
    assert_nothing_written(&w, "r1").await;

    // Removing the retained parameter frees the slot (a change to the connection re-checks it).
    w.ssm
        .delete_parameter()
        .name(w.param("r0"))
        .send()
        .await
        .unwrap();
    let touch = serde_json::json!({"metadata": {"annotations": {"retry": "1"}}});
    w.vcs()
        .patch("r1", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    w.wait_reason("r1", "Synced").await;

    // Round 2: deleted while the operator was down, and its finalizer removed by hand: the
    // parameter left behind counts too.
    op.kill();
    w.vcs()
        .delete("r1", &DeleteParams::default())
        .await
        .unwrap();
    let no_finalizer = serde_json::json!({"metadata": {"finalizers": null}});
    w.vcs()
        .patch("r1", &PatchParams::default(), &Patch::Merge(&no_finalizer))
        .await
        .unwrap();
    eventually(10, "r1 to be gone", || async {
        w.vcs().get_opt("r1").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(w.read("r1").await.is_some(), "left behind without cleanup");
    let _op = w.operator().await;
    for round in 2..5 {
        let name = format!("r{round}");
        one_password(&w, &name, "ops_n").await;
        w.wait_reason(&name, "TierLimitExceeded").await;
        assert_nothing_written(&w, &name).await;
        delete_and_wait(&w, &name).await;
    }
    let stored = w
        .ssm
        .get_parameters_by_path()
        .path(format!("{}/default/{}", w.prefix, w.ns))
        .send()
        .await
        .unwrap()
        .parameters
        .unwrap_or_default()
        .len();
    assert_eq!(
        stored, 1,
        "the namespace holds no more than its tier allows"
    );
}

#[tokio::test]
async fn a_parameter_that_is_not_ours_is_never_overwritten() {
    let w = World::new("unowned").await;
    w.ssm
        .put_parameter()
        .name(w.param("taken"))
        .value("someone else's")
        .r#type(ParameterType::SecureString)
        .tags(
            Tag::builder()
                .key("owner")
                .value("another-team")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let _op = w.operator().await;
    one_password(&w, "taken", "ops_x").await;
    let vc = w.wait_reason("taken", "ParameterNotOwned").await;
    assert!(
        ready(&vc)
            .unwrap()
            .2
            .contains("will not read, overwrite or delete")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.read("taken").await, Some(("someone else's".into(), 1)));

    // Deleting the connection does not delete someone else's parameter either.
    w.vcs()
        .delete("taken", &DeleteParams::default())
        .await
        .unwrap();
    eventually(10, "the connection to be gone", || async {
        w.vcs()
            .get_opt("taken")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(w.read("taken").await, Some(("someone else's".into(), 1)));
}

#[tokio::test]
async fn deletion_honours_the_policy_and_never_hangs() {
    let w = World::new("delete").await;
    let _op = w.operator().await;
    one_password(&w, "gone", "ops_a").await;
    one_password(&w, "kept", "ops_b").await;
    let patch = serde_json::json!({"spec": {"deletionPolicy": "Retain"}});
    w.vcs()
        .patch("kept", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    w.wait_reason("gone", "Synced").await;
    w.wait_reason("kept", "Synced").await;
    w.apply(
        r#"apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: orphan}
spec: {vaultType: onepassword, credentialsSecretRef: {name: never-created}}
"#,
    );
    w.wait_reason("orphan", "SecretNotFound").await;

    for name in ["gone", "kept", "orphan"] {
        w.vcs()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for name in ["gone", "kept", "orphan"] {
        eventually(10, &format!("{name} to be deleted"), || async {
            w.vcs().get_opt(name).await.unwrap().is_none().then_some(())
        })
        .await;
    }
    assert_eq!(w.read("gone").await, None, "Delete removes the parameter");
    assert!(w.read("kept").await.is_some(), "Retain keeps the parameter");
}

fn with_env(pairs: &[(&str, &str)]) -> OperatorOptions {
    OperatorOptions {
        env: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

async fn delete_and_wait(w: &World, name: &str) {
    w.vcs()
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    eventually(10, &format!("{name} to be deleted"), || async {
        w.vcs().get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_cluster_with_our_name_but_another_identity_never_writes_or_deletes_our_parameter() {
    let w = World::new("twin").await;
    // "prod" writes the parameter and keeps it when its connection goes (Retain).
    let prod = w
        .operator_with(&with_env(&[("VCO_CLUSTER_ID", "id-prod")]))
        .await;
    one_password(&w, "db", "ops_prod").await;
    let patch = serde_json::json!({"spec": {"deletionPolicy": "Retain"}});
    w.vcs()
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    w.wait_reason("db", "Synced").await;
    delete_and_wait(&w, "db").await;
    drop(prod);
    let theirs = w.read("db").await.expect("prod's parameter");
    assert_eq!(
        w.tags("db").await["vaultconnections.io/cluster-id"],
        "id-prod"
    );

    // "staging" has the same cluster name, namespace and connection name, another identity.
    let _staging = w
        .operator_with(&with_env(&[("VCO_CLUSTER_ID", "id-staging")]))
        .await;
    one_password(&w, "db", "ops_staging").await;
    let vc = w.wait_reason("db", "ParameterNotOwned").await;
    assert!(ready(&vc).unwrap().2.contains("cluster id"));
    w.set_token("db-creds", "access_token", "ops_staging_rotated")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(w.read("db").await, Some(theirs.clone()), "never written");
    assert_eq!(
        w.tags("db").await["vaultconnections.io/cluster-id"],
        "id-prod"
    );

    // Deleting staging's connection (policy Delete) leaves prod's parameter in place.
    delete_and_wait(&w, "db").await;
    assert_eq!(w.read("db").await, Some(theirs), "never deleted");
}

#[tokio::test]
async fn a_parameter_from_before_cluster_ids_is_adopted_only_when_the_operator_is_told_to() {
    let w = World::new("legacy").await;
    let legacy_tags = [
        ("managed-by", "vault-connection-operator"),
        ("vaultconnections.io/cluster", "default"),
        ("vaultconnections.io/namespace", w.ns.as_str()),
        ("vaultconnections.io/name", "old"),
    ];
    w.ssm
        .put_parameter()
        .name(w.param("old"))
        .value("{\"written\":\"by an older operator\"}")
        .r#type(ParameterType::SecureString)
        .set_tags(Some(
            legacy_tags
                .iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap())
                .collect(),
        ))
        .send()
        .await
        .unwrap();
    let op = w.operator().await;
    one_password(&w, "old", "ops_new").await;
    w.wait_reason("old", "ParameterNotOwned").await;
    assert_eq!(w.read("old").await.unwrap().1, 1, "not adopted silently");
    drop(op);

    let _op = w
        .operator_with(&with_env(&[("VCO_ADOPT_LEGACY_PARAMETERS", "true")]))
        .await;
    w.wait_reason("old", "Synced").await;
    let (value, version) = w.read("old").await.unwrap();
    assert_eq!(
        (json(&value)["access_token"].as_str(), version),
        (Some("ops_new"), 2)
    );
    let kube_system = Api::<Namespace>::all(w.client.clone())
        .get("kube-system")
        .await
        .unwrap();
    assert_eq!(
        w.tags("old").await.get("vaultconnections.io/cluster-id"),
        kube_system.metadata.uid.as_ref(),
        "adoption tags the parameter with this cluster's identity"
    );
}
