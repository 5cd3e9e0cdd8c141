//! The one HTTP client verification uses. It speaks HTTPS (rustls, the system's root
//! certificates) to the configured provider base URLs only; plain HTTP only to a loopback IP
//! address, and only when the test flag allows it. Every request has a deadline, every body a
//! size limit, and redirects are never followed, so a credential is sent to exactly the host it
//! was configured for. Response bodies are handed to the caller to parse and are never logged.
//!
//! Behind a mandatory egress proxy it tunnels HTTPS through the proxy named by `HTTPS_PROXY`
//! (or `ALL_PROXY`) with `CONNECT`, unless `NO_PROXY` names the host — the same variables, with
//! the same (curl's) meaning, as the AWS SDK and kube's client. TLS still runs end to end with
//! the provider. Plain http (loopback, tests only) is never proxied.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use secrecy::{ExposeSecret, SecretString};

/// The largest response body read; a larger one is treated as an unexpected answer.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A provider's base URL, checked: `https://host[:port][/path]`, or `http://` to a loopback IP
/// address when insecure loopback is allowed (tests only). No user info, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    url: url::Url,
}

impl BaseUrl {
    /// Parses and checks `text`; the error says which rule it breaks (never echoing user info).
    pub fn parse(text: &str, allow_insecure_loopback: bool) -> Result<BaseUrl, String> {
        let url =
            url::Url::parse(text.trim()).map_err(|e| format!("is not an absolute URL ({e})"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain user info (user:password@)".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not have a query or a fragment".into());
        }
        let Some(host) = url.host() else {
            return Err("must name a host".into());
        };
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = match host {
                    url::Host::Ipv4(ip) => IpAddr::V4(ip).is_loopback(),
                    url::Host::Ipv6(ip) => IpAddr::V6(ip).is_loopback(),
                    url::Host::Domain(_) => false,
                };
                if !(loopback && allow_insecure_loopback) {
                    return Err(
                        "must use https (plain http is allowed only to a loopback IP address, \
                         and only with --verify-allow-insecure-loopback, for tests)"
                            .into(),
                    );
                }
            }
            other => return Err(format!("must use https, not {other}")),
        }
        Ok(BaseUrl { url })
    }

    /// The host (and port, when not the default) requests go to.
    pub fn authority(&self) -> String {
        match (self.url.host_str(), self.url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => String::new(),
        }
    }

    /// The URL of `path` (which starts with `/`) under this base, with `query` pairs encoded.
    pub fn join(&self, path: &str, query: &[(&str, &str)]) -> Result<Uri, String> {
        let mut url = self.url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url.as_str()
            .parse::<Uri>()
            .map_err(|e| format!("cannot form a request URL: {e}"))
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.url.as_str().trim_end_matches('/'))
    }
}

/// Why a request got no usable answer. Deliberately coarse: the underlying error text is not
/// kept, so nothing from the transport (or the provider) reaches a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The connection or TLS handshake failed.
    Unreachable,
    /// No complete answer within the deadline.
    Timeout,
    /// The body was larger than [`MAX_BODY_BYTES`] or could not be read.
    BadBody,
    /// The request could not be formed (e.g. a credential not valid in an HTTP header).
    Request,
}

/// An answer: status and body. The body may hold provider data (even a token): parse what is
/// needed and drop it; never log it.
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Bytes,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// How a connection to a destination is made: straight to it, or through a `CONNECT` tunnel
/// of the egress proxy the environment names for it.
#[derive(Clone)]
struct Egress {
    direct: HttpConnector,
    proxies: Arc<Matcher>,
}

type Connecting = Pin<
    Box<
        dyn Future<
                Output = Result<
                    TokioIo<tokio::net::TcpStream>,
                    Box<dyn std::error::Error + Send + Sync>,
                >,
            > + Send,
    >,
>;

impl Egress {
    /// The proxy to tunnel through for `dst`, if any: only for https (TLS then runs inside the
    /// tunnel, end to end), and only when `NO_PROXY` does not name the host.
    fn proxy_for(&self, dst: &Uri) -> Option<(Uri, Option<HeaderValue>)> {
        if dst.scheme_str() != Some("https") {
            return None;
        }
        let via = self.proxies.intercept(dst)?;
        Some((via.uri().clone(), via.basic_auth().cloned()))
    }
}

impl tower_service::Service<Uri> for Egress {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.direct.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let mut direct = self.direct.clone();
        match self.proxy_for(&dst) {
            Some((proxy, auth)) => {
                let mut tunnel = Tunnel::new(proxy, direct);
                if let Some(auth) = auth {
                    tunnel = tunnel.with_auth(auth);
                }
                Box::pin(async move { tunnel.call(dst).await.map_err(Into::into) })
            }
            None => Box::pin(async move { direct.call(dst).await.map_err(Into::into) }),
        }
    }
}

/// Whether the environment's proxy settings send a request to `uri` through a proxy (a proxy
/// variable applies to it and `NO_PROXY` does not name its host).
pub fn proxied(uri: &Uri) -> bool {
    Matcher::from_env().intercept(uri).is_some()
}

/// An HTTP client with a deadline per request.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpsConnector<Egress>, Full<Bytes>>,
    timeout: Duration,
}

impl Http {
    /// A client whose requests (connect, TLS, headers and body together) end after `timeout`.
    /// It refuses plain http altogether unless `allow_insecure_loopback` (tests). Fails when the
    /// system has no root certificates. The egress proxy settings are read from the
    /// environment here, once.
    pub fn new(timeout: Duration, allow_insecure_loopback: bool) -> Result<Http, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false); // the TLS layer below decides http vs https per request
        http.set_connect_timeout(Some(timeout));
        let roots = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| format!("cannot load the system's root certificates: {e}"))?;
        // Plain http can only reach here for base URLs checked to be loopback IP addresses.
        let https = if allow_insecure_loopback {
            roots.https_or_http()
        } else {
            roots.https_only()
        }
        .enable_http1()
        .wrap_connector(Egress {
            direct: http,
            proxies: Arc::new(Matcher::from_env()),
        });
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Http { client, timeout })
    }

    /// Sends one request and reads the answer. `bearer` goes into a sensitive
    /// `Authorization` header (redacted from `Debug`); `json` is the request body.
    pub async fn send(
        &self,
        method: Method,
        uri: Uri,
        bearer: Option<&SecretString>,
        json: Option<Bytes>,
    ) -> Result<Answer, Transport> {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("vault-connection-operator/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = bearer {
            let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
                .map_err(|_| Transport::Request)?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        if json.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(json.unwrap_or_default()))
            .map_err(|_| Transport::Request)?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|_| Transport::Unreachable)?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|_| Transport::BadBody)?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(Transport::Timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(https_proxy: &str, no_proxy: &str) -> Egress {
        let proxies = Matcher::builder()
            .https(https_proxy)
            .http(https_proxy)
            .no(no_proxy)
            .build();
        Egress {
            direct: HttpConnector::new(),
            proxies: Arc::new(proxies),
        }
    }

    #[test]
    fn https_goes_through_the_proxy_unless_no_proxy_names_the_host() {
        let e = egress("http://user:pw@proxy.internal:3128", "api.internal,.svc");
        let (proxy, auth) = e
            .proxy_for(&"https://api.doppler.com/v3/me".parse().unwrap())
            .expect("proxied");
        assert_eq!(proxy.authority().unwrap().as_str(), "proxy.internal:3128");
        assert!(
            auth.is_some_and(|a| a.is_sensitive()),
            "basic auth, marked sensitive"
        );
        for direct in ["https://api.internal/", "https://x.ns.svc/"] {
            assert!(e.proxy_for(&direct.parse().unwrap()).is_none(), "{direct}");
        }
    }

    #[test]
    fn plain_http_is_never_proxied_and_no_proxy_setting_means_direct() {
        let e = egress("http://proxy.internal:3128", "");
        assert!(
            e.proxy_for(&"http://127.0.0.1:8080/".parse().unwrap())
                .is_none()
        );
        let none = Egress {
            direct: HttpConnector::new(),
            proxies: Arc::new(Matcher::builder().build()),
        };
        assert!(
            none.proxy_for(&"https://api.doppler.com/".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn https_base_urls_are_accepted_with_or_without_a_path() {
        for url in [
            "https://api.doppler.com",
            "https://eu.infisical.com/",
            "https://infisical.example.com:8443/prefix",
        ] {
            assert!(BaseUrl::parse(url, false).is_ok(), "{url}");
        }
    }

    #[test]
    fn plain_http_is_refused_unless_loopback_and_allowed() {
        assert!(BaseUrl::parse("http://api.doppler.com", true).is_err());
        assert!(BaseUrl::parse("http://127.0.0.1:8080", false).is_err());
        assert!(
            BaseUrl::parse("http://localhost:8080", true).is_err(),
            "names can resolve anywhere"
        );
        assert!(BaseUrl::parse("http://10.0.0.1", true).is_err());
        assert!(BaseUrl::parse("http://127.0.0.1:8080", true).is_ok());
        assert!(BaseUrl::parse("http://[::1]:8080", true).is_ok());
    }

    #[test]
    fn user_info_queries_fragments_and_other_schemes_are_refused() {
        for url in [
            "https://user:pass@api.doppler.com",
            "https://api.doppler.com/?x=1",
            "https://api.doppler.com/#f",
            "ftp://api.doppler.com",
            "api.doppler.com",
        ] {
            assert!(BaseUrl::parse(url, true).is_err(), "{url}");
        }
        let err = BaseUrl::parse("https://user:CANARYpw@h.example", false).unwrap_err();
        assert!(!err.contains("CANARYpw"), "{err}");
    }

    #[test]
    fn paths_join_under_the_base_and_queries_are_encoded() {
        let base = BaseUrl::parse("https://h.example/prefix/", false).unwrap();
        let uri = base
            .join(
                "/v3/configs/config",
                &[("project", "a b&c"), ("config", "prd")],
            )
            .unwrap();
        assert_eq!(
            uri.to_string(),
            "https://h.example/prefix/v3/configs/config?project=a+b%26c&config=prd"
        );
        assert_eq!(base.authority(), "h.example");
        assert_eq!(base.to_string(), "https://h.example/prefix");
    }
}
