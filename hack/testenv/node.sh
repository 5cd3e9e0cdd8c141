# The node of `up --node`: a bridge and CNI configuration of its own, containerd, the kubelet
# and kube-proxy (kube-scheduler is started with the control plane), and the clean-up of what
# they leave on the host. Sourced by hack/testenv.sh after lib.sh.
#
# Its network is host-wide, so only one node runs per host at a time; the lock names the state
# directory that owns it.
NODE_NAME=vco-testenv
BRIDGE=vco0
BRIDGE_IP=10.244.0.1          # the host on the pod bridge: API server, kubelet and moto listen here
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.0.0.0/24      # the `kubernetes` Service is 10.0.0.1:443
NODE_LOCK=/run/vco-testenv-node.owner
CGROUP_ROOT=vco-testenv       # every pod's cgroup lives under /<controller>/vco-testenv
# shellcheck source=hack/testenv/eks.sh
source "$ROOT/hack/testenv/eks.sh"   # the EKS stand-ins, the link-local services, the policy engine

# node_lock: claim the host's one node for this state directory, or say who holds it.
node_lock() {
  [ "$(id -u)" -eq 0 ] || die "--node needs root (bridge, iptables, mounts, cgroups)"
  local b
  for b in containerd runc ctr iptables ip6tables; do command -v "$b" >/dev/null || die "$b is missing: run 'hack/testenv.sh install' first"; done
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || die "CNI plugins are missing: run 'hack/testenv.sh install' first"
  [ -f "$PAUSE_DIR/pause.tar" ] || die "$PAUSE_DIR/pause.tar is missing: run 'hack/testenv.sh install' first"
  if [ -f "$NODE_LOCK" ]; then
    local owner; owner=$(cat "$NODE_LOCK")
    if [ "$owner" != "$STATE" ] && (STATE=$owner; is_ours containerd || is_ours kubelet || is_ours kube-proxy); then
      die "the host's test node is in use by $owner (one per host: bridge and iptables are host-wide); stop it with VCO_TESTENV_DIR=$owner hack/testenv.sh down"
    fi
    log "taking over the node lock from $owner (not running)"
    # A crashed run's leftovers would break this one: its processes, then what they left.
    kill_leftovers "$owner"
    node_cleanup "$owner"
  fi
  echo "$STATE" >"$NODE_LOCK"
}

node_network() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  linklocal_cleanup
  linklocal_network
  mkdir -p "$STATE/cni"
  # No default route in pods: they reach the bridge (API server, moto), the Service range
  # (kube-proxy's DNAT to the API server) and the node's link-local services (the Pod Identity
  # agent, IMDS: eks.sh), nothing the test environment did not make.
  cat >"$STATE/cni/10-vco-testenv.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "vco-testenv",
  "plugins": [{
    "type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false, "hairpinMode": true,
    "ipam": {
      "type": "host-local", "dataDir": "$STATE/cni-ipam",
      "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.244.0.10", "gateway": "$BRIDGE_IP"}]],
      "routes": [{"dst": "$SERVICE_CIDR", "gw": "$BRIDGE_IP"},
                 {"dst": "$POD_IDENTITY_IP/32", "gw": "$BRIDGE_IP"}, {"dst": "$IMDS_IP/32", "gw": "$BRIDGE_IP"}]
    }
  }, {"type": "loopback"}]
}
CNI
}

node_containerd() {
  local c=$STATE/containerd
  mkdir -p "$c" "$c/certs.d"
  cat >"$c/config.toml" <<TOML
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:$PAUSE_VERSION"
  # root here lacks CAP_SYS_RESOURCE: without this runc cannot lower oom_score_adj and every
  # sandbox fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_selinux = false
  # Registry hosts, one directory per host (HOST:PORT/hosts.toml), read at every pull: empty
  # here (the images are imported); tests/release_registry.rs adds its loopback registry.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$c/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$c/runc"
TOML
  start containerd "$(command -v containerd)" --config "$c/config.toml"
  wait_for "containerd" containerd 150 health containerd
  ctr --address "$c/containerd.sock" -n k8s.io images import "$PAUSE_DIR/pause.tar" >/dev/null
}

node_kubelet() {
  local k=$STATE/kubelet healthz_port=$1 api=$2 d=$STATE/pki ctl
  mkdir -p "$k"
  write_kubeconfig "$k/kubeconfig" "$api" kubelet
  # Every cgroup controller gets the root the kubelet puts pods under (cgroup v1, cgroupfs).
  for ctl in /sys/fs/cgroup/*/; do mkdir -p "$ctl$CGROUP_ROOT"; done
  cat >"$k/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $d/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$STATE/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
failCgroupV1: false
failSwapOn: false
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# A shared, busy build host whose disk other builds may fill for a moment: no eviction (0%
# disables a threshold), else the kubelet reclaims space by deleting "unused" images — the
# imported pause and operator images, which no registry can give back.
evictionHard: {memory.available: "0%", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%", imagefs.inodesFree: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusReportFrequency: 10s
syncFrequency: 10s
YAML
  start kubelet "$KUBE_DIR/bin/kubelet" --config "$k/config.yaml" --kubeconfig "$k/kubeconfig" \
    --root-dir "$k" --cert-dir "$k/pki" --hostname-override "$NODE_NAME" --node-ip "$BRIDGE_IP" -v 1
  echo "http://127.0.0.1:$healthz_port" >"$STATE/kubelet.url"
}

node_proxy() {
  local p=$STATE/kube-proxy healthz_port=$1 metrics_port=$2 api=$3
  mkdir -p "$p"
  write_kubeconfig "$p/kubeconfig" "$api" kube-proxy
  cat >"$p/config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $p/kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$healthz_port
metricsBindAddress: 127.0.0.1:$metrics_port
# Node ports on the bridge only; no localhost node ports (they need route_localnet).
nodePortAddresses: ["$POD_CIDR"]
iptables: {localhostNodePorts: false}
# 0: leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  start kube-proxy "$KUBE_DIR/bin/kube-proxy" --config "$p/config.yaml"
  echo "http://127.0.0.1:$healthz_port" >"$STATE/kube-proxy.url"
  # The node's last parts, started with the proxy (cmd_up starts the node through these
  # functions): the NetworkPolicy engine and the EKS stand-ins (eks.sh).
  node_policy "$api"
  node_eks "$api"
}

# node_cleanup [DIR]: remove everything the node of state directory DIR (default: this one)
# leaves on the host. Runs after its processes stopped.
node_cleanup() {
  local dir=${1:-$STATE} ipt table chain m ns
  # iptables chains of kube-proxy (its own --cleanup) and of the kubelet.
  [ -x "$KUBE_DIR/bin/kube-proxy" ] && "$KUBE_DIR/bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle; do
      # First the rules that jump into KUBE-* chains, then the chains themselves.
      "$ipt" -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z-]+ .*-j KUBE-' | sed 's/^-A/-D/' |
        while read -r rule; do eval "$ipt -t $table $rule" 2>/dev/null || true; done || true
      for chain in $("$ipt" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[A-Z0-9-]*\)$/\1/p'); do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[A-Z0-9-]*\)$/\1/p'); do
        "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
  linklocal_cleanup
  # Mounts under the state directory (container rootfs, projected volumes, shm), deepest first.
  for m in $(findmnt -rn -o TARGET | grep -F "$dir/" | sort -r); do umount -l "$m" 2>/dev/null || true; done
  # Pod network namespaces (containerd 1.6 keeps them in /var/run/netns as cni-<uuid>).
  for ns in /var/run/netns/cni-*; do
    [ -e "$ns" ] || continue
    umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  rmdir /var/run/netns 2>/dev/null || true
  rm -f /var/lib/cni/results/vco-testenv-* 2>/dev/null || true
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  # The kubelet's cgroups, deepest first (empty once every container is gone).
  find /sys/fs/cgroup/*/"$CGROUP_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null || true
  # Paths the kubelet and containerd shims use whatever their configuration says.
  rm -rf /var/log/pods /var/log/containers /var/lib/kubelet
  rmdir /run/containerd/s /run/containerd 2>/dev/null || true
  rm -rf "$dir/containerd" "$dir/kubelet" "$dir/kube-proxy" "$dir/cni" "$dir/cni-ipam" "$dir/node" \
    "$dir/eks" "$dir/kube-network-policies" "$dir/netpol-unsupported"
  if [ -f "$NODE_LOCK" ] && [ "$(cat "$NODE_LOCK")" = "$dir" ]; then rm -f "$NODE_LOCK"; fi
}

# node_down: stop the node's processes and every container, then clean the host.
node_down() {
  local sock=$STATE/containerd/containerd.sock id
  stop eks-agent
  stop eks-webhook
  stop kube-network-policies
  stop kube-proxy
  stop kubelet
  stop kube-scheduler
  if is_ours containerd; then
    kill -CONT "$(cat "$STATE/containerd.pid")" 2>/dev/null || true
    # Containers outlive containerd (their shims keep them): remove every task first.
    for id in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks rm -f "$id" >/dev/null 2>&1 || true
    done
  fi
  stop containerd
  node_cleanup
}
