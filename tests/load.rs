//! Load: 1,000 connections created at once, with SSM writes held to a client-side rate. No
//! failure reaches users, all end Ready, and SSM sees exactly the minimum of calls.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use vault_connection_operator::api::{
    CredentialsSecretRef, VaultConnection, VaultConnectionSpec, VaultType,
};
use vault_connection_operator::status::ready_reason;

use common::{Operator, OperatorOptions, TestEnv, eventually, install_crd, namespace, unique};

const N: usize = 1000;
const WRITE_RATE: u32 = 50;

#[tokio::test]
async fn a_thousand_connections_at_once_all_become_ready_with_minimal_ssm_calls() {
    let env = TestEnv::get();
    let client = env.kube().await;
    install_crd(&client).await;
    let ns = namespace(&client, "load").await;
    let prefix = format!("/{}", unique("load"));
    let opts = OperatorOptions {
        env: vec![
            ("VCO_SSM_WRITE_RATE".into(), WRITE_RATE.to_string()),
            // Reads (one GetParameter per create) must not be the bottleneck here.
            ("VCO_SSM_READ_RATE".into(), (2 * WRITE_RATE).to_string()),
            ("VCO_DEFAULT_TIER".into(), "enterprise".into()),
            ("VCO_LOG_LEVEL".into(), "info".into()),
        ],
    };
    let op = Operator::start(&env, &ns, &prefix, &opts).await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let vcs: Api<VaultConnection> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    futures::stream::iter(0..N)
        .map(|i| {
            let (secrets, vcs) = (secrets.clone(), vcs.clone());
            async move {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("s{i}")),
                        labels: Some(BTreeMap::from([(
                            "vaultconnections.io/credentials".to_owned(),
                            "true".to_owned(),
                        )])),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(
                        "access_token".to_owned(),
                        ByteString(format!("ops_load{i}").into_bytes()),
                    )])),
                    ..Default::default()
                };
                secrets.create(&PostParams::default(), &secret).await?;
                let vc = VaultConnection::new(
                    &format!("c{i}"),
                    VaultConnectionSpec {
                        vault_type: VaultType::OnePassword,
                        display_name: None,
                        description: None,
                        credentials_secret_ref: CredentialsSecretRef {
                            name: format!("s{i}"),
                            keys: None,
                        },
                        doppler: None,
                        infisical: None,
                        ssm: None,
                        deletion_policy: Default::default(),
                    },
                );
                vcs.create(&PostParams::default(), &vc).await.map(drop)
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("create the connections");
    let created = started.elapsed();

    let ready = eventually(600, "all connections to be Ready", || async {
        let list = vcs.list(&ListParams::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|vc| ready_reason(vc) == Some("Synced"))
            .count();
        (ready == N).then_some(started.elapsed())
    })
    .await;
    let floor = Duration::from_secs_f64(N as f64 / f64::from(WRITE_RATE));
    println!(
        "load: {N} connections created in {created:?}, all Ready after {ready:?} \
         (write-rate floor {floor:?} at {WRITE_RATE}/s)"
    );
    assert!(
        ready >= floor.mul_f64(0.9),
        "the client-side write rate was honoured"
    );

    // Exactly the minimum: one read (not found) and one write per connection, nothing failed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = op.metrics_text().await;
    let calls: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("vault_connection_operator_ssm_calls_total{"))
        .collect();
    println!("load: SSM calls {calls:?}");
    assert_eq!(op.ssm_calls("PutParameter").await, N as u64, "{calls:?}");
    let gets = op.ssm_calls("GetParameter").await;
    assert!(
        gets <= N as u64 + N as u64 / 50,
        "GetParameter {gets} for {N} creates"
    );
    assert!(
        calls
            .iter()
            .all(|l| l.contains("outcome=\"success\"") || l.contains("outcome=\"not_found\"")),
        "{calls:?}"
    );
    assert!(
        !metrics.contains("vault_connection_operator_reconcile_errors_total{"),
        "no reconcile failed"
    );
    let events: Api<Event> = Api::namespaced(client, &ns);
    let warnings: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        warnings.is_empty(),
        "no failure surfaced to users: {warnings:?}"
    );
}
