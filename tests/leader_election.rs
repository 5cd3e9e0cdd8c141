//! Two operator replicas: exactly one reconciles, and a standby takes over when the leader dies.

mod common;

use std::time::{Duration, Instant};

use common::{Options, World, eventually, unique};

#[tokio::test]
async fn exactly_one_replica_reconciles_and_a_standby_takes_over_when_the_leader_dies() {
    let Some(w) = World::new("leader").await else {
        return;
    };
    let lease_duration = Duration::from_secs(4);
    let opts = Options::new().leader_election(&w.ns, &unique("lease")).env(
        "VCO_LEASE_DURATION",
        format!("{}s", lease_duration.as_secs()),
    );
    let mut a = w.operator_with(opts.clone()).await;
    let mut b = w.operator_with(opts).await;
    eventually(15, "one replica to lead", || async {
        (a.leads() || b.leads()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.leads() ^ b.leads(), "exactly one leader");
    let (leader, standby) = if a.leads() {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };

    w.one_password("le", "ops_one").await;
    let version = || async { w.read("le").await.map(|(_, v)| v) };
    eventually(15, "the leader to write the parameter", version).await;
    // The parameter is written before the reconcile logs its end, so wait for the log line.
    eventually(10, "the leader to log its reconcile", || async {
        (leader.reconciles_logged() > 0).then_some(())
    })
    .await;
    assert_eq!(
        standby.reconciles_logged(),
        0,
        "the standby does not reconcile"
    );

    leader.kill();
    let killed = Instant::now();
    eventually(30, "the standby to take over", || async {
        standby.leads().then_some(())
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
    w.rotate("le", "access_token", "ops_two").await;
    eventually(15, "the new leader to write version 2", || async {
        version().await.filter(|v| *v == 2)
    })
    .await;
}
