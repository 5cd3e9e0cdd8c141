//! Evidence, not records: what SSM holds is checked against what the operator's own writes
//! produced and the tags SSM holds, never against a record someone else can edit (status) or
//! repeat (a version number after a delete, a namespace name after a namespace is deleted).
//! Every SSM call goes through a proxy that counts them, decrypting reads included.

mod common;
mod ssm_proxy;

use std::time::Duration;

use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use vault_connection_operator::api::VaultConnection;
use vault_connection_operator::document::parameter_name;
use vault_connection_operator::status::ready_condition;

use common::{Operator, OperatorOptions, TestEnv, eventually, install_crd, namespace, unique};
use ssm_proxy::SsmProxy;

/// The cluster name test operators run with.
const CLUSTER: &str = "default";

/// One test's namespace, prefix and clients, with every SSM call of its operators counted.
struct Scene {
    env: TestEnv,
    client: kube::Client,
    ssm: aws_sdk_ssm::Client,
    ns: String,
    prefix: String,
    proxy: SsmProxy,
    endpoint: String,
}

impl Scene {
    async fn new(name: &str) -> Scene {
        let env = TestEnv::get();
        let client = env.kube().await;
        install_crd(&client).await;
        let ns = namespace(&client, name).await;
        let ssm = env.ssm().await;
        let (proxy, endpoint) = SsmProxy::start(env.ssm_endpoint.clone()).await;
        Scene {
            prefix: format!("/{}", unique("ev")),
            env,
            client,
            ssm,
            ns,
            proxy,
            endpoint,
        }
    }

    /// An operator for the namespace, its SSM calls through the proxy, with `extra` settings.
    async fn operator(&self, extra: &[(&str, &str)]) -> Operator {
        let mut env = vec![("AWS_ENDPOINT_URL_SSM".to_owned(), self.endpoint.clone())];
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Operator::start(&self.env, &self.ns, &self.prefix, &OperatorOptions { env }).await
    }

    fn param(&self, name: &str) -> String {
        parameter_name(&self.prefix, CLUSTER, &self.ns, name).expect("a valid name")
    }

    fn vcs(&self) -> Api<VaultConnection> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn apply(&self, yaml: &str) {
        self.env.apply(&self.ns, yaml);
    }

    /// A 1Password connection `name` with its labelled Secret holding `token`.
    fn one_password(&self, name: &str, token: &str, policy: &str) {
        self.apply(&format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: {name}-creds, labels: {{vaultconnections.io/credentials: "true"}}}}
stringData: {{access_token: "{token}"}}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {{name: {name}}}
spec: {{vaultType: onepassword, credentialsSecretRef: {{name: {name}-creds}}, deletionPolicy: {policy}}}
"#
        ));
    }

    /// Waits until `name`'s Ready condition has `reason`; returns the connection.
    async fn wait_reason(&self, name: &str, reason: &str, secs: u64) -> VaultConnection {
        eventually(secs, &format!("{name} to report {reason}"), || async {
            let vc = self.vcs().get(name).await.ok()?;
            (ready_condition(&vc)?.reason == reason).then_some(vc)
        })
        .await
    }

    /// The parameter's value and version (read directly from the emulator), if it exists.
    async fn read(&self, name: &str) -> Option<(String, i64)> {
        let out = self
            .ssm
            .get_parameter()
            .name(self.param(name))
            .with_decryption(true)
            .send()
            .await
            .ok()?;
        let p = out.parameter?;
        Some((p.value?, p.version))
    }

    async fn tags(&self, name: &str) -> Vec<Tag> {
        self.ssm
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(self.param(name))
            .send()
            .await
            .expect("list tags")
            .tag_list
            .unwrap_or_default()
    }

    /// Deletes the parameter and puts `value` in its place, as someone with SSM rights around
    /// the operator would (with `tags`, or none).
    async fn replace_out_of_band(&self, name: &str, value: &str, tags: Vec<Tag>) {
        self.ssm
            .delete_parameter()
            .name(self.param(name))
            .send()
            .await
            .expect("delete");
        self.ssm
            .put_parameter()
            .name(self.param(name))
            .value(value)
            .r#type(ParameterType::SecureString)
            .set_tags((!tags.is_empty()).then_some(tags))
            .send()
            .await
            .expect("put");
    }

    async fn set_tier(&self, tier: &str) {
        let patch = serde_json::json!({"metadata": {"labels": {"vaultconnections.io/tier": tier}}});
        Api::<Namespace>::all(self.client.clone())
            .patch(&self.ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("label namespace");
    }

    /// Changes an annotation of `name`, which makes the operator reconcile it.
    async fn touch(&self, name: &str, value: &str) {
        let patch = serde_json::json!({"metadata": {"annotations": {"test/touch": value}}});
        self.vcs()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("touch");
    }

    async fn delete(&self, name: &str) {
        self.vcs()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete connection");
        eventually(20, &format!("{name} to be gone"), || async {
            self.vcs().get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
}

fn message(vc: &VaultConnection) -> String {
    ready_condition(vc)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn document(token: &str, name: &str) -> String {
    format!(
        r#"{{"vault_type":"onepassword","name":"{name}","description":"","access_token":"{token}"}}"#
    )
}

#[tokio::test]
async fn a_foreign_value_put_after_a_delete_is_found_within_one_drift_interval() {
    let s = Scene::new("reset").await;
    let _op = s.operator(&[("VCO_DRIFT_CHECK_INTERVAL", "3s")]).await;
    s.one_password("plain", "ops_ours0", "Delete");
    s.one_password("copied", "ops_ours1", "Delete");
    s.wait_reason("plain", "Synced", 20).await;
    s.wait_reason("copied", "Synced", 20).await;

    // Deleted and put again once: version 1 again, as the operator recorded, but not its write.
    // One without tags (not ours any more), one with our tags copied onto it.
    let tags = s.tags("copied").await;
    s.replace_out_of_band("plain", "someone else's", vec![])
        .await;
    s.replace_out_of_band("copied", "someone else's", tags)
        .await;
    let decrypted_before = s.proxy.decrypting_reads_of(&s.param("plain"));

    let vc = s.wait_reason("plain", "ParameterNotOwned", 15).await;
    assert!(message(&vc).contains("will not read"), "{}", message(&vc));
    let (value, version) = s.read("plain").await.expect("left in place");
    assert_eq!(
        (value.as_str(), version),
        ("someone else's", 1),
        "not touched"
    );
    assert_eq!(
        s.proxy.decrypting_reads_of(&s.param("plain")),
        decrypted_before,
        "a parameter that is not ours is never decrypted"
    );

    let repaired = eventually(15, "the copied-tags parameter to be repaired", || async {
        s.read("copied")
            .await
            .filter(|(v, _)| *v == document("ops_ours1", "copied"))
    })
    .await;
    assert_eq!(repaired.1, 2, "one write over the foreign version");
    s.wait_reason("copied", "Synced", 10).await;
}

#[tokio::test]
async fn a_status_patched_by_a_cluster_admin_takes_no_tier_slot() {
    let s = Scene::new("forged").await;
    s.set_tier("free").await; // free = 1
    let _op = s.operator(&[]).await;
    s.one_password("served", "ops_a", "Delete");
    s.wait_reason("served", "Synced", 20).await;
    s.one_password("refused", "ops_b", "Delete");
    s.wait_reason("refused", "TierLimitExceeded", 20).await;

    // Someone who may write status claims the refused connection already holds its parameter.
    let forged = serde_json::json!({"status": {"parameter": {
        "name": s.param("refused"), "version": 1, "tier": "Standard"}}});
    s.vcs()
        .patch_status("refused", &PatchParams::default(), &Patch::Merge(&forged))
        .await
        .expect("patch status");
    s.touch("refused", "1").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let vc = s.wait_reason("refused", "TierLimitExceeded", 10).await;
    assert!(message(&vc).contains("allows 1"), "{}", message(&vc));
    assert_eq!(
        s.read("refused").await,
        None,
        "nothing written for a forged status"
    );
}

#[tokio::test]
async fn a_twin_cluster_restored_with_our_status_never_overwrites_our_parameter() {
    let s = Scene::new("twin").await;
    let mut prod = s.operator(&[("VCO_CLUSTER_ID", "prod-id")]).await;
    s.one_password("db", "ops_prod", "Retain");
    s.wait_reason("db", "Synced", 20).await;
    prod.kill();

    // The same objects, status included, under an operator with the same cluster name and
    // another identity (a restore into a DR cluster).
    let _dr = s.operator(&[("VCO_CLUSTER_ID", "dr-id")]).await;
    s.one_password("db", "ops_dr", "Retain");
    let vc = s.wait_reason("db", "ParameterNotOwned", 20).await;
    assert!(message(&vc).contains("another cluster"), "{}", message(&vc));
    assert_eq!(
        s.read("db").await,
        Some((document("ops_prod", "db"), 1)),
        "prod's parameter is untouched"
    );
    assert_eq!(
        s.proxy.decrypting_reads_of(&s.param("db")),
        0,
        "neither operator decrypted it: prod wrote it, dr may not read it"
    );
}

#[tokio::test]
async fn a_reused_namespace_name_never_touches_the_previous_tenants_parameter() {
    let s = Scene::new("reuse").await;
    let _op = s.operator(&[]).await;
    s.one_password("db", "ops_tenant1", "Retain");
    s.wait_reason("db", "Synced", 20).await;
    s.delete("db").await;
    let namespaces: Api<Namespace> = Api::all(s.client.clone());
    namespaces
        .delete(&s.ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    eventually(60, "the namespace to be gone", || async {
        namespaces
            .get_opt(&s.ns)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // A new tenant gets a namespace of the same name, on the smallest tier.
    let labels = [("vaultconnections.io/tier".to_owned(), "free".to_owned())].into();
    let again = Namespace {
        metadata: ObjectMeta {
            name: Some(s.ns.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &again)
        .await
        .expect("create namespace again");
    let decrypted_before = s.proxy.decrypting_reads_of(&s.param("db"));
    s.one_password("db", "ops_tenant2", "Delete");
    let vc = s.wait_reason("db", "ParameterNotOwned", 20).await;
    assert!(
        message(&vc).contains("earlier namespace"),
        "{}",
        message(&vc)
    );
    // The old parameter takes no slot of the new namespace's tier.
    s.one_password("other", "ops_other", "Delete");
    s.wait_reason("other", "Synced", 20).await;
    // Deleting the new connection (policy Delete) leaves the old parameter too.
    s.delete("db").await;
    assert_eq!(
        s.read("db").await,
        Some((document("ops_tenant1", "db"), 1)),
        "never overwritten, adopted or deleted"
    );
    assert_eq!(
        s.proxy.decrypting_reads_of(&s.param("db")),
        decrypted_before,
        "never decrypted"
    );

    // Asked explicitly by someone who may edit the connection (and with room on the tier), the
    // new tenant takes it over.
    s.set_tier("team").await;
    s.apply(
        r#"apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: db, annotations: {vaultconnections.io/adopt-parameter: "true"}}
spec: {vaultType: onepassword, credentialsSecretRef: {name: db-creds}}
"#,
    );
    s.wait_reason("db", "Synced", 20).await;
    let (value, version) = s.read("db").await.expect("adopted");
    assert_eq!((value, version), (document("ops_tenant2", "db"), 2));
    let uid = namespaces
        .get(&s.ns)
        .await
        .expect("namespace")
        .metadata
        .uid
        .expect("uid");
    assert!(
        s.tags("db")
            .await
            .iter()
            .any(|t| t.key == "vaultconnections.io/namespace-uid" && t.value == uid),
        "tagged with the new namespace's uid"
    );
}

#[tokio::test]
async fn a_tightened_flag_turns_a_stored_personal_token_stalled_after_a_restart() {
    let s = Scene::new("policy").await;
    let mut lenient = s
        .operator(&[("VCO_ALLOW_DOPPLER_PERSONAL_TOKENS", "true")])
        .await;
    s.apply(
        r#"apiVersion: v1
kind: Secret
metadata: {name: dp, labels: {vaultconnections.io/credentials: "true"}}
stringData: {access_token: "dp.pt.FAKEpersonalTOKEN0000000000000000000000"}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: dp}
spec:
  vaultType: doppler
  credentialsSecretRef: {name: dp}
  doppler: {project: p, config: prd}
"#,
    );
    s.wait_reason("dp", "Synced", 20).await;
    let stored = s.read("dp").await.expect("stored");
    lenient.kill();

    let _strict = s.operator(&[]).await;
    let vc = s.wait_reason("dp", "InvalidCredentials", 20).await;
    let stalled = vc
        .status
        .as_ref()
        .and_then(|st| st.conditions.iter().find(|c| c.type_ == "Stalled"))
        .expect("a Stalled condition");
    assert_eq!(stalled.status, "True", "a person must act");
    let m = message(&vc);
    assert!(m.contains("dp.pt."), "names the rule: {m}");
    assert!(m.contains("stay in SSM parameter"), "says what stays: {m}");
    assert_eq!(
        s.read("dp").await,
        Some(stored),
        "the parameter stays as it was"
    );
}

#[tokio::test]
async fn a_parameter_that_is_not_ours_is_never_decrypted_however_often_it_is_checked() {
    let s = Scene::new("nodecrypt").await;
    s.ssm
        .put_parameter()
        .name(s.param("taken"))
        .value("someone else's")
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .expect("put");
    let op = s.operator(&[]).await;
    s.one_password("taken", "ops_mine", "Delete");
    s.wait_reason("taken", "ParameterNotOwned", 20).await;
    for round in 0..3 {
        s.touch("taken", &round.to_string()).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let looks = s.proxy.calls_naming(&s.param("taken"));
    assert!(looks >= 4, "it was checked again and again: {looks} calls");
    assert_eq!(s.proxy.decrypting_reads_of(&s.param("taken")), 0);
    assert_eq!(
        op.ssm_calls("GetParameter").await,
        0,
        "by the operator's count too"
    );
    assert_eq!(
        s.read("taken").await.map(|(v, _)| v).as_deref(),
        Some("someone else's")
    );
}
