"""Stand-ins for the two EKS parts a pod's AWS identity passes through, for the test node
(`hack/testenv.sh up --node`; hack/testenv/eks.sh starts them). Python standard library only.

  eks.py webhook STATE PORT   the EKS pod identity webhook, as a mutating admission webhook
                              (HTTPS on 127.0.0.1:PORT, registered by a
                              MutatingWebhookConfiguration): pods get what EKS injects
  eks.py agent STATE          the EKS Pod Identity agent on 169.254.170.23:80 (run inside the
                              node's link-local network namespace), and a recorder on IMDS's
                              169.254.169.254:80 that serves nothing

What is mimicked, and how (the real webhook, github.com/aws/amazon-eks-pod-identity-webhook, is not
served by the Go module proxy; no open-source Pod Identity agent exists):

- IRSA: a pod whose ServiceAccount is annotated `eks.amazonaws.com/role-arn` gets, in every
  container that does not set them already, AWS_STS_REGIONAL_ENDPOINTS=regional, AWS_DEFAULT_REGION
  and AWS_REGION (the cluster's region), AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE=
  /var/run/secrets/eks.amazonaws.com/serviceaccount/token, and the projected volume `aws-iam-token`
  (a kubelet-projected ServiceAccount token; audience `eks.amazonaws.com/audience` or
  sts.amazonaws.com; expiry `eks.amazonaws.com/token-expiration`, default 86400 s, at least 3600 s,
  as the webhook clamps it) mounted read-only there: the same names, paths and defaults as the
  webhook's own test data.
- Pod Identity: an association (EKS API: namespace + ServiceAccount -> role) is a file
  STATE/eks/associations/NAMESPACE/SERVICEACCOUNT holding the role ARN (tests write it). A pod of an
  associated ServiceAccount gets AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.23/v1/credentials
  and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/
  eks-pod-identity-token with the projected volume `eks-pod-identity-token` (audience
  pods.eks.amazonaws.com), and then no IRSA variables (Pod Identity wins, as on EKS).
- The agent: the SDK sends the token file's content as `Authorization`. The real agent hands it to
  EKS Auth (AssumeRoleForPodIdentity), which validates it and looks the association up; here a
  TokenReview at the API server (audience pods.eks.amazonaws.com) validates it, the association
  file names the role, and moto's STS AssumeRole gives the keys, returned in the agent's JSON
  (AccessKeyId, SecretAccessKey, Token, AccountId, Expiration). Missing, invalid or unassociated
  tokens get 401/403/400 with an error message, never keys.

Both talk to the API server with the test environment's admin certificate (the real webhook and
agent have narrow rights of their own). Each request is one line in the component's log.
"""

import base64
import json
import os
import ssl
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REGION = "us-east-1"
IRSA_TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
PI_TOKEN_DIR = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
PI_URI = "http://169.254.170.23/v1/credentials"
PI_AUDIENCE = "pods.eks.amazonaws.com"
DEFAULT_EXPIRATION = 86400
MIN_EXPIRATION = 3600


def log(*parts):
    print(" ".join(str(p) for p in parts), flush=True)


class Cluster:
    """The API server and moto, as this state directory's files name them."""

    def __init__(self, state):
        self.state = state
        pki = os.path.join(state, "pki")
        self.api = open(os.path.join(state, "kube-apiserver.url")).read().strip()
        self.moto = open(os.path.join(state, "moto.url")).read().strip()
        self.tls = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        self.tls.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))

    def kube(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.tls, timeout=10) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def association(self, namespace, service_account):
        """The role of a Pod Identity association, or None."""
        path = os.path.join(self.state, "eks", "associations", namespace, service_account)
        try:
            return open(path).read().strip() or None
        except (FileNotFoundError, NotADirectoryError):
            return None


# ---- the webhook ---------------------------------------------------------------------------------

def env_var(name, value):
    return {"name": name, "value": value}


def injection(cluster, namespace, pod):
    """(volume, mount path, env) EKS would add to POD, or None."""
    sa_name = pod.get("spec", {}).get("serviceAccountName") or "default"
    region_env = [env_var("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
                  env_var("AWS_DEFAULT_REGION", REGION), env_var("AWS_REGION", REGION)]
    if cluster.association(namespace, sa_name):
        volume = {"name": "eks-pod-identity-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": PI_AUDIENCE, "expirationSeconds": DEFAULT_EXPIRATION,
            "path": "eks-pod-identity-token"}}]}}
        env = region_env + [env_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", PI_URI),
                            env_var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                                    PI_TOKEN_DIR + "/eks-pod-identity-token")]
        return volume, PI_TOKEN_DIR, env, "pod-identity"
    sa = cluster.kube("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa_name}")
    notes = ((sa or {}).get("metadata") or {}).get("annotations") or {}
    role = notes.get("eks.amazonaws.com/role-arn")
    if not role:
        return None
    expiration = DEFAULT_EXPIRATION
    raw = (pod.get("metadata", {}).get("annotations") or {}).get(
        "eks.amazonaws.com/token-expiration", notes.get("eks.amazonaws.com/token-expiration"))
    if raw is not None:
        try:
            expiration = max(int(raw), MIN_EXPIRATION)
        except ValueError:
            pass
    audience = notes.get("eks.amazonaws.com/audience", "sts.amazonaws.com")
    volume = {"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": audience, "expirationSeconds": expiration, "path": "token"}}]}}
    env = region_env + [env_var("AWS_ROLE_ARN", role),
                        env_var("AWS_WEB_IDENTITY_TOKEN_FILE", IRSA_TOKEN_DIR + "/token")]
    return volume, IRSA_TOKEN_DIR, env, "irsa"


def patch_for(cluster, namespace, pod):
    found = injection(cluster, namespace, pod)
    if found is None:
        return None, "none"
    volume, mount_path, env, kind = found
    spec = pod.get("spec", {})
    ops = []
    if not any(v.get("name") == volume["name"] for v in spec.get("volumes") or []):
        if spec.get("volumes") is None:
            ops.append({"op": "add", "path": "/spec/volumes", "value": [volume]})
        else:
            ops.append({"op": "add", "path": "/spec/volumes/-", "value": volume})
    for field in ("initContainers", "containers"):
        containers = [dict(c) for c in spec.get(field) or []]
        for c in containers:
            have = {e.get("name") for e in c.get("env") or []}
            c["env"] = list(c.get("env") or []) + [e for e in env if e["name"] not in have]
            mounts = list(c.get("volumeMounts") or [])
            if not any(m.get("name") == volume["name"] for m in mounts):
                mounts.append({"name": volume["name"], "mountPath": mount_path, "readOnly": True})
            c["volumeMounts"] = mounts
        if containers:
            ops.append({"op": "add", "path": f"/spec/{field}", "value": containers})
    return ops, kind


def webhook(state, port):
    cluster = Cluster(state)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_POST(self):
            review = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            req = review.get("request") or {}
            answer = {"uid": req.get("uid", ""), "allowed": True}
            pod = req.get("object") or {}
            name = pod.get("metadata", {}).get("name") or pod.get("metadata", {}).get("generateName", "?")
            try:
                ops, kind = patch_for(cluster, req.get("namespace", ""), pod)
            except Exception as e:  # noqa: BLE001 - failurePolicy Ignore: admit unmutated, say why
                ops, kind = None, f"error: {e}"
            if ops:
                answer["patchType"] = "JSONPatch"
                answer["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
            log("mutate", f"{req.get('namespace')}/{name}", kind)
            body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                               "response": answer}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # health
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    eks = os.path.join(state, "eks")
    tls.load_cert_chain(os.path.join(eks, "webhook.crt"), os.path.join(eks, "webhook.key"))
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    log("webhook listening on", f"https://127.0.0.1:{port}/mutate")
    server.serve_forever()


# ---- the agent -----------------------------------------------------------------------------------

def assume_role(cluster, role, session):
    """Keys for ROLE from moto's STS (which accepts unsigned requests)."""
    form = urllib.parse.urlencode({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": role,
                                   "RoleSessionName": session[:64], "DurationSeconds": "21600"})
    # moto routes a request by the service its credential scope names, and checks no signature.
    scope = "Credential=EKSTESTENVAGENT/20250101/" + REGION + "/sts/aws4_request"
    req = urllib.request.Request(cluster.moto + "/", data=form.encode(), method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": f"AWS4-HMAC-SHA256 {scope}, SignedHeaders=host, Signature=0"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        root = ET.fromstring(resp.read())
    creds = next(e for e in root.iter() if e.tag.endswith("Credentials"))
    field = {e.tag.split("}")[-1]: e.text for e in creds}
    return {"AccessKeyId": field["AccessKeyId"], "SecretAccessKey": field["SecretAccessKey"],
            "Token": field["SessionToken"], "AccountId": role.split(":")[4],
            "Expiration": field["Expiration"]}


def agent(state):
    cluster = Cluster(state)

    class Agent(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path != "/v1/credentials":
                return self.answer(404, {"Message": "not found"})
            token = self.headers.get("Authorization")
            if not token:
                log("credentials", self.client_address[0], "401 no Authorization header")
                return self.answer(401, {"Message": "Service account token cannot be empty"})
            review = cluster.kube("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, "audiences": [PI_AUDIENCE]}})
            status = (review or {}).get("status") or {}
            user = (status.get("user") or {}).get("username", "")
            if not status.get("authenticated") or PI_AUDIENCE not in (status.get("audiences") or []):
                log("credentials", self.client_address[0], "403 token refused:", status.get("error", "-"))
                return self.answer(403, {"Message": "Service account token is invalid"})
            parts = user.split(":")
            if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
                return self.answer(403, {"Message": "not a service account"})
            namespace, sa = parts[2], parts[3]
            role = cluster.association(namespace, sa)
            if not role:
                log("credentials", f"{namespace}/{sa}", "400 no association")
                return self.answer(400, {"Message": "no Pod Identity association"})
            creds = assume_role(cluster, role, f"eks-testenv-{namespace}-{sa}")
            log("credentials", f"{namespace}/{sa}", "200", role, creds["AccessKeyId"], creds["Expiration"])
            self.answer(200, creds)

    class Imds(BaseHTTPRequestHandler):
        """IMDS's address: records every request and serves nothing, so a test can tell that nobody
        fell back to the node's instance role."""

        def log_message(self, *_):
            pass

        def refuse(self):
            log("imds", self.client_address[0], self.command, self.path)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PUT = refuse

    servers = [ThreadingHTTPServer(("169.254.170.23", 80), Agent),
               ThreadingHTTPServer(("169.254.169.254", 80), Imds)]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    log("agent listening on", PI_URI, "and recording IMDS at http://169.254.169.254/")
    servers[0].serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "webhook":
        webhook(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "agent":
        agent(sys.argv[2])
    else:
        sys.exit(__doc__)
