//! A fleet where no tenant can slow another, counted at the SSM proxy: refused connections cost
//! nothing at rest or when their Secrets are touched, and wait for a change (a freed slot admits
//! one), and a Secret touched without a change of its data (an annotate loop) costs no decrypting
//! read, one read of the Secret per touch (not one per connection naming it), and at most one
//! status patch per connection per drift interval.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use common::fake_ssm::SsmProxy;
use common::{Connection, Credentials, Operator, Options, World, eventually};

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

    /// Decrypting reads so far, of any parameter.
    fn decrypting(&self) -> usize {
        self.proxy.calls().iter().filter(|c| c.decrypts).count()
    }
}

/// The Ready reason of every connection in NAMES, once each has one of REASONS.
async fn decided(w: &World, names: &[String], reasons: &[&str]) -> Vec<String> {
    eventually(60, "every connection to be decided", || async {
        let mut found = Vec::new();
        for n in names {
            let vc = w.vcs().get(n).await.ok()?;
            let reason = common::condition(&vc, "Ready")?.reason.clone();
            if !reasons.contains(&reason.as_str()) {
                return None;
            }
            found.push(reason);
        }
        Some(found)
    })
    .await
}

/// Waits until F's answer holds still for a second and a half (what the operator is still doing
/// about the last change is done); returns it.
async fn settled<T, F, Fut>(what: &str, f: F) -> T
where
    T: PartialEq,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    eventually(60, what, || async {
        let before = f().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        (f().await == before).then_some(before)
    })
    .await
}

#[tokio::test]
async fn refused_connections_cost_nothing_at_rest_and_a_freed_slot_admits_one() {
    let Some(c) = Counted::new("refused").await else {
        return;
    };
    let w = &c.w;
    w.set_tier("free").await; // free = 1
    let interval = Duration::from_secs(2);
    let _op = c
        .operator(Options::new().env("VCO_DRIFT_CHECK_INTERVAL", "2s"))
        .await;
    w.one_password("served", "ops_served").await;
    w.wait_reason("served", "Synced").await;
    let refused: Vec<String> = (0..8).map(|i| format!("refused{i}")).collect();
    for n in &refused {
        w.one_password(n, &format!("ops_{n}")).await;
    }
    let reasons = decided(w, &refused, &["TierLimitExceeded"]).await;
    assert_eq!(reasons.len(), refused.len());

    // At rest, over several drift intervals: not one tier check (once the reconciles their own
    // status patches caused are done).
    let before = settled("the refused connections to settle", || async {
        c.proxy.count("DescribeParameters")
    })
    .await;
    tokio::time::sleep(5 * interval).await;
    let at_rest = c.proxy.count("DescribeParameters") - before;
    eprintln!(
        "DescribeParameters at rest over {:?}: {at_rest}",
        5 * interval
    );
    assert_eq!(at_rest, 0, "refused connections poll SSM at rest");

    // Touching their Secrets (an annotate loop) wakes them, and the listing that found the
    // namespace full still answers: not one tier check either.
    for n in &refused {
        w.patch_secret(n, json!({"metadata": {"annotations": {"touched": "1"}}}))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let touched = settled("the touched connections to settle", || async {
        c.proxy.count("DescribeParameters")
    })
    .await;
    assert_eq!(
        touched - before,
        0,
        "a touch of a refused connection's Secret lists SSM again"
    );
    let reasons = decided(w, &refused, &["TierLimitExceeded"]).await;
    assert_eq!(reasons.len(), refused.len(), "still refused");

    // The served connection goes: its slot is given to one refused connection.
    w.delete_and_wait("served").await;
    eventually(30, "a refused connection to be admitted", || async {
        let reasons = decided(w, &refused, &["TierLimitExceeded", "Synced"]).await;
        (reasons.iter().filter(|r| *r == "Synced").count() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reasons = decided(w, &refused, &["TierLimitExceeded", "Synced"]).await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "Synced").count(),
        1,
        "one slot, one admitted: {reasons:?}"
    );
    assert_eq!(w.stored().await, 1, "the namespace holds one parameter");

    // And at rest again, nothing.
    let before = c.proxy.count("DescribeParameters");
    tokio::time::sleep(3 * interval).await;
    assert_eq!(c.proxy.count("DescribeParameters") - before, 0);
}

#[tokio::test]
async fn touching_a_shared_secret_without_changing_its_data_costs_nothing() {
    let Some(c) = Counted::new("touch").await else {
        return;
    };
    let w = &c.w;
    let op = c
        .operator(
            Options::new()
                .env("VCO_DEFAULT_TIER", "enterprise")
                .env("VCO_DRIFT_CHECK_INTERVAL", "1h"),
        )
        .await;
    let secret_reads = || async {
        let reads = op.gauge("vault_connection_operator_secret_reads_total");
        reads.await.expect("the Secret reads metric") as u64
    };
    w.apply(Credentials::secret("shared").token("ops_shared0"))
        .await;
    let names: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
    for n in &names {
        w.apply(Connection::onepassword(n).secret("shared")).await;
    }
    decided(w, &names, &["Synced"]).await;
    let versions = |w: &World| {
        let api = w.vcs();
        async move {
            let mut v = BTreeMap::new();
            for vc in api.list(&Default::default()).await.expect("list").items {
                v.insert(
                    vc.metadata.name.clone().unwrap_or_default(),
                    vc.metadata.resource_version.clone().unwrap_or_default(),
                );
            }
            v
        }
    };
    settled("the connections to settle", || versions(w)).await;
    let (reads0, puts0) = (c.decrypting(), c.proxy.count("PutParameter"));
    let lists0 = secret_reads().await;

    // The first touch: status records the Secret's new version (so a restart reads nothing),
    // without a call to SSM.
    let touch = |i: usize| {
        let patch = json!({"metadata": {"annotations": {"touched": i.to_string()}}});
        async move { w.patch_secret("shared", patch).await }
    };
    touch(0).await;
    let secret = w.secrets().get("shared").await.expect("the Secret");
    let touched = secret.metadata.resource_version;
    eventually(10, "the touch to be recorded", || async {
        let list = w.vcs().list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .all(|vc| {
                let p = vc.status.as_ref().and_then(|s| s.parameter.as_ref());
                p.is_some_and(|p| p.secret_resource_version == touched)
            })
            .then_some(())
    })
    .await;
    let statuses1 = settled("the touch to be recorded", || versions(w)).await;

    // An annotate loop: more metadata-only changes within the drift interval.
    for i in 1..4 {
        touch(i).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reads = c.decrypting() - reads0;
    let lists = secret_reads().await - lists0;
    eprintln!(
        "for 4 annotations of a Secret 20 connections share: {reads} decrypting reads, {lists} \
         reads of the Secret"
    );
    assert_eq!(reads, 0, "no decrypting read for a touch");
    // Each touch is read by the first connection to wake (a wake that overlaps the next touch
    // may read once more); the other 19 are answered by that read.
    assert!(
        lists <= 8,
        "{lists} reads of the Secret for 4 touches: one per touch, not one per connection"
    );
    assert_eq!(c.proxy.count("PutParameter"), puts0, "no write");
    assert_eq!(
        versions(w).await,
        statuses1,
        "no status patch for later touches within the interval"
    );

    // A change of the data still reaches every connection.
    w.rotate("shared", "access_token", "ops_shared1").await;
    eventually(30, "every connection to be rotated", || async {
        for n in &names {
            w.read(n).await.filter(|(_, v)| *v == 2)?;
        }
        Some(())
    })
    .await;
}

#[tokio::test]
async fn connections_refused_together_cost_one_listing_and_a_touch_of_one_lists_again() {
    let Some(c) = Counted::new("together").await else {
        return;
    };
    let w = &c.w;
    w.set_tier("free").await; // free = 1
    {
        let _op = c.operator(Options::new()).await;
        w.one_password("served", "ops_served").await;
        w.wait_reason("served", "Synced").await;
    }
    // Created while no operator runs, so the next one finds them all in its first list.
    let refused: Vec<String> = (0..12).map(|i| format!("refused{i}")).collect();
    for n in &refused {
        w.one_password(n, &format!("ops_{n}")).await;
    }
    let before = c.proxy.count("DescribeParameters");
    let _op = c.operator(Options::new()).await;
    let reasons = decided(w, &refused, &["TierLimitExceeded"]).await;
    assert_eq!(reasons.len(), refused.len());
    let listings = settled("the refused connections to settle", || async {
        c.proxy.count("DescribeParameters")
    })
    .await
        - before;
    eprintln!("DescribeParameters for 1 served + 12 refused at start: {listings}");
    // One listing for the served connection (this process wrote nothing yet) and one that
    // refused the first; every other refusal is answered by it. One per connection before.
    assert!(listings <= 2, "{listings} listings for 12 refusals");

    // A change of a refused connection itself (what to do after removing a retained parameter
    // by hand) is checked against SSM again.
    w.vcs()
        .patch(
            "refused0",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"nudge": "1"}}})),
        )
        .await
        .expect("annotate the connection");
    eventually(30, "the touched connection to be checked again", || async {
        (c.proxy.count("DescribeParameters") > before + listings).then_some(())
    })
    .await;
}
