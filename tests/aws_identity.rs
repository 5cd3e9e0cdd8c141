//! The operator's AWS identity on the test node, the EKS way: the chart installed with the values
//! users set, EKS's injection done by the pod identity webhook stand-in at admission, tokens
//! projected by the kubelet, and the SDK's own credential providers in the operator image.
//!
//! - IRSA: the ServiceAccount annotation, a kubelet-projected token (audience sts.amazonaws.com)
//!   exchanged at moto's STS through a proxy that checks the token at the API server and
//!   shortens the credentials' lifetime, so renewal before expiry is seen.
//! - EKS Pod Identity: an association, the agent stand-in on 169.254.170.23:80 (it checks the
//!   `Authorization` token with a TokenReview), the SDK's container provider.
//! - No identity: the chart's default turns IMDS off, so nothing falls back to the node's role.
//!
//! Needs the node and the image (`hack/testenv.sh up --node`, `hack/image.sh --load`). What the
//! stand-ins mimic is said in hack/testenv/eks.py.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use common::chart::Release;
use common::eks::{self, AGENT, Association, AwsProxy};
use common::node::{Node, all_ready, delete_namespace, install, pods};
use common::ssm::version;
use common::{Connection, Credentials, World, eventually, unique};

/// How long the STS credentials the proxy passes on live.
const LIFETIME: Duration = Duration::from_secs(30);

/// The operator's ServiceAccount name, fixed so an association can name it before the install.
const SA: &str = "vault-connection-operator";

fn env_of(c: &Container, name: &str) -> Option<String> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn operator_container(pod: &Pod) -> Container {
    pod.spec.as_ref().expect("spec").containers[0].clone()
}

/// (audience, path) of the projected ServiceAccount token in volume NAME of POD.
fn projected_token(pod: &Pod, name: &str) -> Option<(String, String, i64)> {
    let volume = pod
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)?;
    let token = volume.projected.as_ref()?.sources.as_ref()?[0]
        .service_account_token
        .clone()?;
    Some((
        token.audience?,
        token.path,
        token.expiration_seconds.unwrap_or(0),
    ))
}

/// The operator's one pod in NS, once it runs.
async fn operator_pod(client: &kube::Client, ns: &str, release: &str) -> Pod {
    eventually(90, "the operator pod to run", || async {
        pods(client, ns, release).await.into_iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.container_id.is_some()))
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread")] // the STS proxy answers while helm --wait blocks a thread
async fn irsa_the_annotated_service_account_gets_a_projected_token_exchanged_at_sts_and_renewed_before_expiry()
 {
    let Some(w) = World::new("team-irsa").await else {
        return;
    };
    let Some(node) = Node::get(&w.env) else {
        return;
    };
    let host = w.env.node.as_ref().expect("a node").host_ip.clone();
    let ops = w.namespace("vco-irsa").await;
    let (aws, endpoint) = AwsProxy::start(
        &host,
        w.env.ssm_endpoint.clone(),
        LIFETIME,
        w.client.clone(),
    )
    .await;
    let role = format!("arn:aws:iam::123456789012:role/{}", unique("vco-irsa"));
    // What a user sets: the annotation. (STS is moto behind the proxy: AWS_ENDPOINT_URL_STS.)
    let values = eks::values_without_keys(
        &node.image,
        &endpoint,
        &w.ns,
        &w.prefix,
        vec![json!({"name": "AWS_ENDPOINT_URL_STS", "value": endpoint})],
        json!({"serviceAccount": {"name": SA, "annotations": {"eks.amazonaws.com/role-arn": role}}}),
    );
    let (release, _) = install(&w.env, &ops, &values, &[]);
    let rendered = release.manifest();
    let pod = operator_pod(&w.client, &ops, &release.name).await;
    let c = operator_container(&pod);

    // The chart renders no identity; admission gave the pod EKS's, and no keys.
    let chart_container = common::chart::operator_container(rendered.of_kind("Deployment")[0]);
    assert_eq!(
        common::chart::env_value(chart_container, "AWS_ROLE_ARN"),
        None
    );
    assert_eq!(env_of(&c, "AWS_ROLE_ARN").as_deref(), Some(role.as_str()));
    assert_eq!(
        env_of(&c, "AWS_WEB_IDENTITY_TOKEN_FILE").as_deref(),
        Some("/var/run/secrets/eks.amazonaws.com/serviceaccount/token")
    );
    assert_eq!(env_of(&c, "AWS_ACCESS_KEY_ID"), None, "no keys");
    assert_eq!(env_of(&c, "AWS_SECRET_ACCESS_KEY"), None, "no keys");
    assert_eq!(
        env_of(&c, "AWS_EC2_METADATA_DISABLED").as_deref(),
        Some("true")
    );
    assert_eq!(
        projected_token(&pod, "aws-iam-token"),
        Some(("sts.amazonaws.com".into(), "token".into(), 86400))
    );

    // The kubelet projected it: a token of the operator's ServiceAccount for STS's audience,
    // readable by the operator's non-root user.
    let (pid, _) = common::netns::pid_and_ip(&node, &pod);
    let token = std::fs::read_to_string(format!(
        "/proc/{pid}/root/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
    ))
    .expect("the projected token in the container");
    let claims = eks::claims(&token);
    let subject = format!("system:serviceaccount:{ops}:{SA}");
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    assert_eq!(claims["sub"], json!(subject));

    // The operator works with it: a connection is written, then rotated, while the credentials
    // expire every 30 s (the drift check calls SSM every 5 s meanwhile).
    w.apply(Credentials::secret("creds").token("ops_irsa"))
        .await;
    w.apply(Connection::onepassword("conn").secret("creds"))
        .await;
    eventually(60, "the connection to be Ready", || async {
        all_ready(&w.env, &w.ns).then_some(())
    })
    .await;
    eventually(100, "three web identity exchanges", || async {
        (aws.exchanges().len() >= 3).then_some(())
    })
    .await;
    w.rotate("creds", "access_token", "ops_irsa_rotated").await;
    eventually(30, "the rotation with renewed keys", || async {
        (version(&w.ssm, &w.param("conn")).await == Some(2)).then_some(())
    })
    .await;

    let exchanges = aws.exchanges();
    for x in &exchanges {
        assert_eq!(x.role, role, "the annotated role");
        assert_eq!(
            x.subject.as_deref(),
            Some(subject.as_str()),
            "the API server accepts each token as the operator's, for sts.amazonaws.com"
        );
    }
    for pair in exchanges.windows(2) {
        assert!(
            pair[1].at < pair[0].expires,
            "renewed before the previous keys expired: {pair:?}"
        );
    }
    let calls = aws.calls();
    assert!(!calls.is_empty(), "SSM calls went through the proxy");
    for call in &calls {
        let issued = exchanges
            .iter()
            .find(|x| x.key == call.key)
            .unwrap_or_else(|| panic!("{call:?} is signed with a key STS did not issue"));
        assert!(
            call.at < issued.expires,
            "{call:?} was signed with keys that had expired at {:?}",
            issued.expires
        );
    }
    let used: BTreeSet<&str> = calls.iter().map(|c| c.key.as_str()).collect();
    assert!(used.len() >= 2, "renewed keys were used: {used:?}");
    println!(
        "figure: {} exchanges, {} SSM calls with {} keys",
        exchanges.len(),
        calls.len(),
        used.len()
    );
    delete_namespace(&w.client, &w.ns).await;
    drop(release);
    delete_namespace(&w.client, &ops).await;
}

/// `curl` to the agent from the host: the HTTP status, and the body.
fn ask_agent(token: Option<&str>) -> (String, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "--max-time", "5", "-w", "\n%{http_code}"]);
    if let Some(token) = token {
        cmd.args(["-H", &format!("Authorization: {}", token.trim())]);
    }
    cmd.arg(format!("http://{AGENT}/v1/credentials"));
    let (_, out, _) = common::run(&mut cmd);
    let (body, status) = out.rsplit_once('\n').expect("a status line");
    (status.to_owned(), body.to_owned())
}

#[tokio::test]
async fn pod_identity_the_container_provider_gets_the_associated_roles_keys_from_the_agent() {
    let Some(w) = World::new("team-podid").await else {
        return;
    };
    let Some(node) = Node::get(&w.env) else {
        return;
    };
    let host = w.env.node.as_ref().expect("a node").host_ip.clone();
    let ops = w.namespace("vco-podid").await;
    let (aws, endpoint) = AwsProxy::start(
        &host,
        w.env.ssm_endpoint.clone(),
        LIFETIME,
        w.client.clone(),
    )
    .await;
    let role = format!("arn:aws:iam::123456789012:role/{}", unique("vco-podid"));
    // What a user does: an association (EKS API) before the pods start; no annotation, no values.
    let _association = Association::new(&ops, SA, &role);
    let values = eks::values_without_keys(
        &node.image,
        &endpoint,
        &w.ns,
        &w.prefix,
        vec![],
        json!({"serviceAccount": {"name": SA}}),
    );
    let (release, _) = install(&w.env, &ops, &values, &[]);
    let pod = operator_pod(&w.client, &ops, &release.name).await;
    let c = operator_container(&pod);
    assert_eq!(
        env_of(&c, "AWS_CONTAINER_CREDENTIALS_FULL_URI").as_deref(),
        Some("http://169.254.170.23/v1/credentials")
    );
    let token_file =
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token";
    assert_eq!(
        env_of(&c, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").as_deref(),
        Some(token_file)
    );
    for absent in ["AWS_ROLE_ARN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert_eq!(env_of(&c, absent), None, "{absent}");
    }
    assert_eq!(
        projected_token(&pod, "eks-pod-identity-token").map(|t| t.0),
        Some("pods.eks.amazonaws.com".into())
    );

    w.apply(Credentials::secret("creds").token("ops_podid"))
        .await;
    w.apply(Connection::onepassword("conn").secret("creds"))
        .await;
    eventually(60, "the connection to be Ready", || async {
        all_ready(&w.env, &w.ns).then_some(())
    })
    .await;
    assert_eq!(version(&w.ssm, &w.param("conn")).await, Some(1));

    // Every SSM call was signed with keys the agent gave this pod, for the associated role.
    let served = eks::agent_keys(&ops, SA);
    assert!(!served.is_empty(), "the agent served the pod");
    assert!(served.iter().all(|(r, _)| *r == role), "{served:?}");
    let calls = aws.calls();
    assert!(!calls.is_empty(), "SSM calls went through the proxy");
    for call in &calls {
        assert!(
            served.iter().any(|(_, key)| *key == call.key),
            "{call:?} is signed with a key the agent did not serve ({served:?})"
        );
    }
    assert!(
        aws.exchanges().is_empty(),
        "no web identity: it is not IRSA"
    );

    // The agent hands keys only for a valid token of the pod identity audience, of an associated
    // ServiceAccount.
    let (pid, _) = common::netns::pid_and_ip(&node, &pod);
    let own = std::fs::read_to_string(format!("/proc/{pid}/root{token_file}")).expect("token");
    assert_eq!(eks::claims(&own)["aud"], json!(["pods.eks.amazonaws.com"]));
    let (status, body) = ask_agent(Some(&own));
    assert_eq!(status, "200", "{body}");
    let keys: Value = serde_json::from_str(&body).expect("the agent's JSON");
    for field in ["AccessKeyId", "SecretAccessKey", "Token", "Expiration"] {
        assert!(keys[field].is_string(), "{field} in {body}");
    }
    assert_eq!(ask_agent(None).0, "401", "no Authorization header");
    assert_eq!(ask_agent(Some("not-a-token")).0, "403");
    let token_for = |sa: &str, audience: &str| {
        w.env
            .kubectl(&["create", "token", sa, "-n", &ops, "--audience", audience])
            .expect_success()
    };
    assert_eq!(
        ask_agent(Some(&token_for(SA, "sts.amazonaws.com"))).0,
        "403",
        "a token for another audience"
    );
    assert_eq!(
        ask_agent(Some(&token_for("default", "pods.eks.amazonaws.com"))).0,
        "400",
        "a ServiceAccount without an association"
    );
    delete_namespace(&w.client, &w.ns).await;
    drop(release);
    delete_namespace(&w.client, &ops).await;
}

/// Installs the chart without an identity (no keys, annotation or association) and without a
/// NetworkPolicy, so IMDS is reachable: only the SDK's configuration decides whether it is asked.
/// Returns the release and the operator pod's IP.
async fn without_identity<'a>(
    w: &'a World,
    node: &Node,
    ops: &str,
    imds_fallback: bool,
) -> (Release<'a>, String) {
    let values = eks::values_without_keys(
        &node.image,
        &w.env.ssm_endpoint,
        &w.ns,
        &w.prefix,
        vec![],
        json!({"networkPolicy": {"enabled": false}, "aws": {"imdsFallback": imds_fallback}}),
    );
    // No --wait: an operator that refuses to start without credentials never gets Ready.
    let release = Release::install(&w.env, ops, &["-f", values.path()]);
    let pod = operator_pod(&w.client, ops, &release.name).await;
    let ip = pod.status.and_then(|s| s.pod_ip).expect("a pod IP");
    (release, ip)
}

#[tokio::test]
async fn without_an_identity_the_operator_never_asks_imds_for_the_nodes_role_unless_told_to() {
    let Some(w) = World::new("team-noid").await else {
        return;
    };
    let Some(node) = Node::get(&w.env) else {
        return;
    };
    w.apply(Credentials::secret("creds").token("ops_noid"))
        .await;
    w.apply(Connection::onepassword("conn").secret("creds"))
        .await;

    // The chart's default: IMDS answers on the pod's route, and nobody asks it.
    let ops = w.namespace("vco-noid").await;
    let (release, ip) = without_identity(&w, &node, &ops, false).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!all_ready(&w.env, &w.ns), "no identity, no write");
    assert_eq!(version(&w.ssm, &w.param("conn")).await, None);
    assert_eq!(eks::imds_requests_from(&ip), Vec::<String>::new());
    drop(release);
    delete_namespace(&w.client, &ops).await;

    // The documented way back (aws.imdsFallback=true): the SDK asks IMDS, which the recorder sees
    // (so the silence above is the SDK's, not the recorder's).
    let ops = w.namespace("vco-imds").await;
    let (release, ip) = without_identity(&w, &node, &ops, true).await;
    let asked = eventually(60, "the SDK to ask IMDS", || async {
        let r = eks::imds_requests_from(&ip);
        (!r.is_empty()).then_some(r)
    })
    .await;
    println!("figure: with aws.imdsFallback=true the SDK asked IMDS: {asked:?}");
    // No operator here can clean up (no credentials): stop it first (one still running puts
    // its finalizer back), then let the connection go without it.
    drop(release);
    delete_namespace(&w.client, &ops).await;
    w.env
        .kubectl(&[
            "patch",
            "vc",
            "conn",
            "-n",
            &w.ns,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ])
        .expect_success();
    delete_namespace(&w.client, &w.ns).await;
}
