//! A mandatory egress proxy on loopback, as a corporate network has one: it serves `CONNECT`
//! tunnels and absolute-form HTTP requests, and records each one (the destination, and for AWS's
//! HTTP APIs the operation and its form parameters). Names under [`DOMAIN`] resolve nowhere but
//! here: [`EgressProxy::expose`] gives a service a name `NAME.proxied.test:PORT` that the proxy
//! sends to the service's real host, so a client that bypasses the proxy cannot reach it at all. Tunnels to such names are TLS-inspected the way such
//! proxies do it: the proxy presents a certificate for `*.proxied.test` from its own CA (trusted
//! by the client through `SSL_CERT_FILE`) and passes the decrypted stream on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The names only the proxy can reach.
pub const DOMAIN: &str = "proxied.test";

/// One request the proxy handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `CONNECT` for a tunnel, else the forwarded request's method.
    pub method: String,
    /// `host:port` it went to.
    pub authority: String,
    /// The AWS operation (`X-Amz-Target`'s last part, or a query API's `Action`), if any.
    pub action: Option<String>,
    /// A query API's form parameters (STS's `RoleArn`, `ExternalId`, …).
    pub form: BTreeMap<String, String>,
}

/// The running proxy; it stops with the test's runtime.
#[derive(Clone)]
pub struct EgressProxy {
    /// `http://127.0.0.2:PORT`, for `HTTPS_PROXY`/`HTTP_PROXY`.
    pub url: String,
    /// The CA file a client trusts the inspected tunnels with (`SSL_CERT_FILE`).
    pub ca: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    hosts: Hosts,
}

/// Real host of each exposed name.
type Hosts = Arc<Mutex<BTreeMap<String, String>>>;

impl EgressProxy {
    /// `SCHEME://NAME.proxied.test:PORT` for the service at URL (`http://HOST:PORT`): reachable
    /// only through this proxy, which sends it to HOST:PORT.
    pub fn expose(&self, url: &str, scheme: &str, name: &str) -> String {
        let authority = url
            .split("://")
            .nth(1)
            .expect("an absolute URL")
            .trim_end_matches('/');
        let (host, port) = authority.rsplit_once(':').expect("a port");
        let exposed = format!("{name}.{DOMAIN}");
        self.hosts
            .lock()
            .unwrap()
            .insert(exposed.clone(), host.to_owned());
        format!("{scheme}://{exposed}:{port}")
    }

    /// Starts the proxy, its CA and certificate made with openssl in DIR.
    pub async fn start(dir: &Path) -> EgressProxy {
        let tls = TlsAcceptor::from(Arc::new(server_config(dir)));
        // Its own loopback address: a client's NO_PROXY naming 127.0.0.1 (the API server) does
        // not name the proxy.
        let listener = TcpListener::bind("127.0.0.2:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let hosts: Hosts = Arc::default();
        let proxy = EgressProxy {
            url,
            ca: dir.join("ca.crt"),
            seen: seen.clone(),
            hosts: hosts.clone(),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, tls, hosts) = (seen.clone(), tls.clone(), hosts.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        handle(req, seen.clone(), tls.clone(), hosts.clone())
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        proxy
    }

    /// Everything handled so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests of ACTION were forwarded.
    pub fn count(&self, action: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.action.as_deref() == Some(action))
            .count()
    }
}

/// An exposed `NAME.proxied.test:PORT` → its real `HOST:PORT`; any other authority unchanged.
fn upstream(authority: &str, hosts: &Hosts) -> String {
    match authority.rsplit_once(':') {
        Some((name, port)) => match hosts.lock().unwrap().get(name) {
            Some(host) => format!("{host}:{port}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    }
}

fn inspected(authority: &str) -> bool {
    authority
        .rsplit_once(':')
        .is_some_and(|(host, _)| host.ends_with(DOMAIN))
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    tls: TlsAcceptor,
    hosts: Hosts,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if req.method() == Method::CONNECT {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        seen.lock().unwrap().push(Seen {
            method: "CONNECT".into(),
            authority: authority.clone(),
            action: None,
            form: BTreeMap::new(),
        });
        tokio::spawn(async move {
            let Ok(client) = hyper::upgrade::on(req).await else {
                return;
            };
            let Ok(mut server) = TcpStream::connect(upstream(&authority, &hosts)).await else {
                return;
            };
            let mut client = TokioIo::new(client);
            if inspected(&authority) {
                if let Ok(mut decrypted) = tls.accept(client).await {
                    let _ = tokio::io::copy_bidirectional(&mut decrypted, &mut server).await;
                }
            } else {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
        return Ok(reply(StatusCode::OK));
    }
    forward(req, seen, hosts).await
}

/// An absolute-form request (`POST http://host:port/path`), passed on in origin form.
async fn forward(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    hosts: Hosts,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let Some(authority) = req.uri().authority().map(|a| a.to_string()) else {
        return Ok(reply(StatusCode::BAD_REQUEST));
    };
    let (mut parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .map(str::to_owned);
    let form: BTreeMap<String, String> = if target.is_none() {
        url::form_urlencoded::parse(&body).into_owned().collect()
    } else {
        BTreeMap::new()
    };
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        authority: authority.clone(),
        action: target.or_else(|| form.get("Action").cloned()),
        form,
    });
    let Ok(stream) = TcpStream::connect(upstream(&authority, &hosts)).await else {
        return Ok(reply(StatusCode::BAD_GATEWAY));
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return Ok(reply(StatusCode::BAD_GATEWAY));
    };
    tokio::spawn(conn);
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .expect("origin form");
    let answer = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = answer.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// A CA and a `*.proxied.test` certificate it signed, made with openssl in DIR.
fn server_config(dir: &Path) -> rustls::ServerConfig {
    std::fs::create_dir_all(dir).expect("proxy dir");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=egress inspection CA",
    ]);
    std::fs::write(
        dir.join("leaf.ext"),
        format!("subjectAltName=DNS:*.{DOMAIN}\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("ext file");
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        &format!("/CN=*.{DOMAIN}"),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.crt",
    ]);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("leaf.crt"))
        .expect("leaf.crt")
        .collect::<Result<_, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).expect("leaf.key");
    rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config")
}
