use super::*;
use crate::reason::Reason;
use crate::reconcile::slim;
use crate::status::{Change, Failure, Outcome, next};

fn common() -> Common {
    Common {
        parameter_prefix: "/vault-connections/bench/".into(),
        default_kms_key_id: "alias/aws/ssm".into(),
        policy: "1-5dfd3eb144ad".into(),
    }
}

/// The synced connection captured from a real operator run, slimmed as the watch slims it.
fn synced() -> VaultConnection {
    let text = include_str!("../../../tests/fixtures/footprint/connection.json");
    let mut vc: VaultConnection = serde_json::from_str(text).expect("the fixture parses");
    slim::connection(&mut vc);
    vc
}

fn compact(vc: &VaultConnection) -> Compact {
    Compact::new(vc, &common())
}

fn expand(c: &Compact, vc: &VaultConnection) -> VaultConnection {
    let m = &vc.metadata;
    c.expand(
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
        &common(),
    )
}

fn with_outcome(outcome: &Outcome) -> VaultConnection {
    let mut vc = synced();
    let now = Time(jiff::Timestamp::from_second(1_800_000_000).expect("a time"));
    let mut status = next(vc.status.as_ref(), vc.metadata.generation, outcome, now);
    crate::status::drop_derived_messages(&mut status);
    vc.status = Some(status);
    vc
}

#[test]
fn a_synced_connection_is_kept_compact_and_expands_to_exactly_itself() {
    let vc = synced();
    let c = compact(&vc);
    assert!(c.is_slim(), "{c:?}");
    assert!(same(&expand(&c, &vc), &vc));
    // What the sweep, tier admission and the metrics read, without expanding.
    assert_eq!(c.uid(), vc.metadata.uid);
    assert_eq!(c.resource_version().as_deref(), Some("1000000"));
    assert_eq!(c.secret(), "conn-00000");
    assert!(!c.deleting());
    let r = c.readiness().expect("a Ready condition");
    assert!(r.ready && r.status == "True" && r.reason == "Synced");
    let recorded = vc.status.as_ref().and_then(|s| s.parameter.clone());
    assert_eq!(c.parameter("bench-0", "conn-00000", &common()), recorded);
    assert_eq!(
        c.parameter_name("bench-0", "conn-00000", &common())
            .as_deref(),
        Some("/vault-connections/bench/bench-0/conn-00000")
    );
}

#[test]
fn failures_keep_their_messages_and_stay_compact() {
    let refused = Failure::new(
        Reason::TierLimitExceeded,
        "namespace bench-0 has tier free, which allows 1 connection",
    );
    let outcomes = [
        Outcome::NotReady(refused),
        Outcome::NotReady(Failure::new(
            Reason::Throttled,
            "SSM throttled the operator",
        )),
        Outcome::NotReady(Failure::new(Reason::InvalidSpec, "spec.doppler: required")),
        Outcome::Ready {
            parameter: synced().status.and_then(|s| s.parameter).expect("recorded"),
            change: Change::Updated,
        },
    ];
    for outcome in &outcomes {
        let vc = with_outcome(outcome);
        let c = compact(&vc);
        assert!(c.is_slim(), "{outcome:?}: {c:?}");
        assert!(same(&expand(&c, &vc), &vc), "{outcome:?}");
        assert_eq!(
            c.readiness().map(|r| r.reason),
            Some(outcome.reason().as_str())
        );
    }
}

#[test]
fn values_other_than_the_operators_own_are_kept_as_they_are() {
    let mut vc = synced();
    let p = vc
        .status
        .as_mut()
        .and_then(|s| s.parameter.as_mut())
        .expect("recorded");
    p.name = "/legacy/name".into();
    p.kms_key_id = Some("alias/team-key".into());
    p.policy = None;
    p.secret_resource_version = None;
    vc.metadata.deletion_timestamp = vc.metadata.creation_timestamp.clone();
    vc.metadata.deletion_grace_period_seconds = Some(0);
    vc.metadata.annotations = Some([("vaultconnections.io/reverify".into(), "1".into())].into());
    let c = compact(&vc);
    assert!(c.is_slim(), "{c:?}");
    assert!(same(&expand(&c, &vc), &vc));
    assert!(c.deleting());
    assert_eq!(
        c.parameter_name("bench-0", "conn-00000", &common())
            .as_deref(),
        Some("/legacy/name")
    );
}

#[test]
fn an_unusual_shape_is_kept_whole_and_read_the_same() {
    let odd: [fn(&mut VaultConnection); 7] = [
        |vc| vc.metadata.finalizers = Some(vec!["example.com/other".into()]),
        |vc| vc.metadata.generate_name = Some("conn-".into()),
        |vc| vc.metadata.uid = Some("not-a-uuid".into()),
        |vc| vc.metadata.resource_version = Some("007".into()),
        |vc| {
            let s = vc.status.as_mut().expect("status");
            s.conditions[0].reason = "SomethingNew".into();
        },
        |vc| {
            let s = vc.status.as_mut().expect("status");
            s.conditions[1].type_ = "Custom".into();
        },
        |vc| {
            let p = vc.status.as_mut().and_then(|s| s.parameter.as_mut());
            p.expect("recorded").last_modified = Some("yesterday".into());
        },
    ];
    for (i, change) in odd.iter().enumerate() {
        let mut vc = synced();
        change(&mut vc);
        let c = compact(&vc);
        assert!(!c.is_slim(), "shape {i} kept whole");
        assert!(same(&expand(&c, &vc), &vc), "shape {i}");
        assert_eq!(c.uid(), vc.metadata.uid, "shape {i}");
        assert_eq!(c.resource_version(), vc.metadata.resource_version);
        assert_eq!(c.secret(), vc.spec.credentials_secret_ref.name);
        let ready =
            crate::status::ready_condition(&vc).map(|c| (c.status.as_str(), c.reason.as_str()));
        assert_eq!(
            c.readiness().map(|r| (r.status, r.reason)),
            ready,
            "shape {i}"
        );
    }
}

#[test]
fn every_word_has_one_code_and_ready_is_first() {
    assert_eq!(word(READY), Some("Ready"));
    for (i, w) in WORDS.iter().enumerate() {
        assert_eq!(code(w).map(usize::from), Some(i), "{w} appears once");
    }
    assert!(WORDS.len() < usize::from(u8::MAX));
    for reason in Reason::ALL {
        assert!(code(reason.as_str()).is_some(), "{reason:?}");
    }
}

#[test]
fn the_compact_form_is_a_fraction_of_the_kubernetes_type() {
    // Inline sizes only; the allocations each saves are counted by tests/cache_footprint.rs.
    let slim = std::mem::size_of::<Slim>() + std::mem::size_of::<SlimStatus>();
    let whole = std::mem::size_of::<VaultConnection>();
    assert!(slim < whole, "{slim} >= {whole}");
    assert_eq!(std::mem::size_of::<Compact>(), 16);
}
