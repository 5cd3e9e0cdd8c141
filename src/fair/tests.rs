use std::time::Duration;

use super::*;

/// Turns produced once a second (on the paused test clock).
fn per_second() -> Turns<()> {
    Turns::new(Arc::new(|| {
        Box::pin(async { tokio::time::sleep(Duration::from_secs(1)).await })
    }))
}

/// Who got each turn, in order, when `burst` callers of tenant "a" queue before one of "b".
async fn order(turns: Turns<()>, burst: usize) -> Vec<&'static str> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for _ in 0..burst {
        let (turns, tx) = (turns.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            turns.turn("a").await.expect("dispatcher alive");
            tx.send("a").ok();
        }));
    }
    // Let the burst queue up before the quiet tenant asks.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let (t, tx2) = (turns.clone(), tx.clone());
    tasks.push(tokio::spawn(async move {
        t.turn("b").await.expect("dispatcher alive");
        tx2.send("b").ok();
    }));
    drop(tx);
    for task in tasks {
        task.await.expect("task");
    }
    let mut got = Vec::new();
    while let Some(who) = rx.recv().await {
        got.push(who);
    }
    got
}

#[tokio::test(start_paused = true)]
async fn a_quiet_tenant_waits_at_most_one_turn_behind_a_burst() {
    let got = order(per_second(), 10).await;
    assert_eq!(got.len(), 11, "every caller got a turn: {got:?}");
    let b = got.iter().position(|w| *w == "b").expect("b served");
    assert!(
        b <= 1,
        "b is served within one turn of asking, not after the burst: {got:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn tenants_alternate_while_both_wait() {
    let turns = per_second();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for who in ["a", "a", "a", "b", "b", "b"] {
        let (turns, tx) = (turns.clone(), tx.clone());
        tokio::spawn(async move {
            turns.turn(who).await.expect("dispatcher alive");
            tx.send(who).ok();
        });
        tokio::task::yield_now().await;
    }
    drop(tx);
    let mut got = Vec::new();
    while let Some(who) = rx.recv().await {
        got.push(who);
    }
    assert_eq!(got, ["a", "b", "a", "b", "a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn a_turn_given_up_is_not_lost() {
    let turns = per_second();
    // Gives up before its turn comes.
    let gave_up = tokio::time::timeout(Duration::from_millis(500), turns.turn("a")).await;
    assert!(gave_up.is_err(), "the turn takes a second");
    let started = tokio::time::Instant::now();
    turns.turn("b").await.expect("dispatcher alive");
    assert!(
        started.elapsed() <= Duration::from_millis(600),
        "b got the turn a left, not one a second later: {:?}",
        started.elapsed()
    );
    assert_eq!(turns.tenants_waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_tenant_is_the_scope_of_the_running_task() {
    assert_eq!(&*tenant(), "");
    let seen = as_tenant(Arc::from("team-a"), async { tenant() }).await;
    assert_eq!(&*seen, "team-a");
}
