//! Evidence, not records: what SSM holds is checked against what the operator's own writes
//! produced and the tags SSM holds, never against a record someone else can edit (status) or
//! repeat (a version number after a delete, a namespace name after a namespace is deleted).
//! Every SSM call of these tests' operators goes through a proxy that counts them, decrypting
//! reads included.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use vault_connection_operator::api::TIER_LABEL;

use common::fake_ssm::SsmProxy;
use common::{Connection, Credentials, Operator, Options, World, cond, condition, eventually, ssm};

/// A world whose operators reach SSM through a counting proxy.
struct Counted {
    w: World,
    proxy: SsmProxy,
    endpoint: String,
}

impl Counted {
    async fn new(name: &str) -> Option<Counted> {
        let w = World::new(name).await?;
        let (proxy, endpoint) = SsmProxy::start(w.env.ssm_endpoint.clone()).await;
        Some(Counted { w, proxy, endpoint })
    }

    async fn operator(&self, opts: Options) -> Operator {
        self.w
            .operator_with(opts.env("AWS_ENDPOINT_URL_SSM", self.endpoint.clone()))
            .await
    }

    /// Decrypting reads of connection NAME's parameter so far.
    fn decrypted(&self, name: &str) -> usize {
        self.proxy.decrypting_reads_of(&self.w.param(name))
    }

    /// Deletes connection NAME's parameter and puts VALUE in its place with TAGS, as someone with
    /// SSM rights around the operator would.
    async fn replace_out_of_band(&self, name: &str, value: &str, tags: &[(&str, &str)]) {
        ssm::delete(&self.w.ssm, &self.w.param(name)).await;
        ssm::create(&self.w.ssm, &self.w.param(name), value, tags).await;
    }
}

/// The document of a 1Password connection NAME holding TOKEN, byte for byte (fixed key order).
fn onepassword_document(name: &str, token: &str) -> String {
    format!(
        r#"{{"vault_type":"onepassword","name":"{name}","description":"","access_token":"{token}"}}"#
    )
}

#[tokio::test]
async fn a_foreign_value_put_after_a_delete_is_found_within_one_drift_interval() {
    let Some(c) = Counted::new("reset").await else {
        return;
    };
    let w = &c.w;
    let _op = c
        .operator(Options::new().env("VCO_DRIFT_CHECK_INTERVAL", "3s"))
        .await;
    w.one_password("plain", "ops_ours0").await;
    w.one_password("copied", "ops_ours1").await;
    w.wait_reason("plain", "Synced").await;
    w.wait_reason("copied", "Synced").await;

    // Deleted and put again once: version 1 again, as the operator recorded, but not its write.
    // One without tags (not ours any more), one with our tags copied onto it.
    let tags = w.tags("copied").await;
    let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    c.replace_out_of_band("plain", "someone else's", &[]).await;
    c.replace_out_of_band("copied", "someone else's", &tags)
        .await;
    let decrypted_before = c.decrypted("plain");

    let vc = w.wait_reason("plain", "ParameterNotOwned").await;
    let message = cond(&vc, "Ready").2;
    assert!(message.contains("will not read"), "{message}");
    assert_eq!(
        w.read("plain").await,
        Some(("someone else's".to_owned(), 1)),
        "left exactly as it was"
    );
    assert_eq!(
        c.decrypted("plain"),
        decrypted_before,
        "a parameter that is not ours is never decrypted"
    );

    let repaired = eventually(15, "the copied-tags parameter to be repaired", || async {
        w.read("copied")
            .await
            .filter(|(v, _)| *v == onepassword_document("copied", "ops_ours1"))
    })
    .await;
    assert_eq!(repaired.1, 2, "one write over the foreign version");
    w.wait_reason("copied", "Synced").await;
}

#[tokio::test]
async fn a_status_patched_by_a_cluster_admin_takes_no_tier_slot() {
    let Some(w) = World::new("forged").await else {
        return;
    };
    w.set_tier("free").await; // free = 1
    let _op = w.operator().await;
    w.one_password("served", "ops_a").await;
    w.wait_reason("served", "Synced").await;
    w.one_password("refused", "ops_b").await;
    w.wait_reason("refused", "TierLimitExceeded").await;

    // Someone who may write status claims the refused connection already holds its parameter.
    let forged = json!({"status": {"parameter": {
        "name": w.param("refused"), "version": 1, "tier": "Standard"}}});
    w.vcs()
        .patch_status("refused", &PatchParams::default(), &Patch::Merge(&forged))
        .await
        .expect("patch status");
    w.patch(
        "refused",
        json!({"metadata": {"annotations": {"test/touch": "1"}}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let vc = w.wait_reason("refused", "TierLimitExceeded").await;
    let message = cond(&vc, "Ready").2;
    assert!(message.contains("allows 1"), "{message}");
    w.nothing_written("refused").await;
    assert_eq!(
        w.stored().await,
        1,
        "the namespace still holds one parameter"
    );
}

#[tokio::test]
async fn a_twin_cluster_restored_with_our_status_never_overwrites_our_parameter() {
    let Some(c) = Counted::new("twin").await else {
        return;
    };
    let w = &c.w;
    let mut prod = c
        .operator(Options::new().env("VCO_CLUSTER_ID", "prod-id"))
        .await;
    w.apply(Credentials::secret("db").token("ops_prod")).await;
    w.apply(Connection::onepassword("db").retain()).await;
    w.wait_reason("db", "Synced").await;
    prod.kill();

    // The same objects, status included, under an operator with the same cluster name and
    // another identity (a restore into a DR cluster); the Secret then changes.
    let _dr = c
        .operator(Options::new().env("VCO_CLUSTER_ID", "dr-id"))
        .await;
    w.rotate("db", "access_token", "ops_dr").await;
    let vc = w.wait_reason("db", "ParameterNotOwned").await;
    let message = cond(&vc, "Ready").2;
    assert!(message.contains("another cluster"), "{message}");
    assert_eq!(
        w.read("db").await,
        Some((onepassword_document("db", "ops_prod"), 1)),
        "prod's parameter is untouched"
    );
    assert_eq!(
        c.decrypted("db"),
        0,
        "neither operator decrypted it: prod wrote it, dr may not read it"
    );
}

#[tokio::test]
async fn a_reused_namespace_name_never_touches_the_previous_tenants_parameter() {
    let Some(c) = Counted::new("reuse").await else {
        return;
    };
    let w = &c.w;
    let _op = c.operator(Options::new()).await;
    w.apply(Credentials::secret("db").token("ops_tenant1"))
        .await;
    w.apply(Connection::onepassword("db").retain()).await;
    w.wait_reason("db", "Synced").await;
    w.delete_and_wait("db").await;
    let namespaces: Api<Namespace> = Api::all(w.client.clone());
    namespaces
        .delete(&w.ns, &DeleteParams::default())
        .await
        .expect("delete the namespace");
    eventually(60, "the namespace to be gone", || async {
        namespaces
            .get_opt(&w.ns)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // A new tenant gets a namespace of the same name, on the smallest tier.
    let again = Namespace {
        metadata: ObjectMeta {
            name: Some(w.ns.clone()),
            labels: Some([(TIER_LABEL.to_owned(), "free".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &again)
        .await
        .expect("create the namespace again");
    let decrypted_before = c.decrypted("db");
    w.apply(Credentials::secret("db").token("ops_tenant2"))
        .await;
    w.apply(Connection::onepassword("db")).await;
    let vc = w.wait_reason("db", "ParameterNotOwned").await;
    let message = cond(&vc, "Ready").2;
    assert!(message.contains("earlier namespace"), "{message}");
    // The old parameter takes no slot of the new namespace's tier.
    w.one_password("other", "ops_other").await;
    w.wait_reason("other", "Synced").await;
    // Deleting the new connection (policy Delete) leaves the old parameter too.
    w.delete_and_wait("db").await;
    assert_eq!(
        w.read("db").await,
        Some((onepassword_document("db", "ops_tenant1"), 1)),
        "never overwritten, adopted or deleted"
    );
    assert_eq!(c.decrypted("db"), decrypted_before, "never decrypted");

    // Asked explicitly by someone who may edit the connection (and with room on the tier), the
    // new tenant takes it over.
    w.set_tier("team").await;
    w.apply(
        Connection::onepassword("db").annotation("vaultconnections.io/adopt-parameter", "true"),
    )
    .await;
    w.wait_reason("db", "Synced").await;
    assert_eq!(
        w.read("db").await,
        Some((onepassword_document("db", "ops_tenant2"), 2))
    );
    let uid = namespaces
        .get(&w.ns)
        .await
        .expect("the namespace")
        .metadata
        .uid
        .expect("a uid");
    assert_eq!(
        w.tags("db").await.get("vaultconnections.io/namespace-uid"),
        Some(&uid),
        "tagged with the new namespace's uid"
    );
}

#[tokio::test]
async fn a_tightened_flag_turns_a_stored_personal_token_stalled_after_a_restart() {
    let Some(w) = World::new("policy").await else {
        return;
    };
    let mut lenient = w
        .operator_with(Options::new().env("VCO_ALLOW_DOPPLER_PERSONAL_TOKENS", "true"))
        .await;
    w.apply(Credentials::secret("dp").token("dp.pt.FAKEpersonalTOKEN0000000000000000000000"))
        .await;
    w.apply(Connection::doppler("dp")).await;
    w.wait_reason("dp", "Synced").await;
    let stored = w.read("dp").await.expect("stored");
    lenient.kill();

    let _strict = w.operator().await;
    let vc = w.wait_reason("dp", "InvalidCredentials").await;
    let stalled = condition(&vc, "Stalled").expect("a Stalled condition");
    assert_eq!(stalled.status, "True", "a person must act");
    let message = cond(&vc, "Ready").2;
    assert!(message.contains("dp.pt."), "names the rule: {message}");
    assert!(
        message.contains("stay in SSM parameter"),
        "says what stays: {message}"
    );
    assert_eq!(
        w.read("dp").await,
        Some(stored),
        "the parameter stays as it was"
    );
}

#[tokio::test]
async fn a_parameter_that_is_not_ours_is_never_decrypted_however_often_it_is_checked() {
    let Some(c) = Counted::new("nodecrypt").await else {
        return;
    };
    let w = &c.w;
    ssm::create(&w.ssm, &w.param("taken"), "someone else's", &[]).await;
    let op = c.operator(Options::new()).await;
    w.one_password("taken", "ops_mine").await;
    w.wait_reason("taken", "ParameterNotOwned").await;
    for round in 0..3 {
        w.patch(
            "taken",
            json!({"metadata": {"annotations": {"test/touch": round.to_string()}}}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let looks = c.proxy.calls_naming(&w.param("taken"));
    assert!(looks >= 4, "it was checked again and again: {looks} calls");
    assert_eq!(c.decrypted("taken"), 0);
    assert_eq!(
        op.ssm_calls("GetParameter").await,
        0,
        "by the operator's count too"
    );
    assert_eq!(
        w.read("taken").await.map(|(v, _)| v).as_deref(),
        Some("someone else's")
    );
}
