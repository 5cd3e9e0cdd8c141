//! The metrics and health server under abuse from anyone who can reach its port: thousands of
//! idle connections, a slowloris, running out of file descriptors. `/healthz` and `/metrics`
//! keep answering, and the operator's memory stays bounded. Figures are printed (run with
//! `--nocapture` to see them); timing goals belong in the benchmark, not here.

mod common;

use std::time::{Duration, Instant};

use common::operator::http_get;
use common::{World, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's default connection cap (`ServeLimits::default().max_connections`).
const CAP: usize = 256;

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Open file descriptors of process `pid`.
fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .count() as u64
}

/// Gives process `pid` at most `n` file descriptors.
fn limit_fds(pid: u32, n: u64) {
    rlimit::prlimit(pid as i32, rlimit::Resource::NOFILE, Some((n, n)), None)
        .expect("set the operator's descriptor limit");
}

/// GETs `path` within 10 s: (status, how long it took).
async fn timed_get(base: &str, path: &str) -> (Option<u16>, Duration) {
    let start = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), http_get(&format!("{base}{path}")))
        .await
        .ok()
        .flatten()
        .map(|(code, _)| code);
    (answer, start.elapsed())
}

/// Whether the server has closed `stream` (end of file or reset), without waiting.
fn closed_by_server(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_leave_healthz_and_metrics_answering_in_bounded_memory() {
    const IDLE: usize = 3000;
    let Some(w) = World::new("idle-flood").await else {
        return;
    };
    rlimit::increase_nofile_limit(IDLE as u64 + 1000).expect("raise this test's descriptor limit");
    let op = w.operator().await;
    // Many containers get 1024 descriptors: without a cap, idle connections exhaust them.
    limit_fds(op.pid(), 1024);
    let addr = op.metrics.trim_start_matches("http://").to_owned();
    let rss_before = rss_kib(op.pid());

    let start = Instant::now();
    let mut held = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr))
            .await
            .unwrap_or_else(|_| panic!("connection {i} not accepted within 10s"))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        held.push(stream);
    }
    let opened_in = start.elapsed();

    // Probes and scrapes while the idle connections are held.
    let mut health = Vec::new();
    let mut scrape = Vec::new();
    for _ in 0..5 {
        let (code, took) = timed_get(&op.metrics, "/healthz").await;
        assert_eq!(
            code,
            Some(200),
            "/healthz answers under {IDLE} idle connections"
        );
        health.push(took);
        let (code, took) = timed_get(&op.metrics, "/metrics").await;
        assert_eq!(
            code,
            Some(200),
            "/metrics answers under {IDLE} idle connections"
        );
        scrape.push(took);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_after = rss_kib(op.pid());
    let fds = open_fds(op.pid());
    let open_at_server = held.iter().filter(|s| !closed_by_server(s)).count();
    println!(
        "idle connections opened: {IDLE} in {opened_in:?}; still open at the server: \
         {open_at_server} (cap {CAP}); operator fds: {fds}; RSS before {rss_before} KiB, \
         after {rss_after} KiB (+{} KiB); /healthz {health:?}; /metrics {scrape:?}",
        rss_after.saturating_sub(rss_before)
    );
    assert!(
        open_at_server <= CAP,
        "the server holds at most {CAP} connections, not {open_at_server}"
    );
    assert!(fds < 1024, "descriptors stay under the limit: {fds}");
    assert!(
        rss_after < rss_before + 32 * 1024,
        "memory stays bounded: {rss_before} KiB -> {rss_after} KiB"
    );
    drop(held);
}

#[tokio::test]
async fn a_slowloris_that_never_finishes_its_headers_is_closed_after_the_header_timeout() {
    let Some(w) = World::new("slowloris").await else {
        return;
    };
    let op = w.operator().await;
    let addr = op.metrics.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("start the request");
    let start = Instant::now();
    let mut received = Vec::new();
    // One more header byte every 200 ms, never the blank line that ends the headers.
    let closed_after = loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still open after 30s: the header timeout does not hold"
        );
        if stream.write_all(b"a").await.is_err() {
            break start.elapsed();
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break start.elapsed(),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => {} // nothing yet: keep trickling
        }
    };
    let answer = String::from_utf8_lossy(&received);
    println!("slowloris closed after {closed_after:?}; server sent {answer:?}");
    assert!(
        closed_after >= Duration::from_secs(3),
        "closed for the timeout, not at once: {closed_after:?}"
    );
    assert!(
        !answer.contains("200 OK"),
        "the request never completed: {answer}"
    );
    // The server itself is fine.
    let (code, _) = timed_get(&op.metrics, "/healthz").await;
    assert_eq!(code, Some(200));
}

#[tokio::test]
async fn running_out_of_file_descriptors_pauses_the_server_instead_of_ending_it() {
    let Some(w) = World::new("emfile").await else {
        return;
    };
    let op = w.operator().await;
    let pid = op.pid();
    let addr = op.metrics.trim_start_matches("http://").to_owned();
    // Room for a few connections only, so accept fails with EMFILE long before the cap.
    limit_fds(pid, open_fds(pid) + 8);
    let mut held = Vec::new();
    for _ in 0..64 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&addr)).await
        {
            held.push(s);
        }
    }
    eventually(10, "an accept error in the log", || async {
        op.logs()
            .contains("metrics server could not accept a connection")
            .then_some(())
    })
    .await;
    // The clients go away; their descriptors come back and the server answers again.
    drop(held);
    let health = eventually(20, "/healthz to answer again", || async {
        http_get(&format!("{}/healthz", op.metrics))
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await;
    assert_eq!(health.0, 200);
}
