//! `--parameter-tier` against the SSM emulator: what the operator asks for, and what SSM (moto)
//! stores and describes. `standard` keeps Standard (Advanced only for a value over 4 KB),
//! `advanced` brings every parameter to Advanced (an existing Standard one too: a tier is never
//! lowered), `intelligent-tiering` asks SSM to pick.

mod common;

use aws_sdk_ssm::types::{ParameterStringFilter, ParameterTier};

use common::{Options, World};

/// The tier SSM describes for parameter NAME.
async fn described(w: &World, name: &str) -> Option<String> {
    let filter = ParameterStringFilter::builder()
        .key("Name")
        .option("Equals")
        .values(name)
        .build()
        .expect("a filter");
    let out = w
        .ssm
        .describe_parameters()
        .parameter_filters(filter)
        .send()
        .await
        .expect("DescribeParameters");
    out.parameters()
        .first()
        .and_then(|p| p.tier().map(|t| t.as_str().to_owned()))
}

/// The tier connection NAME's status records.
async fn recorded(w: &World, name: &str) -> String {
    let vc = w.vcs().get(name).await.expect("the connection");
    vc.status
        .and_then(|s| s.parameter)
        .map(|p| p.tier)
        .unwrap_or_default()
}

fn tier(choice: &str) -> Options {
    Options::new()
        .env("VCO_PARAMETER_TIER", choice)
        .env("VCO_DEFAULT_TIER", "enterprise")
}

#[tokio::test]
async fn standard_by_default_and_advanced_upgrades_what_exists() {
    let Some(w) = World::new("ptier").await else {
        return;
    };
    let mut op = w.operator_with(tier("standard")).await;
    w.one_password("small", "ops_small").await;
    w.wait_reason("small", "Synced").await;
    assert_eq!(
        described(&w, &w.param("small")).await.as_deref(),
        Some("Standard")
    );
    assert_eq!(recorded(&w, "small").await, "Standard");
    op.kill();

    let _op = w.operator_with(tier("advanced")).await;
    w.one_password("fresh", "ops_fresh").await;
    w.wait_reason("fresh", "Synced").await;
    assert_eq!(
        described(&w, &w.param("fresh")).await.as_deref(),
        Some("Advanced")
    );
    assert_eq!(recorded(&w, "fresh").await, "Advanced");
    // The existing Standard parameter is brought up once its connection is checked (a change
    // of the connection, here; the drift sweep does not compare tiers).
    w.patch(
        "small",
        serde_json::json!({"spec": {"description": "now advanced"}}),
    )
    .await;
    common::eventually(20, "the upgrade", || async {
        (described(&w, &w.param("small")).await.as_deref() == Some("Advanced")).then_some(())
    })
    .await;
    common::eventually(10, "status to record it", || async {
        (recorded(&w, "small").await == "Advanced").then_some(())
    })
    .await;
}

#[tokio::test]
async fn intelligent_tiering_is_asked_for_and_ssm_picks() {
    let Some(w) = World::new("itier").await else {
        return;
    };
    // What the emulator makes of the request itself, independently of the operator.
    let probe = format!("{}/probe", w.prefix);
    w.ssm
        .put_parameter()
        .name(&probe)
        .value("v")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .tier(ParameterTier::IntelligentTiering)
        .send()
        .await
        .expect("the emulator accepts Intelligent-Tiering");
    eprintln!(
        "moto stores an Intelligent-Tiering request as: {:?}",
        described(&w, &probe).await
    );
    common::ssm::delete(&w.ssm, &probe).await;

    let _op = w.operator_with(tier("intelligent-tiering")).await;
    w.one_password("it", "ops_it").await;
    w.wait_reason("it", "Synced").await;
    let stored = described(&w, &w.param("it")).await;
    eprintln!("the operator's parameter under intelligent-tiering: {stored:?}");
    // AWS describes the tier it picked (Standard or Advanced); moto echoes the request, which
    // shows the operator asked for Intelligent-Tiering (under `standard` it describes Standard).
    assert!(
        matches!(
            stored.as_deref(),
            Some("Intelligent-Tiering" | "Standard" | "Advanced")
        ),
        "{stored:?}"
    );
    assert_eq!(
        recorded(&w, "it").await,
        "Standard",
        "the floor status records"
    );
    // A rotation under the same choice works too (an overwrite asks for it again).
    w.rotate("it", "access_token", "ops_it2").await;
    common::eventually(10, "the rotation", || async {
        w.read("it").await.filter(|(_, v)| *v == 2).map(|_| ())
    })
    .await;
}
