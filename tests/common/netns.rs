//! Connections made from inside a pod's network namespace (the operator image has no shell), as
//! the node's NetworkPolicy engine judges them; and bare pods (the node's `pause` image) to
//! probe from or to.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use super::eventually;
use super::node::Node;

/// What became of a TCP connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Something answered the handshake.
    Connected,
    /// The destination's host answered with a reset: the packets got there, nothing listens.
    Refused,
    /// No answer within the deadline: the packets were dropped on the way.
    Dropped,
}

/// How long a probe waits for an answer before it calls the packets dropped.
const DEADLINE: Duration = Duration::from_secs(3);

/// Runs F on a thread of its own that has entered the network namespace of process PID.
fn in_netns<T: Send + 'static>(pid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("open the netns");
        // SAFETY: setns on this thread only, with a valid namespace descriptor; the thread ends
        // after F, so no other code runs in the namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the probe thread")
}

/// A TCP connection from PID's network namespace to ADDR (`ip:port`).
pub fn probe(pid: u32, addr: &str) -> Reach {
    let addr: SocketAddr = addr.parse().expect("ip:port");
    in_netns(pid, move || {
        match TcpStream::connect_timeout(&addr, DEADLINE) {
            Ok(_) => Reach::Connected,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Reach::Refused,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Reach::Dropped,
            Err(e) => panic!("connect to {addr}: {e}"),
        }
    })
}

/// `GET PATH` over plain HTTP from PID's network namespace; the status line, or None when the
/// connection was not made.
pub fn http_get(pid: u32, addr: &str, path: &str) -> Option<String> {
    let (addr, path): (SocketAddr, String) = (addr.parse().expect("ip:port"), path.to_owned());
    in_netns(pid, move || {
        let mut s = TcpStream::connect_timeout(&addr, DEADLINE).ok()?;
        s.set_read_timeout(Some(DEADLINE)).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.lines().next().map(str::to_owned)
    })
}

/// A pod running only the node's `pause` image in NS, labelled LABELS; returns its IP and the host
/// pid of its container once it runs.
pub async fn bare_pod(
    client: &kube::Client,
    node: &Node,
    ns: &str,
    name: &str,
    labels: serde_json::Value,
) -> (String, u32) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "pause",
                "image": format!("registry.k8s.io/pause:{}", pause_version()),
                "imagePullPolicy": "Never",
            }],
        },
    }))
    .expect("a pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create the pod");
    let (ip, container) = eventually(60, &format!("pod {ns}/{name} to run"), || async {
        let status = pods.get(name).await.ok()?.status?;
        let ip = status.pod_ip?;
        let c = status.container_statuses?.into_iter().next()?;
        c.state?.running?;
        Some((ip, c.container_id?))
    })
    .await;
    (ip, node.pid_of(&container))
}

/// The host pid and IP of a pod's first running container.
pub fn pid_and_ip(node: &Node, pod: &Pod) -> (u32, String) {
    let status = pod.status.as_ref().expect("pod status");
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())
        .expect("a running container");
    (
        node.pid_of(&container),
        status.pod_ip.clone().expect("a pod IP"),
    )
}

/// The pause image's version, as `hack/testenv/lib.sh` pins it.
fn pause_version() -> String {
    let lib = std::fs::read_to_string(super::repo().join("hack/testenv/lib.sh")).expect("lib.sh");
    lib.lines()
        .find_map(|l| l.strip_prefix("PAUSE_VERSION="))
        .and_then(|v| v.split_whitespace().next())
        .expect("PAUSE_VERSION in lib.sh")
        .to_owned()
}
