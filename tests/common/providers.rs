//! Local fake Doppler and Infisical APIs for tests: hyper servers on loopback that implement the
//! endpoints verification calls, with the documented response shapes, record every call, and can
//! be told to misbehave (answer a status for the next N calls, drop connections, hang).
//!
//! They are deliberately indiscreet: success and error bodies echo the credential they were
//! given (Doppler's real `token_preview` shows part of the token), so a test that searches logs
//! and messages for a credential catches any body that leaks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query parameters, decoded.
    pub query: BTreeMap<String, String>,
    /// The bearer token sent, if any.
    pub bearer: Option<String>,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

/// How a fake answers apart from its normal behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Normal service.
    None,
    /// Every request gets this status.
    Status(u16),
    /// Connections are closed without an answer.
    Drop,
    /// Requests are read and never answered.
    Hang,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    /// Statuses to answer, one per request, before normal service resumes.
    script: VecDeque<u16>,
    outage: Option<Outage>,
    /// Doppler: token -> (project, config).
    doppler_tokens: HashMap<String, (String, String)>,
    /// Infisical: client id -> identity.
    identities: HashMap<String, Identity>,
    /// Infisical: issued access token -> client id.
    issued: HashMap<String, String>,
    /// Answer every request with a redirect to this URL.
    redirect_to: Option<String>,
    /// Answer successes with a body that is not JSON.
    garbage: bool,
}

/// An Infisical machine identity and what it may read.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Universal Auth client secret.
    pub client_secret: String,
    /// Project id it is a member of.
    pub project_id: String,
    /// Environment slugs it may read.
    pub environments: Vec<String>,
    /// Secret paths (folders) that exist in those environments.
    pub paths: Vec<String>,
}

/// Which API a fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Doppler (`/v3/...`).
    Doppler,
    /// Infisical (`/api/...`).
    Infisical,
}

/// A running fake provider; stops when dropped.
pub struct Fake {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    /// Starts a fake Doppler API.
    pub async fn doppler() -> Fake {
        Fake::start(Kind::Doppler).await
    }

    /// Starts a fake Infisical API.
    pub async fn infisical() -> Fake {
        Fake::start(Kind::Infisical).await
    }

    async fn start(kind: Kind) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let outage = shared.lock().unwrap().outage;
                if outage == Some(Outage::Drop) {
                    drop(stream);
                    continue;
                }
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(kind, &state, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Fake { url, state, task }
    }

    /// Doppler: a service token that can read `project`/`config`.
    pub fn add_doppler_token(&self, token: &str, project: &str, config: &str) {
        self.state
            .lock()
            .unwrap()
            .doppler_tokens
            .insert(token.into(), (project.into(), config.into()));
    }

    /// Infisical: a machine identity.
    pub fn add_identity(&self, client_id: &str, identity: Identity) {
        self.state
            .lock()
            .unwrap()
            .identities
            .insert(client_id.into(), identity);
    }

    /// The next `n` requests are answered with `status` (then normal service resumes).
    pub fn fail_next(&self, status: u16, n: usize) {
        let mut s = self.state.lock().unwrap();
        s.script.extend(std::iter::repeat_n(status, n));
    }

    /// Sets (or with [`Outage::None`] ends) an outage.
    pub fn set_outage(&self, outage: Outage) {
        self.state.lock().unwrap().outage = Some(outage);
    }

    /// Every request is answered `307` to `url`.
    pub fn redirect_to(&self, url: &str) {
        self.state.lock().unwrap().redirect_to = Some(url.into());
    }

    /// Successes are answered with an HTML page instead of JSON (a captive portal).
    pub fn answer_garbage(&self) {
        self.state.lock().unwrap().garbage = true;
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// How many calls went to `path`.
    pub fn count(&self, path: &str) -> usize {
        self.calls().iter().filter(|c| c.path == path).count()
    }

    /// Forgets the calls recorded so far.
    pub fn reset_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }
}

/// The Doppler login path and read path, and the Infisical ones.
pub const DOPPLER_ME: &str = "/v3/me";
/// Doppler's config endpoint.
pub const DOPPLER_CONFIG: &str = "/v3/configs/config";
/// Infisical's Universal Auth login.
pub const INFISICAL_LOGIN: &str = "/api/v1/auth/universal-auth/login";
/// Infisical's list-secrets endpoint.
pub const INFISICAL_SECRETS: &str = "/api/v4/secrets";

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn handle(
    kind: Kind,
    state: &Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let call = Call {
        method,
        path,
        query,
        bearer,
        body,
    };
    let (outage, scripted, redirect, garbage) = {
        let mut s = state.lock().unwrap();
        s.calls.push(call.clone());
        (
            s.outage,
            s.script.pop_front(),
            s.redirect_to.clone(),
            s.garbage,
        )
    };
    match outage {
        Some(Outage::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Some(Outage::Status(code)) => {
            return reply(code, json!({"message": "service unavailable"}));
        }
        _ => {}
    }
    if let Some(code) = scripted {
        return reply(code, json!({"message": "scripted failure"}));
    }
    if let Some(to) = redirect {
        return Response::builder()
            .status(307)
            .header("location", format!("{to}{}", call.path))
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    let response = match kind {
        Kind::Doppler => doppler(state, &call),
        Kind::Infisical => infisical(state, &call),
    };
    if garbage && response.status().is_success() {
        return Response::builder()
            .status(200)
            .header("content-type", "text/html")
            .body(Full::new(Bytes::from_static(
                b"<html>Sign in to the Wi-Fi</html>",
            )))
            .unwrap();
    }
    response
}

fn doppler(state: &Arc<Mutex<State>>, call: &Call) -> Response<Full<Bytes>> {
    let s = state.lock().unwrap();
    let token = call.bearer.clone().unwrap_or_default();
    let Some((project, config)) = s.doppler_tokens.get(&token).cloned() else {
        return reply(
            401,
            json!({"messages": [format!("Invalid Auth token {token}")], "success": false}),
        );
    };
    match (call.method.as_str(), call.path.as_str()) {
        ("GET", DOPPLER_ME) => reply(
            200,
            json!({
                "slug": "b1d2c3",
                "name": "operator",
                "created_at": "2026-01-01T00:00:00.000Z",
                "last_seen_at": "2026-01-02T00:00:00.000Z",
                "type": "service_token",
                "token_preview": token,
                "workplace": {"slug": "acme", "name": "Acme"}
            }),
        ),
        ("GET", DOPPLER_CONFIG) => {
            let asked = (
                call.query.get("project").cloned().unwrap_or_default(),
                call.query.get("config").cloned().unwrap_or_default(),
            );
            if asked != (project.clone(), config.clone()) {
                return reply(
                    403,
                    json!({"messages": [format!("token {token} cannot access this config")], "success": false}),
                );
            }
            reply(
                200,
                json!({"config": {
                    "name": config,
                    "root": true,
                    "locked": false,
                    "initial_fetch_at": "2026-01-01T00:00:00.000Z",
                    "last_fetch_at": "2026-01-02T00:00:00.000Z",
                    "created_at": "2026-01-01T00:00:00.000Z",
                    "environment": "prd",
                    "project": project
                }}),
            )
        }
        _ => reply(404, json!({"messages": ["Not found"], "success": false})),
    }
}

fn infisical(state: &Arc<Mutex<State>>, call: &Call) -> Response<Full<Bytes>> {
    let mut s = state.lock().unwrap();
    match (call.method.as_str(), call.path.as_str()) {
        ("POST", INFISICAL_LOGIN) => {
            let field = |name: &str| {
                call.body
                    .as_ref()
                    .and_then(|b| b.get(name))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let (id, secret) = (field("clientId"), field("clientSecret"));
            match s.identities.get(&id) {
                Some(identity) if identity.client_secret == secret => {
                    let token = format!("eyJ.fake.{}", uuid::Uuid::new_v4().simple());
                    s.issued.insert(token.clone(), id);
                    reply(
                        200,
                        json!({
                            "accessToken": token,
                            "expiresIn": 7200,
                            "accessTokenMaxTTL": 7200,
                            "tokenType": "Bearer"
                        }),
                    )
                }
                _ => reply(
                    401,
                    json!({
                        "statusCode": 401,
                        "message": format!("Invalid credentials for {id} with secret {secret}"),
                        "error": "UnauthorizedError"
                    }),
                ),
            }
        }
        ("GET", INFISICAL_SECRETS) => {
            let token = call.bearer.clone().unwrap_or_default();
            let Some(identity) = s
                .issued
                .get(&token)
                .and_then(|id| s.identities.get(id))
                .cloned()
            else {
                return reply(
                    401,
                    json!({"statusCode": 401, "message": "Invalid token", "error": "UnauthorizedError"}),
                );
            };
            let q = |name: &str| call.query.get(name).cloned().unwrap_or_default();
            if q("projectId") != identity.project_id {
                return reply(
                    403,
                    json!({"statusCode": 403, "message": "You are not allowed to read secrets in this project", "error": "PermissionDenied"}),
                );
            }
            if !identity.environments.contains(&q("environment")) {
                return reply(
                    404,
                    json!({"statusCode": 404, "message": "Environment not found", "error": "NotFound"}),
                );
            }
            let path = call
                .query
                .get("secretPath")
                .cloned()
                .unwrap_or_else(|| "/".into());
            if !identity.paths.contains(&path) {
                return reply(
                    404,
                    json!({"statusCode": 404, "message": "Folder not found", "error": "NotFound"}),
                );
            }
            let hidden = q("viewSecretValue") == "false";
            reply(
                200,
                json!({
                    "secrets": [{
                        "id": "5f1e…",
                        "workspace": identity.project_id,
                        "environment": q("environment"),
                        "version": 1,
                        "type": "shared",
                        "secretKey": "DATABASE_PASSWORD",
                        "secretValue": if hidden { "<hidden-by-infisical>".to_owned() } else { identity.client_secret.clone() },
                        "secretValueHidden": hidden,
                        "secretPath": path
                    }],
                    "imports": []
                }),
            )
        }
        _ => reply(
            404,
            json!({"statusCode": 404, "message": "Route not found"}),
        ),
    }
}

/// A fake Doppler and a fake Infisical, and the operator settings that verify credentials
/// against them.
pub struct Providers {
    pub doppler: Fake,
    pub infisical: Fake,
}

impl Providers {
    /// Starts both fakes.
    pub async fn start() -> Providers {
        Providers {
            doppler: Fake::doppler().await,
            infisical: Fake::infisical().await,
        }
    }

    /// Operator settings: verification on, against these fakes, with short timeouts, retries
    /// and drift checks (2 s).
    pub fn options(&self) -> super::Options {
        super::Options::new()
            .env("VCO_VERIFY_CREDENTIALS", "true")
            .env("VCO_VERIFY_DOPPLER_URL", &self.doppler.url)
            .env("VCO_VERIFY_INFISICAL_URL", &self.infisical.url)
            .env("VCO_VERIFY_ALLOW_INSECURE_LOOPBACK", "true")
            .env("VCO_VERIFY_TIMEOUT", "2s")
            .env("VCO_VERIFY_RETRY_INTERVAL", "1s")
            .env("VCO_DRIFT_CHECK_INTERVAL", "2s")
    }
}
