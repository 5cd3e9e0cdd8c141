//! Two operator replicas: exactly one reconciles, and a standby takes over when the leader dies.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_ssm::error::ProvideErrorMetadata;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};

use common::{Operator, OperatorOptions, TestEnv, eventually, install_crd, namespace, unique};

fn reconciles(op: &Operator) -> usize {
    op.logs()
        .lines()
        .filter(|l| l.contains("\"message\":\"reconciled\""))
        .count()
}

fn leads(op: &Operator) -> bool {
    op.logs().contains("\"message\":\"became leader\"")
}

#[tokio::test]
async fn exactly_one_replica_reconciles_and_a_standby_takes_over_when_the_leader_dies() {
    let env = TestEnv::get();
    let client = env.kube().await;
    install_crd(&client).await;
    let ns = namespace(&client, "leader").await;
    let prefix = format!("/{}", unique("le"));
    let lease_duration = Duration::from_secs(4);
    let opts = OperatorOptions {
        env: vec![
            ("VCO_LEADER_ELECTION".into(), "true".into()),
            ("VCO_LEASE_NAMESPACE".into(), ns.clone()),
            ("VCO_LEASE_NAME".into(), unique("lease")),
            (
                "VCO_LEASE_DURATION".into(),
                format!("{}s", lease_duration.as_secs()),
            ),
        ],
    };
    let mut a = Operator::start(&env, &ns, &prefix, &opts).await;
    let mut b = Operator::start(&env, &ns, &prefix, &opts).await;
    eventually(15, "one replica to lead", || async {
        (leads(&a) || leads(&b)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(leads(&a) ^ leads(&b), "exactly one leader");
    let (leader, standby) = if leads(&a) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };

    env.apply(
        &ns,
        r#"apiVersion: v1
kind: Secret
metadata: {name: creds, labels: {vaultconnections.io/credentials: "true"}}
stringData: {access_token: "ops_one"}
---
apiVersion: vaultconnections.io/v1alpha1
kind: VaultConnection
metadata: {name: le}
spec: {vaultType: onepassword, credentialsSecretRef: {name: creds}}
"#,
    );
    let ssm = env.ssm().await;
    let param = format!("{prefix}/default/{ns}/le");
    let version = |ssm: aws_sdk_ssm::Client, param: String| async move {
        match ssm.get_parameter().name(param).send().await {
            Ok(out) => out.parameter.map(|p| p.version),
            Err(e) if e.code() == Some("ParameterNotFound") => None,
            Err(e) => panic!("{e:?}"),
        }
    };
    eventually(15, "the leader to write the parameter", || {
        version(ssm.clone(), param.clone())
    })
    .await;
    // The parameter is written before the reconcile logs its end, so wait for the log line.
    eventually(10, "the leader to log its reconcile", || async {
        (reconciles(leader) > 0).then_some(())
    })
    .await;
    assert_eq!(reconciles(standby), 0, "the standby does not reconcile");

    leader.kill();
    let killed = Instant::now();
    eventually(30, "the standby to take over", || async {
        leads(standby).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    println!(
        "takeover after SIGKILL of the leader: {takeover:?} (lease duration {lease_duration:?})"
    );
    assert!(
        takeover <= lease_duration * 2 + Duration::from_secs(2),
        "took {takeover:?} with a {lease_duration:?} lease"
    );

    // The new leader serves rotations.
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    let patch = serde_json::json!({"stringData": {"access_token": "ops_two"}});
    secrets
        .patch("creds", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(15, "the new leader to write version 2", || async {
        version(ssm.clone(), param.clone())
            .await
            .filter(|v| *v == 2)
    })
    .await;
}
