//! The test environment itself works: a real kube-apiserver, kube-controller-manager and the SSM
//! emulator answer.

mod common;

use std::collections::BTreeMap;

use aws_sdk_ssm::types::ParameterType;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use common::{TestEnv, World, eventually, unique};

#[tokio::test]
async fn kube_apiserver_stores_and_returns_a_secret() {
    let Some(w) = World::new("env").await else {
        return;
    };
    let secrets = w.secrets();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("probe".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "key".to_owned(),
            ByteString(b"value-1".to_vec()),
        )])),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");

    let read = secrets.get("probe").await.expect("read secret back");
    let data = read.data.expect("secret has data");
    assert_eq!(data["key"].0, b"value-1");
    assert!(read.metadata.uid.is_some(), "the API server assigned a uid");
}

#[tokio::test]
async fn ssm_emulator_stores_and_decrypts_a_secure_string() {
    let Some(env) = TestEnv::live() else {
        return;
    };
    let ssm = env.ssm().await;
    let name = format!("/testenv/{}", unique("probe"));
    ssm.put_parameter()
        .name(&name)
        .value("s3cr3t-value")
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .expect("put parameter");

    let got = ssm
        .get_parameter()
        .name(&name)
        .with_decryption(true)
        .send()
        .await
        .expect("get parameter");
    let parameter = got.parameter.expect("parameter returned");
    assert_eq!(parameter.value.as_deref(), Some("s3cr3t-value"));
    assert_eq!(parameter.r#type, Some(ParameterType::SecureString));
    assert_eq!(parameter.version, 1);
}

#[tokio::test]
async fn kube_apiserver_enforces_rbac_for_unprivileged_users() {
    let Some(env) = TestEnv::live() else {
        return;
    };
    let out = env.kubectl(&["auth", "can-i", "list", "secrets", "--as=nobody", "-A"]);
    assert_eq!(
        out.stdout.trim(),
        "no",
        "RBAC must deny an unbound user (stderr: {})",
        out.stderr
    );
}

#[tokio::test]
async fn a_deleted_namespace_is_emptied_and_really_goes_away() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::DeleteParams;

    let Some(w) = World::new("env-delete").await else {
        return;
    };
    let (client, ns) = (&w.client, &w.ns);
    let secrets = w.secrets();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("content".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");

    // kube-controller-manager's namespace controller deletes the content, then the namespace.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    eventually(60, "the namespace to be gone", || async {
        namespaces
            .get_opt(ns)
            .await
            .expect("get namespace")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        secrets.get_opt("content").await.expect("get").is_none(),
        "its content went with it"
    );
}

#[tokio::test]
async fn the_api_server_runs_the_kubernetes_version_the_environment_names() {
    let Some(env) = TestEnv::live() else {
        return;
    };
    let info = env
        .kube()
        .await
        .apiserver_version()
        .await
        .expect("the API server's version");
    assert_eq!(
        info.git_version,
        format!("v{}", env.kube_version),
        "the compatibility run (hack/test.sh, up --floor) must reach the oldest supported API server"
    );
}
