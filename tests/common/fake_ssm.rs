//! SSM endpoints that misbehave in ways the emulator cannot be made to: one that answers every
//! call with an AWS error, an address where nothing listens, and a proxy in front of the
//! emulator that sees every call the operator makes — so tests count them independently of the
//! operator's own metrics (by operation, by parameter, and whether the call decrypts) — and can
//! answer a planned number of calls of an operation with a fault, or hold calls for a while.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// An AWS JSON error answer: `__type` KIND with HTTP STATUS.
fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(r#"{{"__type":"{kind}","message":"{message}"}}"#);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        "application/x-amz-json-1.1"
            .parse()
            .expect("a header value"),
    );
    response
}

/// An SSM endpoint that answers every call with the AWS JSON error `code` (HTTP 400), as SSM
/// does for throttling, denied access or an unusable KMS key.
pub async fn answering(code: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, Infallible>(aws_error(
                        StatusCode::BAD_REQUEST,
                        code,
                        "answered by the test",
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// A loopback URL where nothing listens: a service that is down.
pub fn nowhere() -> String {
    format!("http://127.0.0.1:{}", super::operator::free_port())
}

/// A fault to answer instead of forwarding.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// `ThrottlingException` (400).
    Throttling,
    /// `TooManyUpdates` (400).
    TooManyUpdates,
    /// `InternalServerError` (500).
    ServerError,
}

/// One call as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Call {
    /// The SSM operation (`GetParameter`, `PutParameter`, …).
    pub op: String,
    /// The parameter names the request names (`Name`, `Names`, `ResourceId`).
    pub names: Vec<String>,
    /// Whether the request asks for decryption (`WithDecryption: true`).
    pub decrypts: bool,
    /// The caller's user agent (the operator's names its pod: `app/<pod>`).
    pub user_agent: String,
    /// When it arrived.
    pub at: Instant,
}

/// The proxy; clones share its records.
#[derive(Clone, Default)]
pub struct SsmProxy {
    calls: Arc<Mutex<Vec<Call>>>,
    plan: Arc<Mutex<Vec<(String, Fault, usize)>>>,
    delays: Arc<Mutex<Vec<(String, Duration)>>>,
}

impl SsmProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) on loopback; returns it and its
    /// endpoint.
    pub async fn start(upstream: String) -> (SsmProxy, String) {
        SsmProxy::start_on("127.0.0.1", upstream).await
    }

    /// Starts a proxy to `upstream` listening on `host` (e.g. the node's bridge address, for
    /// pods); returns it and its endpoint.
    pub async fn start_on(host: &str, upstream: String) -> (SsmProxy, String) {
        let listener = tokio::net::TcpListener::bind((host, 0))
            .await
            .expect("bind a port for the proxy");
        let addr = listener.local_addr().expect("address");
        let proxy = SsmProxy::default();
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (p, upstream) = (p.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (p, upstream) = (p.clone(), upstream.clone());
                        async move { Ok::<_, Infallible>(p.handle(req, &upstream).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (proxy, format!("http://{addr}"))
    }

    /// Answers the next `times` calls of `op` with `fault`.
    pub fn inject(&self, op: &str, fault: Fault, times: usize) {
        self.plan
            .lock()
            .expect("plan")
            .push((op.to_owned(), fault, times));
    }

    /// Holds every later call of `op` for `delay` before forwarding it (`Duration::ZERO` ends it).
    pub fn delay(&self, op: &str, delay: Duration) {
        let mut delays = self.delays.lock().expect("delays");
        delays.retain(|(o, _)| o != op);
        if !delay.is_zero() {
            delays.push((op.to_owned(), delay));
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    /// How many calls of `op` arrived.
    pub fn count(&self, op: &str) -> usize {
        self.calls().iter().filter(|c| c.op == op).count()
    }

    /// How many calls asked SSM to decrypt `name`.
    pub fn decrypting_reads_of(&self, name: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.decrypts && c.names.iter().any(|n| n == name))
            .count()
    }

    /// How many calls named `name` at all.
    pub fn calls_naming(&self, name: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.names.iter().any(|n| n == name))
            .count()
    }

    /// The most calls of `op` within any one-second window.
    pub fn peak_per_second(&self, op: &str) -> usize {
        let times: Vec<Instant> = self
            .calls()
            .iter()
            .filter(|c| c.op == op)
            .map(|c| c.at)
            .collect();
        times
            .iter()
            .map(|start| {
                times
                    .iter()
                    .filter(|t| **t >= *start && **t < *start + Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    async fn handle(&self, req: Request<Incoming>, upstream: &str) -> Response<Full<Bytes>> {
        let op = req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("?")
            .to_owned();
        let user_agent = ["x-amz-user-agent", "user-agent"]
            .iter()
            .filter_map(|h| req.headers().get(*h)?.to_str().ok())
            .collect::<Vec<_>>()
            .join(" ");
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut names: Vec<String> = ["Name", "ResourceId"]
            .iter()
            .filter_map(|k| json[*k].as_str().map(str::to_owned))
            .collect();
        names.extend(
            json["Names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_owned)),
        );
        self.calls.lock().expect("calls").push(Call {
            op: op.clone(),
            names,
            decrypts: json["WithDecryption"].as_bool() == Some(true),
            user_agent,
            at: Instant::now(),
        });
        let fault = {
            let mut plan = self.plan.lock().expect("plan");
            plan.iter_mut()
                .find(|(o, _, n)| *o == op && *n > 0)
                .map(|(_, f, n)| {
                    *n -= 1;
                    *f
                })
        };
        if let Some(fault) = fault {
            let (status, kind) = match fault {
                Fault::Throttling => (StatusCode::BAD_REQUEST, "ThrottlingException"),
                Fault::TooManyUpdates => (StatusCode::BAD_REQUEST, "TooManyUpdates"),
                Fault::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
            };
            return aws_error(status, kind, "injected by the test");
        }
        let delay = self
            .delays
            .lock()
            .expect("delays")
            .iter()
            .find(|(o, _)| *o == op)
            .map(|(_, d)| *d);
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        forward(upstream, parts, body).await
    }
}

/// Passes a request on to the emulator at UPSTREAM (`http://host:port`) and reads its answer.
pub async fn forward(
    upstream: &str,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let host = upstream.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&host)
        .await
        .expect("emulator reachable");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake with the emulator");
    tokio::spawn(conn);
    let mut req = Request::from_parts(parts, Full::new(body));
    req.headers_mut()
        .insert("host", host.parse().expect("a host header"));
    let response = sender.send_request(req).await.expect("emulator answers");
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Response::from_parts(parts, Full::new(body))
}
