//! Tier limits against the real API server and SSM emulator: a namespace holds no more
//! parameters than its tier allows (retained and orphaned ones count), a served connection
//! keeps its slot, and connections created at once take exactly the free slots.

mod common;

use std::time::Duration;

use serde_json::json;

use common::{Connection, Credentials, World, cond, eventually};

#[tokio::test]
async fn the_tier_limit_bounds_parameters_and_a_served_connection_keeps_its_slot() {
    let Some(w) = World::new("tiers").await else {
        return;
    };
    w.set_tier("free").await; // free = 1
    let op = w.operator().await;

    w.one_password("first", "ops_a").await;
    w.wait_reason("first", "Synced").await;
    w.one_password("second", "ops_b").await;
    let vc = w.wait_reason("second", "TierLimitExceeded").await;
    let (_, _, message) = cond(&vc, "Ready");
    assert!(
        message.contains("tier free") && message.contains("allows 1"),
        "{message}"
    );
    assert!(
        !message.contains("number"),
        "no position that changes with others: {message}"
    );
    w.nothing_written("second").await;

    // Events of a served sibling do not re-check the refused one: only a freed slot does.
    let refused = op.reconciles("TierLimitExceeded").await;
    for i in 0..3 {
        w.rotate("first", "access_token", &format!("ops_a{i}"))
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
        op.reconciles("TierLimitExceeded").await,
        refused,
        "no cascade"
    );

    // Deleting the served connection (policy Delete) frees its slot for the refused one.
    w.delete_and_wait("first").await;
    w.wait_reason("second", "Synced").await;

    // Raising the tier is picked up; lowering it again displaces nobody that holds a parameter.
    w.one_password("third", "ops_c").await;
    w.wait_reason("third", "TierLimitExceeded").await;
    w.set_tier("team").await;
    w.wait_reason("third", "Synced").await;
    w.set_tier("free").await;
    w.one_password("fourth", "ops_d").await;
    w.wait_reason("fourth", "TierLimitExceeded").await;
    w.rotate("third", "access_token", "ops_c2").await;
    eventually(
        10,
        "a rotation of a connection over the lowered limit",
        || async { w.read("third").await.filter(|(_, v)| *v == 2).map(|_| ()) },
    )
    .await;
    for name in ["second", "third"] {
        let vc = w.wait_reason(name, "Synced").await;
        assert_eq!(cond(&vc, "Ready").0, "True", "{name} keeps its slot");
    }
    w.nothing_written("fourth").await;
}

#[tokio::test]
async fn connections_created_at_once_take_exactly_the_free_slots() {
    let Some(w) = World::new("race").await else {
        return;
    };
    w.set_tier("free").await; // free = 1
    let _op = w.operator().await;
    let names: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    let objects: Vec<common::Object> = names
        .iter()
        .flat_map(|n| {
            [
                Credentials::secret(n).token(&format!("ops_{n}")).into(),
                Connection::onepassword(n).into(),
            ]
        })
        .collect();
    // One `kubectl apply` for all of them, so they arrive together.
    w.apply_yaml(&common::fixtures::yaml(&objects));
    let reasons = eventually(30, "every connection to be decided", || async {
        let mut reasons = Vec::new();
        for n in &names {
            let vc = w.vcs().get(n).await.ok()?;
            reasons.push(common::condition(&vc, "Ready")?.reason.clone());
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
    let Some(w) = World::new("fill").await else {
        return;
    };
    w.set_tier("free").await; // free = 1
    let mut op = w.operator().await;

    // Round 1: a Retain connection is served, then deleted: its parameter stays and counts.
    w.apply(Credentials::secret("r0").token("ops_0")).await;
    w.apply(Connection::onepassword("r0").retain()).await;
    w.wait_reason("r0", "Synced").await;
    w.delete_and_wait("r0").await;
    assert!(w.read("r0").await.is_some(), "retained");
    w.one_password("r1", "ops_1").await;
    let vc = w.wait_reason("r1", "TierLimitExceeded").await;
    let ready = cond(&vc, "Ready");
    assert!(ready.2.contains("retained"), "{ready:?}");
    w.nothing_written("r1").await;

    // Removing the retained parameter frees the slot (a change to the connection re-checks it).
    common::ssm::delete(&w.ssm, &w.param("r0")).await;
    w.patch("r1", json!({"metadata": {"annotations": {"retry": "1"}}}))
        .await;
    w.wait_reason("r1", "Synced").await;

    // Round 2: deleted while the operator was down, and its finalizer removed by hand: the
    // parameter left behind counts too.
    op.kill();
    w.delete("r1").await;
    w.patch("r1", json!({"metadata": {"finalizers": null}}))
        .await;
    w.wait_gone("r1").await;
    assert!(w.read("r1").await.is_some(), "left behind without cleanup");
    let _op = w.operator().await;
    for round in 2..5 {
        let name = format!("r{round}");
        w.one_password(&name, "ops_n").await;
        w.wait_reason(&name, "TierLimitExceeded").await;
        w.nothing_written(&name).await;
        w.delete_and_wait(&name).await;
    }
    assert_eq!(
        w.stored().await,
        1,
        "the namespace holds no more than its tier allows"
    );
}
