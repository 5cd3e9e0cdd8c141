# The node's EKS parts and its NetworkPolicy engine (up --node), sourced by node.sh:
#
# - the node's link-local services, as pods on an EKS node see them: the Pod Identity agent's
#   169.254.170.23 and IMDS's 169.254.169.254, in a network namespace of their own
#   ($LINKLOCAL_NS), so that pods reach them through the host's forwarding path (where the policy
#   engine sees them) and nothing else on the host changes;
# - the EKS stand-ins of hack/testenv/eks.py: the pod identity webhook (a host process on
#   loopback, registered as the MutatingWebhookConfiguration EKS installs) and the Pod Identity
#   agent (in that namespace), with a recorder on IMDS's address;
# - kube-network-policies (built by install.sh), the enforcer of every NetworkPolicy on the node.
#
# Pods get a route to the two addresses (node.sh's CNI configuration). Only the host's traffic
# from the pod bridge to 169.254.0.0/16 is steered into the namespace (a routing rule of its own);
# anything there the namespace does not serve is unreachable, never sent to the host's network.
LINKLOCAL_NS=vco-linklocal
LINKLOCAL_LINK=vco-ll0            # the host's end of the namespace's link
LINKLOCAL_GW=169.254.170.1        # the host's address on that link
POD_IDENTITY_IP=169.254.170.23
IMDS_IP=169.254.169.254
LINKLOCAL_TABLE=244               # routing table (and rule preference 10244) for pods' link-local traffic
EKS_PY=$ROOT/hack/testenv/eks.py

linklocal_network() {
  ip netns add "$LINKLOCAL_NS"
  ip link add "$LINKLOCAL_LINK" type veth peer name eth0 netns "$LINKLOCAL_NS"
  ip addr add "$LINKLOCAL_GW/32" dev "$LINKLOCAL_LINK"
  ip link set "$LINKLOCAL_LINK" up
  ip -n "$LINKLOCAL_NS" link set lo up
  ip -n "$LINKLOCAL_NS" addr add "$POD_IDENTITY_IP/32" dev eth0
  ip -n "$LINKLOCAL_NS" addr add "$IMDS_IP/32" dev eth0
  ip -n "$LINKLOCAL_NS" link set eth0 up
  ip -n "$LINKLOCAL_NS" route add "$LINKLOCAL_GW/32" dev eth0
  ip -n "$LINKLOCAL_NS" route add default via "$LINKLOCAL_GW" dev eth0
  # Pods' link-local traffic: the two services, and nothing else (never the host's default route).
  ip route add "$POD_IDENTITY_IP/32" dev "$LINKLOCAL_LINK" table "$LINKLOCAL_TABLE"
  ip route add "$IMDS_IP/32" dev "$LINKLOCAL_LINK" table "$LINKLOCAL_TABLE"
  ip route add unreachable 169.254.0.0/16 table "$LINKLOCAL_TABLE"
  ip rule add pref 1$LINKLOCAL_TABLE iif "$BRIDGE" to 169.254.0.0/16 lookup "$LINKLOCAL_TABLE"
  # The agent's own connections (to the API server and moto on the bridge address) come back to
  # it through the link; nothing on the host uses the agent's address otherwise.
  ip route add "$POD_IDENTITY_IP/32" dev "$LINKLOCAL_LINK"
}

linklocal_cleanup() {
  while ip rule del pref 1$LINKLOCAL_TABLE 2>/dev/null; do :; done
  ip route flush table "$LINKLOCAL_TABLE" 2>/dev/null || true
  ip link del "$LINKLOCAL_LINK" 2>/dev/null || true
  ip netns del "$LINKLOCAL_NS" 2>/dev/null || true
  # kube-network-policies removes its table when it stops on SIGINT, not on SIGTERM.
  nft delete table inet kube-network-policies 2>/dev/null || true
}

# node_eks API_URL: the webhook (its certificate signed by the test CA, for the API server) and
# the agent; then the webhook's registration.
node_eks() {
  local api=$1 e=$STATE/eks d=$STATE/pki port
  mkdir -p "$e/associations"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=pod-identity-webhook" \
    -keyout "$e/webhook.key" -out "$e/webhook.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$e/webhook.ext"
  openssl x509 -req -in "$e/webhook.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 7 \
    -extfile "$e/webhook.ext" -out "$e/webhook.crt" 2>/dev/null
  rm -f "$e/webhook.csr" "$e/webhook.ext" "$d/ca.srl"
  read -r port < <(free_ports 1)
  start eks-webhook "$MOTO_DIR/bin/python" "$EKS_PY" webhook "$STATE" "$port"
  echo "https://127.0.0.1:$port" >"$STATE/eks-webhook.url"
  start eks-agent "$(command -v ip)" netns exec "$LINKLOCAL_NS" "$MOTO_DIR/bin/python" "$EKS_PY" agent "$STATE"
  wait_for "the pod identity webhook" eks-webhook 150 health eks-webhook
  wait_for "the Pod Identity agent" eks-agent 150 health eks-agent
  # As EKS registers it: every pod created, failurePolicy Ignore.
  KUBECONFIG=$STATE/kubeconfig quiet "$KUBE_DIR/bin/kubectl" apply -f - <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: pod-identity-webhook}
webhooks:
- name: iam-for-pods.amazonaws.com
  clientConfig:
    url: https://127.0.0.1:$port/mutate
    caBundle: $(base64 -w0 "$d/ca.crt")
  rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}]
  failurePolicy: Ignore
  sideEffects: None
  admissionReviewVersions: [v1]
  reinvocationPolicy: IfNeeded
  timeoutSeconds: 10
YAML
}

# nftables_queue_works: whether this kernel has nftables' queue expression; else the error.
nftables_queue_works() {
  local t=vco-queue-probe-$$ out rc=0
  nft add table inet "$t" 2>/dev/null || { echo "nft cannot add a table"; return 1; }
  nft add chain inet "$t" c '{ type filter hook postrouting priority 0; }' 2>/dev/null
  out=$(nft add rule inet "$t" c queue num 100 bypass 2>&1) || rc=1
  nft delete table inet "$t" 2>/dev/null || true
  [ "$rc" = 0 ] || echo "nft add rule … queue: ${out%%;*}"
  return "$rc"
}

# node_policy API_URL: kube-network-policies with a ServiceAccount of its own (it reads pods,
# namespaces and NetworkPolicies), as its upstream DaemonSet runs it. Its command is the module's
# own, which knows only in-cluster configuration: it runs in a mount namespace of its own whose
# /run holds the token and CA at the in-cluster paths, and the host's /run is left alone.
node_policy() {
  local api=$1 n=$STATE/kube-network-policies metrics host port why
  mkdir -p "$n"
  # It hands each new flow to user space with nftables' `queue`; a kernel built without it
  # (nft_queue) makes every sync fail with ENOENT, so nothing would be enforced.
  if ! why=$(nftables_queue_works); then
    log "NetworkPolicies are NOT enforced on this node: the kernel has no nftables queue ($why)"
    echo "$why" >"$STATE/netpol-unsupported"
    return 0
  fi
  rm -f "$STATE/netpol-unsupported"
  KUBECONFIG=$STATE/kubeconfig quiet "$KUBE_DIR/bin/kubectl" apply -f - <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: kube-network-policies, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kube-network-policies}
rules:
- {apiGroups: [""], resources: [pods, namespaces, nodes], verbs: [list, watch]}
- {apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kube-network-policies}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kube-network-policies}
subjects: [{kind: ServiceAccount, name: kube-network-policies, namespace: kube-system}]
YAML
  KUBECONFIG=$STATE/kubeconfig "$KUBE_DIR/bin/kubectl" -n kube-system create token kube-network-policies \
    --duration 168h >"$n/token"
  cp "$STATE/pki/ca.crt" "$n/ca.crt"
  read -r metrics < <(free_ports 1)
  host=${api#https://}; port=${host##*:}; host=${host%:*}
  # shellcheck disable=SC2016 # expanded by that shell, from its arguments
  start kube-network-policies "$(command -v unshare)" --mount --propagation private -- /bin/sh -c '
    mount -t tmpfs -o size=1m,mode=0755 vco-netpol /run &&
    mkdir -p /run/secrets/kubernetes.io/serviceaccount &&
    cp "$1/token" "$1/ca.crt" /run/secrets/kubernetes.io/serviceaccount/ &&
    KUBERNETES_SERVICE_HOST=$2 KUBERNETES_SERVICE_PORT=$3 exec "$4" --hostname-override "$5" \
      --metrics-bind-address "127.0.0.1:$6" --v 2' \
    kube-network-policies "$n" "$host" "$port" "$NETPOL_DIR/bin/kube-network-policies" "$NODE_NAME" "$metrics"
  echo "http://127.0.0.1:$metrics" >"$STATE/kube-network-policies.url"
  wait_for "kube-network-policies" kube-network-policies 300 health kube-network-policies
}
