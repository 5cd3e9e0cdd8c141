//! What the operator holds per connection at rest, counted by the allocator: the operator's own
//! cache code (`reconcile::slim`, the connections' cache in its compact form with the Secret
//! index, the Secrets' versions, the evidence of its writes) filled with connections and Secrets
//! as the API server serves them (`fixtures/footprint/`, captured from a synced 1Password
//! connection). Prints what each part holds per connection (bytes asked of the allocator, and
//! blocks: each block costs the allocator about 16 bytes more), and fails when the whole grows
//! past its budget, so a field kept by mistake or a new per-connection map shows here before it
//! shows in a fleet's RSS.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;
use vault_connection_operator::api::VaultConnection;
use vault_connection_operator::document::Tier;
use vault_connection_operator::reconcile::compact::Common;
use vault_connection_operator::reconcile::connections::Connections;
use vault_connection_operator::reconcile::evidence::{Evidence, Known};
use vault_connection_operator::reconcile::slim;
use vault_connection_operator::reconcile::versions::Versions;
use vault_connection_operator::ssm::Meta;

/// Live bytes and blocks asked of the allocator by this test binary.
static BYTES: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            BYTES.fetch_add(layout.size() as isize, Relaxed);
            BLOCKS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        BYTES.fetch_sub(layout.size() as isize, Relaxed);
        BLOCKS.fetch_sub(1, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            BYTES.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Connections (each with a Secret of its own, as in the fleet benchmark).
const N: usize = 10_000;
/// What the allocator adds per block (a header and rounding to 16 bytes), for the estimate.
const BLOCK_OVERHEAD: isize = 16;
/// The budget, per connection, of everything counted here with block overhead. Measured
/// 2026-12-07: 1,596 bytes (3,346 with kube-runtime's reflector store of the Kubernetes type
/// and a separate Secret index, 4,558 before that); docs/performance.md §3 has the breakdown.
const BUDGET: isize = 1792;

fn live() -> (isize, isize) {
    (BYTES.load(Relaxed), BLOCKS.load(Relaxed))
}

/// The per-connection cost of running `fill`, printed under `part`.
fn cost(part: &str, fill: impl FnOnce()) -> isize {
    let (bytes, blocks) = live();
    fill();
    let (bytes, blocks) = (live().0 - bytes, live().1 - blocks);
    let per = (bytes + BLOCK_OVERHEAD * blocks) / N as isize;
    println!(
        "{part:<34} {:>6} B {:>5.1} blocks {per:>6} B with overhead",
        bytes / N as isize,
        blocks as f64 / N as f64
    );
    per
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/footprint/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Copy `i` of a fixture, as a watch event brings it: its own name, uid and version.
fn copy<T: serde::de::DeserializeOwned>(text: &str, i: usize) -> T {
    let text = text
        .replace("conn-00000", &format!("conn-{i:05}"))
        .replace("-000000000000", &format!("-{i:012}"))
        .replace("\"1000000\"", &format!("\"{}\"", 1_000_000 + i));
    serde_json::from_str(&text).expect("the fixture parses")
}

#[test]
fn what_the_operator_holds_per_connection_stays_within_its_budget() {
    // What the operator that captured the fixtures had in common for every connection.
    let connections = Connections::new(Common {
        parameter_prefix: "/vault-connections/bench/".into(),
        default_kms_key_id: "alias/aws/ssm".into(),
        policy: "1-5dfd3eb144ad".into(),
    });
    let secrets = Versions::default();
    let evidence = Evidence::default();

    // Each copy is parsed, slimmed and cached as a watch event is, and what was parsed is
    // dropped: what is counted is what stays.
    let connection = fixture("connection.json");
    let secret = fixture("secret-metadata.json");
    let mut total = 0;
    total += cost("connections (cache and Secret index)", || {
        for i in 0..N {
            let mut vc: VaultConnection = copy(&connection, i);
            slim::connection(&mut vc);
            connections.observe(&Event::Apply(vc));
        }
    });
    total += cost("Secrets' versions", || {
        for i in 0..N {
            let mut s: PartialObjectMeta<Secret> = copy(&secret, i);
            slim::secret(&mut s);
            secrets.observe(&Event::Apply(s));
        }
    });
    let cached = connections.scan(None, |ns, name, entry, common| {
        Some((entry.parameter_name(ns, name, common)?, entry.uid()?))
    });
    let known: Known = Known {
        owner: (
            "7b0c5a34-1c7e-4d0b-9a51-000000000000".into(),
            "0f4b2d1e-8a3c-4e6f-b7d9-5c2a1e3f4d6b".into(),
        ),
        meta: Meta {
            version: 3,
            modified: Some("2026-12-03T10:00:00.123Z".into()),
        },
        digest: evidence.digest(&"x".to_owned().into()),
        kms_key_id: "alias/aws/ssm".into(),
        tier: Tier::Standard,
        source: Some(evidence.data_digest(&Default::default())),
    };
    let evidence_cost = cost("evidence (after its own writes)", || {
        for (parameter, uid) in &cached {
            let mut k = known.clone();
            k.owner.0 = uid.clone();
            evidence.remember(parameter, k);
        }
    });
    total += evidence_cost;
    println!(
        "{:<34} {total:>6} B per connection (budget {BUDGET})",
        "total"
    );

    assert_eq!(connections.len(), N);
    assert_eq!(cached.len(), N, "each synced, with its parameter");
    assert_eq!(connections.whole(), 0, "every entry compact");
    assert_eq!(secrets.len(), N);
    assert_eq!(
        connections.naming("bench-0", "conn-00042").len(),
        1,
        "the index answers"
    );
    assert!(
        total <= BUDGET,
        "the operator holds {total} bytes per connection at rest, over its budget of {BUDGET}: \
         a field kept by mistake or a new per-connection map"
    );
}
