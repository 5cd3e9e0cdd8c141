//! The test node's EKS parts (hack/testenv/eks.py, started by `up --node`): Pod Identity
//! associations, what the Pod Identity agent and the IMDS recorder logged, and [`AwsProxy`], an
//! STS and SSM endpoint in front of moto that checks each web identity token at the API server,
//! shortens the credentials' lifetime, and records which key signed each SSM call.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{Value, json};

use super::fake_ssm::forward;
use super::repo;

/// The Pod Identity agent's address, and IMDS's, on the node's link-local network.
pub const AGENT: &str = "169.254.170.23";
pub const IMDS: &str = "169.254.169.254";

/// The environment's state directory (`env.json` names it).
pub fn state_dir() -> PathBuf {
    let dir = std::env::var("VCO_TESTENV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target/testenv"));
    let text = std::fs::read_to_string(dir.join("env.json")).expect("env.json");
    let env: Value = serde_json::from_str(&text).expect("env.json is JSON");
    PathBuf::from(
        env["state_dir"]
            .as_str()
            .expect("env.json names its state_dir"),
    )
}

/// A Pod Identity association (namespace + ServiceAccount -> role), as the EKS API holds it;
/// removed when dropped. The webhook injects the agent's variables only into pods created while
/// it exists.
pub struct Association(PathBuf);

impl Association {
    pub fn new(namespace: &str, service_account: &str, role_arn: &str) -> Association {
        let dir = state_dir().join("eks/associations").join(namespace);
        std::fs::create_dir_all(&dir).expect("associations directory");
        let path = dir.join(service_account);
        std::fs::write(&path, role_arn).expect("write the association");
        Association(path)
    }
}

impl Drop for Association {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The lines of the agent's log (its answers, and IMDS requests) that mention WHAT.
pub fn agent_log(what: &str) -> Vec<String> {
    let log = std::fs::read_to_string(state_dir().join("logs/eks-agent.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(what))
        .map(str::to_owned)
        .collect()
}

/// The keys the agent handed out to NAMESPACE/SERVICEACCOUNT: (role, access key id).
pub fn agent_keys(namespace: &str, service_account: &str) -> Vec<(String, String)> {
    agent_log(&format!("credentials {namespace}/{service_account} 200 "))
        .iter()
        .filter_map(|l| {
            let mut f = l.split_whitespace().skip(3);
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect()
}

/// Requests the IMDS recorder saw from IP.
pub fn imds_requests_from(ip: &str) -> Vec<String> {
    agent_log(&format!("imds {ip} "))
}

/// One web identity exchanged at STS through the proxy.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// `RoleArn` of the request.
    pub role: String,
    /// Who the API server says the token belongs to, if it accepted it for `sts.amazonaws.com`.
    pub subject: Option<String>,
    /// The access key id STS answered with, and the expiry the proxy gave it.
    pub key: String,
    pub expires: SystemTime,
    pub at: SystemTime,
}

/// One SSM call: its operation and the access key id that signed it.
#[derive(Clone, Debug)]
pub struct Signed {
    pub op: String,
    pub key: String,
    pub at: SystemTime,
}

/// STS and SSM in front of moto (an endpoint for `AWS_ENDPOINT_URL_STS` and `_SSM`).
#[derive(Clone)]
pub struct AwsProxy {
    lifetime: Duration,
    kube: Client,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    calls: Arc<Mutex<Vec<Signed>>>,
}

impl AwsProxy {
    /// Starts a proxy to moto at UPSTREAM on HOST (the node's bridge address, for pods); STS
    /// credentials it passes on expire LIFETIME after they were issued. Token checks use KUBE.
    pub async fn start(
        host: &str,
        upstream: String,
        lifetime: Duration,
        kube: Client,
    ) -> (AwsProxy, String) {
        let listener = tokio::net::TcpListener::bind((host, 0))
            .await
            .expect("bind a port for the proxy");
        let addr = listener.local_addr().expect("address");
        let proxy = AwsProxy {
            lifetime,
            kube,
            exchanges: Arc::default(),
            calls: Arc::default(),
        };
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
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

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().expect("exchanges").clone()
    }

    pub fn calls(&self) -> Vec<Signed> {
        self.calls.lock().expect("calls").clone()
    }

    async fn handle(&self, req: Request<Incoming>, upstream: &str) -> Response<Full<Bytes>> {
        let target = header(&req, "x-amz-target");
        let key = header(&req, "authorization")
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split('/').next())
            .unwrap_or("")
            .to_owned();
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if !target.is_empty() {
            self.calls.lock().expect("calls").push(Signed {
                op: target.rsplit('.').next().unwrap_or("?").to_owned(),
                key,
                at: SystemTime::now(),
            });
            return forward(upstream, parts, body).await;
        }
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
        let field = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if field("Action") != "AssumeRoleWithWebIdentity" {
            return forward(upstream, parts, body).await;
        }
        let subject = self.review(&field("WebIdentityToken")).await;
        let response = forward(upstream, parts, body).await;
        let (mut parts, body) = response.into_parts();
        let text =
            String::from_utf8_lossy(&body.collect().await.expect("body").to_bytes()).into_owned();
        let expires = SystemTime::now() + self.lifetime;
        let text = replace_element(&text, "Expiration", &rfc3339(expires));
        self.exchanges.lock().expect("exchanges").push(Exchange {
            role: field("RoleArn"),
            subject,
            key: element(&text, "AccessKeyId").unwrap_or_default(),
            expires,
            at: SystemTime::now(),
        });
        parts.headers.remove("content-length");
        Response::from_parts(parts, Full::new(Bytes::from(text)))
    }

    /// The token's subject if the API server accepts it for STS's audience (moto does not look).
    async fn review(&self, token: &str) -> Option<String> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec!["sts.amazonaws.com".into()]),
            },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.kube.clone())
            .create(&PostParams::default(), &review)
            .await
            .expect("TokenReview");
        let status = answer.status?;
        (status.authenticated == Some(true)
            && status
                .audiences
                .unwrap_or_default()
                .iter()
                .any(|a| a == "sts.amazonaws.com"))
        .then(|| status.user?.username)
        .flatten()
    }
}

fn header(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..end].to_owned())
}

fn replace_element(xml: &str, name: &str, value: &str) -> String {
    match element(xml, name) {
        Some(old) => xml.replacen(
            &format!("<{name}>{old}</{name}>"),
            &format!("<{name}>{value}</{name}>"),
            1,
        ),
        None => xml.to_owned(),
    }
}

fn rfc3339(t: SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(t).expect("a timestamp");
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Helm values for the image on the node with NO keys: the identity comes from EKS's injection
/// (EXTRA merges on top: serviceAccount annotations, endpoints). SSM at SSM_ENDPOINT.
pub fn values_without_keys(
    image: &str,
    ssm_endpoint: &str,
    team: &str,
    prefix: &str,
    extra_env: Vec<Value>,
    extra: Value,
) -> super::chart::ValuesFile {
    let (repository, tag) = image.rsplit_once(':').expect("image ref has a tag");
    let mut env = vec![json!({"name": "AWS_ENDPOINT_URL_SSM", "value": ssm_endpoint})];
    env.extend(extra_env);
    let mut values = json!({
        "replicaCount": 1,
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "operator": {
            "ssmPrefix": prefix,
            "clusterName": super::CLUSTER,
            "watchNamespaces": [team],
            "driftCheckInterval": "5s",
        },
        "extraEnv": env,
    });
    merge(&mut values, extra);
    super::chart::ValuesFile::new(&serde_yaml::to_string(&values).expect("values YAML"))
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The claims of a JWT (its payload, not verified).
pub fn claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.trim().split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}
