use std::time::Duration;

use super::*;

/// The next connection as "namespace/name", if one is handed out within a moment.
async fn next(q: &Queue, scope: Option<&str>) -> Option<String> {
    let r = tokio::time::timeout(Duration::from_millis(100), q.next(scope))
        .await
        .ok()?;
    Some(format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
}

/// Lets the scheduler task pass on what is due.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn namespaces_take_turns_and_a_quiet_one_waits_at_most_one_turn() {
    let q = Queue::new(1);
    q.serve(None);
    for i in 0..100 {
        q.push("noisy", &format!("n{i}"));
    }
    settle().await;
    let first = next(&q, None).await.expect("work");
    assert_eq!(first, "noisy/n0");
    q.push("quiet", "rotated");
    settle().await;
    q.done("noisy", "n0");
    assert_eq!(
        next(&q, None).await.as_deref(),
        Some("noisy/n1"),
        "the noisy namespace was ahead in the ring"
    );
    q.done("noisy", "n1");
    assert_eq!(
        next(&q, None).await.as_deref(),
        Some("quiet/rotated"),
        "then the quiet one, not the 98 still waiting"
    );
    q.done("quiet", "rotated");
    assert_eq!(q.waiting(), 98);
}

#[tokio::test(start_paused = true)]
async fn no_more_run_at_once_than_there_are_workers() {
    let q = Queue::new(2);
    q.serve(None);
    for name in ["a", "b", "c"] {
        q.push("ns", name);
    }
    settle().await;
    assert!(next(&q, None).await.is_some());
    assert!(next(&q, None).await.is_some());
    assert_eq!(next(&q, None).await, None, "both workers are busy");
    assert_eq!((q.running(), q.waiting()), (2, 1));
    q.done("ns", "a");
    assert_eq!(next(&q, None).await.as_deref(), Some("ns/c"));
}

#[tokio::test(start_paused = true)]
async fn a_connection_is_queued_once_and_runs_again_if_asked_for_while_running() {
    let q = Queue::new(4);
    q.serve(None);
    q.push("ns", "a");
    q.push("ns", "a");
    settle().await;
    assert_eq!(next(&q, None).await.as_deref(), Some("ns/a"));
    assert_eq!(next(&q, None).await, None, "queued once");
    q.push("ns", "a");
    settle().await;
    assert_eq!(next(&q, None).await, None, "never twice at once");
    q.done("ns", "a");
    assert_eq!(
        next(&q, None).await.as_deref(),
        Some("ns/a"),
        "asked for while running: once more"
    );
    q.done("ns", "a");
    assert_eq!(next(&q, None).await, None, "and then no more");
}

#[tokio::test(start_paused = true)]
async fn a_delayed_request_waits_and_the_sooner_of_two_wins() {
    let q = Queue::new(4);
    q.serve(None);
    q.push_after("ns", "later", Duration::from_secs(30));
    settle().await;
    assert_eq!(next(&q, None).await, None, "not yet");
    tokio::time::advance(Duration::from_secs(31)).await;
    settle().await;
    assert_eq!(next(&q, None).await.as_deref(), Some("ns/later"));
    q.done("ns", "later");

    q.push_after("ns", "x", Duration::from_secs(30));
    q.push_after("ns", "x", Duration::from_secs(5));
    settle().await;
    tokio::time::advance(Duration::from_secs(6)).await;
    settle().await;
    assert_eq!(
        next(&q, None).await.as_deref(),
        Some("ns/x"),
        "the sooner one"
    );
    q.done("ns", "x");
    tokio::time::advance(Duration::from_secs(30)).await;
    settle().await;
    assert_eq!(
        next(&q, None).await,
        None,
        "the sooner request replaced the later one"
    );
}

#[tokio::test(start_paused = true)]
async fn scoped_controllers_take_their_namespaces_in_the_ring_order() {
    let q = Queue::new(4);
    q.serve(Some("a"));
    q.serve(Some("b"));
    q.push("a", "1");
    q.push("a", "2");
    q.push("b", "1");
    q.push("gone", "1");
    settle().await;
    assert_eq!(next(&q, Some("b")).await, None, "it is a's turn");
    assert_eq!(next(&q, Some("a")).await.as_deref(), Some("a/1"));
    assert_eq!(next(&q, Some("a")).await, None, "then b's");
    assert_eq!(next(&q, Some("b")).await.as_deref(), Some("b/1"));
    assert_eq!(
        next(&q, Some("a")).await.as_deref(),
        Some("a/2"),
        "a namespace nobody serves is passed over"
    );
    assert_eq!(q.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_controller_wakes_when_work_arrives_or_a_worker_frees() {
    let q = Queue::new(1);
    q.serve(None);
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.next(None).await }
    });
    settle().await;
    q.push("ns", "a");
    let got = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("woken by the push")
        .expect("task");
    assert_eq!(got.name, "a");
    q.push("ns", "b");
    settle().await;
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.next(None).await }
    });
    settle().await;
    assert!(!waiter.is_finished(), "the one worker is busy");
    q.done("ns", "a");
    let got = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("woken by the free worker")
        .expect("task");
    assert_eq!(got.name, "b");
}
