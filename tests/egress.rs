//! Behind a mandatory egress proxy, and with SSM in another account: the operator as a host
//! process from a kubeconfig, `HTTPS_PROXY`/`HTTP_PROXY` naming a recording proxy, `NO_PROXY`
//! naming the API server. SSM, STS and the provider (Doppler) live under names only the proxy
//! can reach, so nothing gets there around it; the API server must not see the proxy at all.
//!
//! And without any identity: the operator stops at start with an error that says what to give
//! the pod, rather than failing every call later.
//!
//! Real parts: moto's SSM and STS (moto keeps the parameters of each account apart, by the
//! account of the access key), the SDK's own proxy and AssumeRole code, the verifier's HTTPS
//! client doing TLS inside the tunnel. The proxy's TLS inspection stands in for a corporate
//! proxy's (its CA is given to the operator with `SSL_CERT_FILE`).

mod common;

use std::time::Duration;

use common::egress::{DOMAIN, EgressProxy, Seen};
use common::providers::Providers;
use common::{Connection, Credentials, Options, World, condition, eventually, unique};

/// The account the central role lives in (moto's default account is 123456789012).
const CENTRAL: &str = "222222222222";

/// Operator settings: every proxy variable set, the API server exempt by its host in
/// `NO_PROXY`, SSM reachable only through the proxy.
fn proxied(w: &World, proxy: &EgressProxy) -> Options {
    let (api_host, _) = api_server(w);
    Options::new()
        .env("HTTPS_PROXY", &proxy.url)
        .env("HTTP_PROXY", &proxy.url)
        .env("NO_PROXY", format!("{api_host},localhost"))
        .env("SSL_CERT_FILE", proxy.ca.display().to_string())
        .env(
            "AWS_ENDPOINT_URL_SSM",
            proxy.expose(&w.env.ssm_endpoint, "http", "ssm"),
        )
}

/// The API server's host and port, from the kubeconfig.
fn api_server(w: &World) -> (String, String) {
    let kubeconfig = std::fs::read_to_string(&w.env.kubeconfig).expect("kubeconfig");
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("a server");
    let authority = server.trim_start_matches("https://");
    let (host, port) = authority.rsplit_once(':').expect("a port");
    (host.to_owned(), port.to_owned())
}

fn proxy_dir() -> std::path::PathBuf {
    common::repo()
        .join("target/test-logs")
        .join(unique("egress"))
}

#[tokio::test(flavor = "multi_thread")]
async fn ssm_and_verification_go_through_the_proxy_and_the_api_server_does_not() {
    let Some(w) = World::new("egress").await else {
        return;
    };
    let proxy = EgressProxy::start(&proxy_dir()).await;
    let fakes = Providers::start().await;
    fakes
        .doppler
        .add_doppler_token("dp.st.prd.proxied", "backend", "prd");
    let opts = proxied(&w, &proxy)
        .env("VCO_VERIFY_CREDENTIALS", "true")
        .env(
            "VCO_VERIFY_DOPPLER_URL",
            proxy.expose(&fakes.doppler.url, "https", "doppler"),
        )
        .env("VCO_VERIFY_INFISICAL_URL", "https://app.infisical.com")
        .env("VCO_VERIFY_TIMEOUT", "5s");
    let _op = w.operator_with(opts).await;

    w.apply(Credentials::secret("dp").token("dp.st.prd.proxied"))
        .await;
    w.apply(Connection::doppler("dp").project("backend").config("prd"))
        .await;
    let vc = w
        .wait_condition("dp", "Ready", Some("True"), "Synced")
        .await;
    let verified = condition(&vc, "Verified").expect("a Verified condition");
    assert_eq!(verified.reason, "Verified", "{}", verified.message);
    assert!(w.read("dp").await.is_some(), "the parameter is stored");

    let seen = proxy.seen();
    let doppler_port = fakes.doppler.url.rsplit(':').next().unwrap().to_owned();
    assert!(
        seen.iter()
            .any(|s| s.method == "CONNECT"
                && s.authority == format!("doppler.{DOMAIN}:{doppler_port}")),
        "verification tunnels through the proxy: {seen:?}"
    );
    assert!(
        fakes.doppler.count("/v3/me") >= 1,
        "the provider was reached"
    );
    assert!(
        proxy.count("PutParameter") >= 1,
        "SSM writes go through the proxy: {seen:?}"
    );
    let (_, api) = api_server(&w);
    let to_api: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.authority.ends_with(&format!(":{api}")))
        .collect();
    assert!(
        to_api.is_empty(),
        "the API server is in NO_PROXY: {to_api:?}"
    );
}

/// STS's AssumeRole at moto, as a test client: the credentials of ROLE.
async fn assume(endpoint: &str, role: &str) -> (String, String, String) {
    let body = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleSessionName=test&RoleArn={}",
        url::form_urlencoded::byte_serialize(role.as_bytes()).collect::<String>()
    );
    let out = std::process::Command::new("curl")
        // moto routes an unsigned request by the service its credential scope names.
        .args(["-s", "--fail", "-X", "POST", "-d", &body, endpoint])
        .args([
            "-H",
            "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0",
        ])
        .output()
        .expect("curl");
    let xml = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |tag: &str| {
        let start = xml.find(&format!("<{tag}>")).expect(tag) + tag.len() + 2;
        let end = xml[start..].find(&format!("</{tag}>")).expect(tag);
        xml[start..start + end].to_owned()
    };
    (
        field("AccessKeyId"),
        field("SecretAccessKey"),
        field("SessionToken"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_in_another_account_is_assumed_for_ssm_with_its_external_id_and_renewed() {
    let Some(w) = World::new("xacct").await else {
        return;
    };
    let proxy = EgressProxy::start(&proxy_dir()).await;
    let role = format!("arn:aws:iam::{CENTRAL}:role/vco-central");
    let opts = proxied(&w, &proxy)
        .env(
            "AWS_ENDPOINT_URL_STS",
            proxy.expose(&w.env.ssm_endpoint, "http", "sts"),
        )
        .env("VCO_SSM_ROLE_ARN", &role)
        .env("VCO_SSM_EXTERNAL_ID", "vco-ext-7c1f")
        .env("VCO_SSM_ROLE_SESSION_NAME", "vco-test")
        .env("VCO_SSM_ROLE_SESSION_TAGS", "cluster=default,team=platform")
        .env("VCO_SSM_ROLE_SESSION_DURATION", "15s");
    let _op = w.operator_with(opts).await;

    w.one_password("op", "ops_central_1").await;
    w.wait_reason("op", "Synced").await;
    let assumed: Vec<Seen> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.action.as_deref() == Some("AssumeRole"))
        .collect();
    let first = assumed
        .first()
        .expect("the role was assumed through the proxy");
    assert_eq!(first.form.get("RoleArn"), Some(&role));
    assert_eq!(
        first.form.get("ExternalId").map(String::as_str),
        Some("vco-ext-7c1f")
    );
    assert_eq!(
        first.form.get("RoleSessionName").map(String::as_str),
        Some("vco-test")
    );
    assert_eq!(
        first.form.get("DurationSeconds").map(String::as_str),
        Some("15")
    );
    let tags: Vec<(&str, &str)> = (1..=2)
        .filter_map(|i| {
            Some((
                first.form.get(&format!("Tags.member.{i}.Key"))?.as_str(),
                first.form.get(&format!("Tags.member.{i}.Value"))?.as_str(),
            ))
        })
        .collect();
    assert_eq!(tags, [("cluster", "default"), ("team", "platform")]);

    // The parameter is in the central account, not in the pod's own.
    assert!(
        w.read("op").await.is_none(),
        "nothing in the pod's own account"
    );
    let (key, secret, token) = assume(&w.env.ssm_endpoint, &role).await;
    let central = w.env.ssm_as(&key, &secret, &token).await;
    let (value, _) = common::ssm::read(&central, &w.param("op"))
        .await
        .expect("the parameter is in the central account");
    assert!(value.contains("ops_central_1"));

    // The session lasts 15 s: a rotation after that is written with a renewed one.
    let before = proxy.count("AssumeRole");
    tokio::time::sleep(Duration::from_secs(16)).await;
    w.rotate("op", "access_token", "ops_central_2").await;
    eventually(30, "the rotation in the central account", || async {
        common::ssm::read(&central, &w.param("op"))
            .await
            .filter(|(v, _)| v.contains("ops_central_2"))
    })
    .await;
    assert!(
        proxy.count("AssumeRole") > before,
        "the session was renewed ({before} AssumeRole before the rotation)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_aws_identity_the_operator_stops_at_start_and_says_what_to_give_it() {
    let Some(w) = World::new("noid").await else {
        return;
    };
    let home = proxy_dir();
    std::fs::create_dir_all(&home).expect("home");
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vault-connection-operator"));
        cmd.arg("run")
            .envs(w.env.child_env())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("HOME", &home)
            .env("AWS_CONFIG_FILE", home.join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("none"))
            .env("VCO_NAMESPACES", &w.ns)
            .env("VCO_METRICS_ADDR", "127.0.0.1:0");
        cmd.output().expect("run the operator")
    })
    .await
    .expect("joined");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it must not run without an identity");
    assert!(
        stderr.contains("cannot use SSM: the pod has no AWS identity")
            && stderr.contains("EKS Pod Identity")
            && stderr.contains("IRSA"),
        "{stderr}"
    );
}
