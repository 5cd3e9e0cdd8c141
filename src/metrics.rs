//! Prometheus metrics and the HTTP endpoints `/metrics`, `/healthz` and `/readyz`.
//! Labels are operation names, outcomes and condition reasons — never names of Secrets or
//! values.
//!
//! The server holds up against clients that misbehave (see [`ServeLimits`]): headers must
//! arrive within a timeout, connections are capped (idle ones make room for new ones, see
//! [`crate::admission`]), and a failed accept, such as running out of file descriptors, pauses
//! the loop instead of ending it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::admission::Admission;

/// Limits that keep `/healthz` and `/metrics` answering when some client misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections open at once. When all are taken, the one idle longest is closed for a new
    /// one; a new one is refused only when every connection is mid-request.
    pub max_connections: usize,
    /// Time a connection has to send a request's headers, counted from its opening or from the
    /// end of its previous response: it is the header-read timeout (against slowloris) and the
    /// keep-alive idle timeout at once.
    pub header_read_timeout: Duration,
    /// Pause after a failed accept (e.g. EMFILE, out of file descriptors) before the next try.
    pub accept_error_pause: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
            accept_error_pause: Duration::from_millis(100),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SsmLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: &'static str,
    check: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    condition: &'static str,
    status: String,
    reason: String,
}

/// The operator's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    ssm_calls: Family<SsmLabels, Counter>,
    drift_checked: Family<DriftLabels, Counter>,
    cache_relists: Family<CacheLabels, Counter>,
    secret_reads: Counter,
    provider_requests: Family<ProviderLabels, Counter>,
    reconciles: Family<ReasonLabels, Counter>,
    reconcile_errors: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    connections: Family<ConditionLabels, Gauge>,
    leader: Gauge,
    deletions_held: Gauge,
    queue_waiting: Gauge,
    reconciles_running: Gauge,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vault_connection_operator");
        let ssm_calls = Family::<SsmLabels, Counter>::default();
        registry.register(
            "ssm_calls",
            "SSM API calls by operation and outcome",
            ssm_calls.clone(),
        );
        let drift_checked = Family::<DriftLabels, Counter>::default();
        registry.register(
            "drift_checked",
            "Parameters the drift sweep compared with the operator's last write (version and \
             modification time), by result (unchanged, changed, missing)",
            drift_checked.clone(),
        );
        let cache_relists = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_relists",
            "Complete lists a cache took again after its watch lost its place (an API server \
             restart, 410 Gone), merged into the cache in place, by cache",
            cache_relists.clone(),
        );
        let secret_reads = Counter::default();
        registry.register(
            "secret_reads",
            "Reads of a credentials Secret's data from the API server (a list of the one opted-in \
             Secret); a Secret touched without a change of its data is read once, not once per \
             connection naming it",
            secret_reads.clone(),
        );
        let provider_requests = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "provider_requests",
            "Credential-verification requests to vault providers by provider, check and outcome",
            provider_requests.clone(),
        );
        let reconciles = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by resulting Ready reason",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        let connections = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "connections",
            "VaultConnections by Ready condition status and reason",
            connections.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process reconciles (it holds the Lease, or runs without leader \
             election), 0 while it stands by",
            leader.clone(),
        );
        let deletions_held = Gauge::default();
        registry.register(
            "deletions_held",
            "Deleted connections whose parameter deletion waits because more were deleted lately \
             than --max-deletions per --deletion-window allows",
            deletions_held.clone(),
        );
        let queue_waiting = Gauge::default();
        registry.register(
            "queue_waiting",
            "Connections waiting in the work queue for a worker (a burst shows here, not as \
             reconciles held in memory)",
            queue_waiting.clone(),
        );
        let reconciles_running = Gauge::default();
        registry.register(
            "reconciles_running",
            "Reconciles running now (at most --concurrency)",
            reconciles_running.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                ssm_calls,
                drift_checked,
                cache_relists,
                secret_reads,
                provider_requests,
                reconciles,
                reconcile_errors,
                reconcile_duration,
                connections,
                leader,
                deletions_held,
                queue_waiting,
                reconciles_running,
                ready: AtomicBool::new(false),
            }),
        }
    }

    /// Counts one SSM call.
    pub fn ssm_call(&self, operation: &'static str, outcome: &'static str) {
        self.inner
            .ssm_calls
            .get_or_create(&SsmLabels { operation, outcome })
            .inc();
    }

    /// Counts one parameter checked by the drift sweep: `unchanged`, `changed` or `missing`.
    pub fn drift_checked(&self, result: &'static str) {
        self.inner
            .drift_checked
            .get_or_create(&DriftLabels { result })
            .inc();
    }

    /// Counts one read of a credentials Secret's data.
    pub fn secret_read(&self) {
        self.inner.secret_reads.inc();
    }

    /// Counts one relist of `cache` (`connections`, `secrets`, `namespaces`) after its first.
    pub fn cache_relisted(&self, cache: &'static str) {
        self.inner
            .cache_relists
            .get_or_create(&CacheLabels { cache })
            .inc();
    }

    /// Counts one credential-verification request to a provider.
    pub fn provider_request(
        &self,
        provider: &'static str,
        check: &'static str,
        outcome: &'static str,
    ) {
        self.inner
            .provider_requests
            .get_or_create(&ProviderLabels {
                provider,
                check,
                outcome,
            })
            .inc();
    }

    /// Counts one reconcile and its duration; `error` is the reason when it failed.
    pub fn reconciled(&self, reason: &str, error: bool, took: Duration) {
        let labels = ReasonLabels {
            reason: reason.to_owned(),
        };
        self.inner.reconciles.get_or_create(&labels).inc();
        if error {
            self.inner.reconcile_errors.get_or_create(&labels).inc();
        }
        self.inner.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Replaces the connection counts by (Ready status, reason).
    pub fn set_connections(&self, ready: &std::collections::BTreeMap<(String, String), i64>) {
        self.inner.connections.clear();
        for ((status, reason), n) in ready {
            self.inner
                .connections
                .get_or_create(&ConditionLabels {
                    condition: "Ready",
                    status: status.clone(),
                    reason: reason.clone(),
                })
                .set(*n);
        }
    }

    /// Marks this process as the one reconciling (leader) or standing by.
    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.set(i64::from(leader));
    }

    /// Sets how many parameter deletions wait for room in the deletion budget.
    pub fn set_deletions_held(&self, held: usize) {
        self.inner
            .deletions_held
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// Sets how many connections wait in the work queue and how many reconciles run.
    pub fn set_queue(&self, waiting: usize, running: usize) {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.inner.queue_waiting.set(count(waiting));
        self.inner.reconciles_running.set(count(running));
    }

    /// Marks the operator ready (caches synced, leadership settled) or not.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `addr` with the default
    /// [`ServeLimits`] until the task is dropped. `before_scrape` refreshes gauges computed from
    /// caches.
    pub async fn serve(
        self,
        addr: SocketAddr,
        before_scrape: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<()> {
        self.serve_with(addr, before_scrape, ServeLimits::default())
            .await
    }

    /// [`Metrics::serve`] with chosen limits. Fails only when `addr` cannot be bound.
    pub async fn serve_with(
        self,
        addr: SocketAddr,
        before_scrape: Arc<dyn Fn() + Send + Sync>,
        limits: ServeLimits,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, ?limits, "serving /metrics, /healthz and /readyz");
        let admission = Admission::new(limits.max_connections);
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        pause = ?limits.accept_error_pause,
                        "metrics server could not accept a connection; trying again after a pause"
                    );
                    tokio::time::sleep(limits.accept_error_pause).await;
                    continue;
                }
            };
            let Some(slot) = admission.admit().await else {
                tracing::debug!("metrics server: every connection is mid-request; refused one");
                continue; // dropping the stream closes it
            };
            let metrics = self.clone();
            let before_scrape = before_scrape.clone();
            let busy = slot.busy();
            let http = http.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let metrics = metrics.clone();
                    let before_scrape = before_scrape.clone();
                    let busy = busy();
                    async move {
                        let response = metrics.answer(req.uri().path(), &*before_scrape);
                        drop(busy);
                        Ok::<_, Infallible>(response)
                    }
                });
                let connection = http.serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = connection => {}
                    () = slot.displaced() => {}
                }
                drop(slot);
            });
        }
    }

    fn answer(
        &self,
        path: &str,
        before_scrape: &(dyn Fn() + Send + Sync),
    ) -> Response<Full<Bytes>> {
        let (status, body) = match path {
            "/metrics" => {
                before_scrape();
                (StatusCode::OK, self.encode())
            }
            "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
            "/readyz" if self.is_ready() => (StatusCode::OK, "ready\n".to_owned()),
            "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned()),
            _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    }
}
