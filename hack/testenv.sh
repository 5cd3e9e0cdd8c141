#!/usr/bin/env bash
# The real test environment: a Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager) built from its Go modules and moto's SSM emulator, on loopback; with
# --node also a real node (kube-scheduler, containerd + runc, CNI bridge, kubelet, kube-proxy) on
# a bridge of its own. Also builds promtool and the
# hack/ecosystem checker for the tests. See the README ("The test environment").
#
#   hack/testenv.sh install     build/cache the binaries (once per machine, keyed by version)
#   hack/testenv.sh up [--node] start it; write target/testenv/{kubeconfig,env}
#   hack/testenv.sh down        stop exactly what `up` started, by pid, and remove its state
#   hack/testenv.sh status      say what is running and where
#   hack/testenv.sh restart|stop|start|pause|resume COMPONENT   fault injection for tests
set -euo pipefail

# ---- versions: pinned here and nowhere else ---------------------------------------------------
KUBE_VERSION=1.36.3      # k8s.io/kubernetes: kube-apiserver, kubectl, kube-controller-manager,
                         # kube-scheduler, kubelet, kube-proxy
PAUSE_VERSION=3.10.2     # the sandbox image, built from build/pause/linux/pause.c of that module
ETCD_VERSION=3.6.16      # go.etcd.io/etcd/server/v3
HELM_VERSION=3.19.5      # helm.sh/helm/v3
MOTO_VERSION=5.2.5       # moto[server] from PyPI
PROMETHEUS_VERSION=0.316.0  # github.com/prometheus/prometheus Go module (promtool; Prometheus v3.16.0)
# hack/ecosystem (kstatus and Argo CD health checker) pins its modules in its own go.mod; its cache
# is keyed by a hash of its source.
# containerd, runc, the CNI plugins, iptables and musl-tools are Debian 12 packages (containerd
# 1.6, runc 1.1, containernetworking-plugins 1.1), installed by hack/test.sh.
# ------------------------------------------------------------------------------------------------

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${VCO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-connection-operator/testenv}
STATE=${VCO_TESTENV_DIR:-$ROOT/target/testenv}
KUBE_DIR=$CACHE/kubernetes-v$KUBE_VERSION
ETCD_DIR=$CACHE/etcd-v$ETCD_VERSION
HELM_DIR=$CACHE/helm-v$HELM_VERSION
MOTO_DIR=$CACHE/moto-$MOTO_VERSION
PROMTOOL_DIR=$CACHE/promtool-v$PROMETHEUS_VERSION
ECO_SRC=$ROOT/hack/ecosystem
ECO_DIR=$CACHE/ecosystem-$(cat "$ECO_SRC"/go.mod "$ECO_SRC"/go.sum "$ECO_SRC"/*.go | sha256sum | cut -c1-12)
PAUSE_DIR=$CACHE/pause-$PAUSE_VERSION

# The node (up --node). Its network is host-wide, so only one node runs per host at a time; the
# lock names the state directory that owns it.
NODE_NAME=vco-testenv
BRIDGE=vco0
BRIDGE_IP=10.244.0.1          # the host on the pod bridge: API server, kubelet and moto listen here
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.0.0.0/24      # the `kubernetes` Service is 10.0.0.1:443
NODE_LOCK=/run/vco-testenv-node.owner
CGROUP_ROOT=vco-testenv       # every pod's cgroup lives under /<controller>/vco-testenv
NODE_COMPONENTS=(containerd kubelet kube-proxy kube-scheduler)
CONTROL_COMPONENTS=(etcd kube-apiserver kube-controller-manager moto)

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { printf '[testenv %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  cat >&2 <<USAGE
usage: hack/testenv.sh <install|up [--node]|down|status|path>
  install  build the Kubernetes v$KUBE_VERSION binaries, the pause binary, etcd v$ETCD_VERSION,
           helm v$HELM_VERSION, promtool (prometheus module v$PROMETHEUS_VERSION), the
           hack/ecosystem checker and a moto $MOTO_VERSION virtualenv into $CACHE (once per machine)
  path     print the PATH entries of the installed tools (for tests run without 'up')
  up       start etcd, kube-apiserver, kube-controller-manager and the moto SSM emulator on free
           loopback ports
  up --node (or VCO_TESTENV_NODE=1)
           also a node: bridge $BRIDGE ($BRIDGE_IP/24), containerd, kubelet, kube-proxy and
           kube-scheduler; the API server and moto then listen on $BRIDGE_IP. Needs root; one per host.
  down     stop what 'up' started and remove its state (and the node's bridge, iptables chains,
           mounts, network namespaces and cgroups)
  status   show what is running and where
  restart|stop|start|pause|resume COMPONENT
           fault injection for tests: same ports and data (pause = SIGSTOP, resume = SIGCONT).
           COMPONENT: ${CONTROL_COMPONENTS[*]} ${NODE_COMPONENTS[*]}
USAGE
}

# ---- install ------------------------------------------------------------------------------------

# quiet CMD...: run CMD with its output in a temporary log, shown only if it fails.
quiet() {
  local out rc=0
  out=$(mktemp)
  "$@" >"$out" 2>&1 || rc=$?
  if [ $rc -ne 0 ]; then tail -n 40 "$out" >&2; rm -f "$out"; die "failed ($rc): $*"; fi
  rm -f "$out"
}

# go_wrapper DIR: a throwaway module in DIR from which binaries of other modules are built.
go_wrapper() {
  mkdir -p "$1/bin"
  [ -f "$1/go.mod" ] || (cd "$1" && go mod init local/testenv >/dev/null 2>&1)
}

KUBE_COMMANDS=(kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)

install_kube() {
  local missing=() c
  for c in "${KUBE_COMMANDS[@]}"; do [ -x "$KUBE_DIR/bin/$c" ] || missing+=("$c"); done
  if [ ${#missing[@]} -eq 0 ]; then log "kubernetes v$KUBE_VERSION: cached"; return; fi
  log "kubernetes v$KUBE_VERSION (${missing[*]}): building from k8s.io/kubernetes (cold: ~15-25 min)"
  go_wrapper "$KUBE_DIR"
  (
    cd "$KUBE_DIR"
    local gomod minor pkgs=()
    gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [ -n "$gomod" ] || die "could not download k8s.io/kubernetes@v$KUBE_VERSION"
    minor=v0.${KUBE_VERSION#1.}
    # k8s.io/kubernetes requires its staging modules as v0.0.0 with `=> ./staging/...` replaces,
    # which do not apply outside its repository: point each at its published v0.X.Y instead.
    for m in $(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*|\1|p' "$gomod"); do
      go mod edit -replace="$m=$m@$minor"
    done
    log "  resolving modules"
    # Get the commands' packages (not just the module) so go.sum covers everything they import.
    for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c@v$KUBE_VERSION"); done
    quiet go get "${pkgs[@]}"
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
    for c in "${missing[@]}"; do
      local t=$SECONDS
      go build -trimpath -ldflags "$ldflags" -o "bin/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv "bin/$c.tmp" "bin/$c"
      log "  compiled $c ($((SECONDS - t))s)"
    done
  )
}

# The pod sandbox ("pause") image cannot be pulled here: compile pause.c from the kubernetes
# module (static, as upstream does) and pack it as a one-layer image archive for `ctr import`.
install_pause() {
  if [ -f "$PAUSE_DIR/pause.tar" ]; then log "pause $PAUSE_VERSION: cached"; return; fi
  command -v gcc >/dev/null || die "gcc is required to build the pause binary"
  log "pause $PAUSE_VERSION: compiling pause.c (static)"
  local src dir
  src=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -f "$src/build/pause/linux/pause.c" ] || die "pause.c not found in k8s.io/kubernetes@v$KUBE_VERSION"
  dir=$(mktemp -d)
  mkdir -p "$dir/rootfs" "$PAUSE_DIR"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-testenv" -o "$dir/rootfs/pause" "$src/build/pause/linux/pause.c"
  strip "$dir/rootfs/pause"
  (
    cd "$dir"
    tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C rootfs -cf layer.tar pause
    local diff_id config
    diff_id=sha256:$(sha256sum layer.tar | cut -d' ' -f1)
    printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["%s"]}}' "$diff_id" >config.json
    config=$(sha256sum config.json | cut -d' ' -f1).json
    mv config.json "$config"
    printf '[{"Config":"%s","RepoTags":["registry.k8s.io/pause:%s"],"Layers":["layer.tar"]}]' "$config" "$PAUSE_VERSION" >manifest.json
    tar -cf pause.tar manifest.json "$config" layer.tar
  )
  mv "$dir/pause.tar" "$PAUSE_DIR/pause.tar"
  rm -rf "$dir"
}

install_etcd() {
  if [ -x "$ETCD_DIR/bin/etcd" ]; then log "etcd v$ETCD_VERSION: cached"; return; fi
  log "etcd v$ETCD_VERSION: building from go.etcd.io/etcd/server/v3 (cold: ~2-4 min)"
  go_wrapper "$ETCD_DIR"
  (
    cd "$ETCD_DIR"
    quiet go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    go build -trimpath -ldflags "-s -w" -o bin/etcd.tmp go.etcd.io/etcd/server/v3
    mv bin/etcd.tmp bin/etcd
  )
}

install_helm() {
  if [ -x "$HELM_DIR/bin/helm" ]; then log "helm v$HELM_VERSION: cached"; return; fi
  log "helm v$HELM_VERSION: go install (cold: ~2-4 min)"
  mkdir -p "$HELM_DIR/bin"
  GOBIN="$HELM_DIR/bin.tmp" go install "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  mv "$HELM_DIR/bin.tmp/helm" "$HELM_DIR/bin/helm" && rmdir "$HELM_DIR/bin.tmp"
}

install_promtool() {
  if [ -x "$PROMTOOL_DIR/bin/promtool" ]; then log "promtool (prometheus v$PROMETHEUS_VERSION): cached"; return; fi
  log "promtool: building from github.com/prometheus/prometheus v$PROMETHEUS_VERSION (cold: ~5-10 min)"
  go_wrapper "$PROMTOOL_DIR"
  (
    cd "$PROMTOOL_DIR"
    # Built from a wrapper module: `go install pkg@version` refuses modules with exclude directives.
    quiet go get "github.com/prometheus/prometheus/cmd/promtool@v$PROMETHEUS_VERSION"
    # remove_all_sd: Prometheus' own build tag leaving out the cloud service-discovery plugins
    # (AWS, Azure, GCE, ...), which promtool's rule checks and tests do not use: a smaller build.
    go build -tags remove_all_sd -trimpath -ldflags "-s -w" -o bin/promtool.tmp github.com/prometheus/prometheus/cmd/promtool
    mv bin/promtool.tmp bin/promtool
  )
}

# The kstatus / Argo CD health checker from hack/ecosystem (its go.mod pins cli-utils and
# gopher-lua). Rebuilt whenever its source changes, since the cache key is a hash of it.
install_ecosystem() {
  if [ -x "$ECO_DIR/bin/vco-ecosystem" ]; then log "vco-ecosystem ($(basename "$ECO_DIR")): cached"; return; fi
  log "vco-ecosystem: building hack/ecosystem (cold: ~1-3 min, warm: seconds)"
  mkdir -p "$ECO_DIR/bin"
  (cd "$ECO_SRC" && go build -trimpath -ldflags "-s -w" -o "$ECO_DIR/bin/vco-ecosystem.tmp" .)
  mv "$ECO_DIR/bin/vco-ecosystem.tmp" "$ECO_DIR/bin/vco-ecosystem"
}

tool_path() { echo "$KUBE_DIR/bin:$ETCD_DIR/bin:$HELM_DIR/bin:$PROMTOOL_DIR/bin:$ECO_DIR/bin"; }

install_moto() {
  if [ -f "$MOTO_DIR/.complete" ]; then log "moto $MOTO_VERSION: cached"; return; fi
  log "moto[server] $MOTO_VERSION: creating virtualenv (cold: ~1 min)"
  rm -rf "$MOTO_DIR"
  python3 -m venv "$MOTO_DIR"
  "$MOTO_DIR/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  touch "$MOTO_DIR/.complete"   # a half-built venv from an interrupted run is rebuilt next time
}

cmd_install() {
  command -v go >/dev/null || die "go is required to build the control plane"
  command -v python3 >/dev/null || die "python3 is required for the SSM emulator"
  mkdir -p "$CACHE"
  local start=$SECONDS
  install_etcd
  install_kube
  install_pause
  install_helm
  install_promtool
  install_ecosystem
  install_moto
  log "install done in $((SECONDS - start))s; cache: $CACHE ($(du -sh "$CACHE" 2>/dev/null | cut -f1))"
}

# ---- up / down / status ---------------------------------------------------------------------------

# free_port [ADDRESS]: a port nothing listens on at ADDRESS (default loopback).
free_port() {
  python3 -c 'import socket, sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "${1:-127.0.0.1}"
}

# is_ours NAME: the pid recorded for NAME is alive and still runs the binary we started
# (guards against pid reuse after a crash or reboot).
is_ours() {
  local pidfile=$STATE/$1.pid pid exe
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile"); exe=$(cat "$STATE/$1.exe" 2>/dev/null || true)
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$exe"
}

# start NAME EXE ARGS...: start a process in its own session, logging to logs/NAME.log. The
# command line is kept so `restart NAME` can start it again on the same ports and data.
start() {
  local name=$1 exe=$2; shift 2
  printf '%s\0' "$exe" "$@" >"$STATE/$name.cmd"
  # No job control in scripts, so setsid does not fork and $! is the server's own pid.
  setsid "$exe" "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
  echo "$exe" >"$STATE/$name.exe"
}

stop() {
  local name=$1 pid i
  if is_ours "$name"; then
    pid=$(cat "$STATE/$name.pid")
    kill -CONT "$pid" 2>/dev/null || true   # a paused process cannot act on SIGTERM
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do is_ours "$name" || break; sleep 0.1; done
    if is_ours "$name"; then log "$name (pid $pid) ignored SIGTERM; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$STATE/$name.pid" "$STATE/$name.exe"
}

# health NAME: the readiness check of a running component.
health() {
  local d=$STATE/pki
  case "$1" in
    etcd) curl -fsS "$(cat "$STATE/etcd.url")/health" ;;
    kube-apiserver) curl -fsS --cacert "$d/ca.crt" --cert "$d/admin.crt" --key "$d/admin.key" "$(cat "$STATE/kube-apiserver.url")/readyz" ;;
    kube-controller-manager|kube-scheduler) curl -fsSk "$(cat "$STATE/$1.url")/healthz" ;;
    kubelet|kube-proxy) curl -fsS "$(cat "$STATE/$1.url")/healthz" ;;
    containerd) ctr --address "$STATE/containerd/containerd.sock" version ;;
    moto) curl -fsS "$(cat "$STATE/moto.url")/moto-api/" ;;
  esac
}

# For fault tests: restart one component on the same ports and data (moto's state is in memory,
# so restarting it resets it), or freeze/unfreeze it (an outage that keeps its state).
cmd_component() {
  local action=$1 name=${2:-}
  case " ${CONTROL_COMPONENTS[*]} ${NODE_COMPONENTS[*]} " in *" $name "*) ;; *) usage; exit 2 ;; esac
  [ -n "$name" ] || { usage; exit 2; }
  [ -f "$STATE/$name.cmd" ] || die "$name was not started by 'up' in $STATE"
  case "$action" in
    pause) is_ours "$name" && kill -STOP "$(cat "$STATE/$name.pid")"; log "paused $name" ;;
    resume) is_ours "$name" && kill -CONT "$(cat "$STATE/$name.pid")"; log "resumed $name" ;;
    stop) stop "$name" ;;
    start|restart)
      [ "$action" = restart ] && stop "$name"
      is_ours "$name" && { log "$name is already running"; return 0; }
      local args=()
      mapfile -d '' args <"$STATE/$name.cmd"
      start "$name" "${args[@]}"
      wait_for "$name" "$name" 600 health "$name"
      log "started $name again" ;;
  esac
}

# wait_for WHAT NAME TRIES CMD...: poll CMD every 0.2 s while the process NAME is alive.
wait_for() {
  local what=$1 name=$2 tries=$3 i; shift 3
  for i in $(seq 1 "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    is_ours "$name" || { tail -n 30 "$STATE/logs/$name.log" >&2; die "$name exited while waiting for $what (log: $STATE/logs/$name.log)"; }
    sleep 0.2
  done
  tail -n 30 "$STATE/logs/$name.log" >&2
  die "timed out waiting for $what (log: $STATE/logs/$name.log)"
}

# client_cert NAME SUBJECT: a client certificate and key signed by the test CA.
client_cert() {
  local d=$STATE/pki
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$2" \
    -keyout "$d/$1.key" -out "$d/$1.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >"$d/$1.ext"
  openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 7 \
    -extfile "$d/$1.ext" -out "$d/$1.crt" 2>/dev/null
  rm -f "$d/$1.csr" "$d/$1.ext" "$d/ca.srl"
}

make_certs() {
  local d=$STATE/pki
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=testenv-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,IP:%s,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' "$BRIDGE_IP" >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
      -extfile server.ext -out server.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext ca.srl
  )
  client_cert admin "/O=system:masters/CN=testenv-admin"
  # The API server's identity towards kubelets (logs, exec, port-forward).
  client_cert kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  client_cert kube-scheduler "/CN=system:kube-scheduler"
  # The node's identity: the Node authorizer and NodeRestriction confine it to its own objects.
  client_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  client_cert kube-proxy "/CN=system:kube-proxy"
}

# write_kubeconfig FILE SERVER IDENTITY: a kubeconfig for the client certificate IDENTITY.
write_kubeconfig() {
  local d=$STATE/pki
  cat >"$1" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: $2
    certificate-authority-data: $(base64 -w0 "$d/ca.crt")
users:
- name: testenv-$3
  user:
    client-certificate-data: $(base64 -w0 "$d/$3.crt")
    client-key-data: $(base64 -w0 "$d/$3.key")
contexts:
- name: testenv
  context: {cluster: testenv, user: testenv-$3}
current-context: testenv
KCFG
}

write_env() {
  local moto_url=$1
  cat >"$STATE/env.tmp" <<ENV
# Written by hack/testenv.sh up; source it to use the test environment.
export KUBECONFIG='$STATE/kubeconfig'
export AWS_ENDPOINT_URL_SSM='$moto_url'
export AWS_REGION='us-east-1'
export AWS_ACCESS_KEY_ID='testing'
export AWS_SECRET_ACCESS_KEY='testing'
export AWS_EC2_METADATA_DISABLED='true'
export VCO_TESTENV_BIN='$(tool_path)'
export VCO_TESTENV_PYTHON='$MOTO_DIR/bin/python'
export PATH="\$VCO_TESTENV_BIN:\$PATH"
ENV
  if [ -f "$STATE/node" ]; then
    cat >>"$STATE/env.tmp" <<ENV
# The node: its name and the containerd socket to import images into (namespace k8s.io).
export VCO_TESTENV_NODE_NAME='$NODE_NAME'
export VCO_TESTENV_CONTAINERD='$STATE/containerd/containerd.sock'
ENV
  fi
  mv "$STATE/env.tmp" "$STATE/env"
}

all_running() {
  local name
  for name in "${CONTROL_COMPONENTS[@]}"; do is_ours "$name" || return 1; done
  if [ -f "$STATE/node" ]; then
    for name in "${NODE_COMPONENTS[@]}"; do is_ours "$name" || return 1; done
  fi
}

# aggregated: kube-controller-manager has filled the built-in `admin` role by aggregation.
aggregated() {
  KUBECONFIG=$STATE/kubeconfig "$KUBE_DIR/bin/kubectl" get clusterrole admin -o jsonpath='{.rules[*].verbs}' | grep -q .
}

node_ready() {
  KUBECONFIG=$STATE/kubeconfig "$KUBE_DIR/bin/kubectl" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
}

# ---- the node ---------------------------------------------------------------------------------

# node_lock: claim the host's one node for this state directory, or say who holds it.
node_lock() {
  [ "$(id -u)" -eq 0 ] || die "--node needs root (bridge, iptables, mounts, cgroups)"
  local b
  for b in containerd runc ctr iptables ip6tables; do command -v "$b" >/dev/null || die "$b is missing: run hack/test.sh once, or apt-get install containerd runc iptables"; done
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || die "CNI plugins are missing: apt-get install containernetworking-plugins"
  [ -f "$PAUSE_DIR/pause.tar" ] || die "$PAUSE_DIR/pause.tar is missing: run 'hack/testenv.sh install' first"
  if [ -f "$NODE_LOCK" ]; then
    local owner; owner=$(cat "$NODE_LOCK")
    if [ "$owner" != "$STATE" ] && [ -d "$owner" ] && ls "$owner"/{containerd,kubelet,kube-proxy}.pid >/dev/null 2>&1; then
      die "the host's test node is in use by $owner (one per host: bridge and iptables are host-wide); stop it with VCO_TESTENV_DIR=$owner hack/testenv.sh down"
    fi
    log "taking over the node lock from $owner (not running)"
    # A crashed run's leftovers would break this one.
    node_cleanup
  fi
  echo "$STATE" >"$NODE_LOCK"
}

node_network() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  mkdir -p "$STATE/cni"
  # No default route in pods: they reach the bridge (API server, moto) and the Service range
  # (kube-proxy's DNAT to the API server), nothing the test environment did not make.
  cat >"$STATE/cni/10-vco-testenv.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "vco-testenv",
  "plugins": [{
    "type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false, "hairpinMode": true,
    "ipam": {
      "type": "host-local", "dataDir": "$STATE/cni-ipam",
      "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.244.0.10", "gateway": "$BRIDGE_IP"}]],
      "routes": [{"dst": "$SERVICE_CIDR", "gw": "$BRIDGE_IP"}]
    }
  }, {"type": "loopback"}]
}
CNI
}

node_containerd() {
  local c=$STATE/containerd
  mkdir -p "$c"
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
}

# node_cleanup: remove everything the node leaves on the host. Runs after its processes stopped.
node_cleanup() {
  local sock=$STATE/containerd/containerd.sock ipt table chain m ns
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
  # Mounts under the state directory (container rootfs, projected volumes, shm), deepest first.
  for m in $(findmnt -rn -o TARGET | grep -F "$STATE/" | sort -r); do umount -l "$m" 2>/dev/null || true; done
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
  rm -rf "$STATE/containerd" "$STATE/kubelet" "$STATE/kube-proxy" "$STATE/cni" "$STATE/cni-ipam" "$STATE/node"
  if [ -f "$NODE_LOCK" ] && [ "$(cat "$NODE_LOCK")" = "$STATE" ]; then rm -f "$NODE_LOCK"; fi
  : "$sock"
}

# node_down: stop the node's processes and every container, then clean the host.
node_down() {
  local sock=$STATE/containerd/containerd.sock id
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

cmd_up() {
  local node=${VCO_TESTENV_NODE:-0}
  case "${1:-}" in --node) node=1 ;; "") ;; *) usage; exit 2 ;; esac
  [ "$node" = 1 ] || node=0
  local b
  for b in "$ETCD_DIR/bin/etcd" "$MOTO_DIR/bin/moto_server" "$KUBE_DIR/bin/kube-apiserver" "$KUBE_DIR/bin/kube-controller-manager"; do
    [ -x "$b" ] || die "$b is missing: run 'hack/testenv.sh install' first"
  done
  if [ "$node" = 1 ]; then
    for b in kube-scheduler kubelet kube-proxy; do
      [ -x "$KUBE_DIR/bin/$b" ] || die "$KUBE_DIR/bin/$b is missing: run 'hack/testenv.sh install' first"
    done
  fi
  if [ -f "$STATE/env" ] && all_running && { [ "$node" = 0 ] || [ -f "$STATE/node" ]; }; then
    log "already running (see 'hack/testenv.sh status'); starting nothing"
    return 0
  fi
  if [ -d "$STATE" ] && ls "$STATE"/*.pid >/dev/null 2>&1; then
    log "found stale state from an earlier run; cleaning it up"
    cmd_down
  fi
  local start=$SECONDS etcd_port peer_port api_port moto_port kcm_port listen=127.0.0.1
  rm -rf "$STATE/pki" "$STATE/etcd" "$STATE/env" "$STATE/kubeconfig"
  mkdir -p "$STATE/logs"
  if [ "$node" = 1 ]; then
    node_lock
    touch "$STATE/node"
    node_network
    # Pods reach the API server (through the `kubernetes` Service) and moto on the bridge.
    listen=$BRIDGE_IP
  fi
  make_certs
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port "$listen"); moto_port=$(free_port "$listen")
  kcm_port=$(free_port)
  local api_url=https://$listen:$api_port

  start etcd "$ETCD_DIR/bin/etcd" --name testenv --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "testenv=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn
  start moto "$MOTO_DIR/bin/moto_server" -H "$listen" -p "$moto_port"
  echo "http://127.0.0.1:$etcd_port" >"$STATE/etcd.url"
  echo "$api_url" >"$STATE/kube-apiserver.url"
  echo "http://$listen:$moto_port" >"$STATE/moto.url"
  wait_for "etcd health" etcd 150 health etcd

  local d=$STATE/pki
  start kube-apiserver "$KUBE_DIR/bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "$listen" --advertise-address "$listen" --secure-port "$api_port" \
    --cert-dir "$d" --tls-cert-file "$d/server.crt" --tls-private-key-file "$d/server.key" \
    --client-ca-file "$d/ca.crt" --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --kubelet-client-certificate "$d/kubelet-client.crt" --kubelet-client-key "$d/kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$d/sa.pub" \
    --service-account-signing-key-file "$d/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=true
  write_kubeconfig "$STATE/kubeconfig" "$api_url" admin
  # The controller manager runs every controller under one identity of its own (no per-controller
  # ServiceAccount credentials), which needs more than system:kube-controller-manager may do.
  write_kubeconfig "$STATE/kube-controller-manager.kubeconfig" "$api_url" admin
  wait_for "kube-apiserver /readyz" kube-apiserver 600 health kube-apiserver

  # The controller manager fills the aggregated admin/edit/view roles, creates ServiceAccounts
  # and the kube-root-ca.crt ConfigMap, finishes namespace deletion and runs Deployments.
  local kc=$STATE/kube-controller-manager.kubeconfig
  start kube-controller-manager "$KUBE_DIR/bin/kube-controller-manager" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --cert-dir "$STATE/kube-controller-manager-pki" \
    --leader-elect=false --use-service-account-credentials=false \
    --service-account-private-key-file "$d/sa.key" --root-ca-file "$d/ca.crt" \
    --cluster-signing-cert-file "$d/ca.crt" --cluster-signing-key-file "$d/ca.key"
  echo "https://127.0.0.1:$kcm_port" >"$STATE/kube-controller-manager.url"

  if [ "$node" = 1 ]; then
    local sched_port kubelet_port proxy_port proxy_metrics
    sched_port=$(free_port); kubelet_port=$(free_port); proxy_port=$(free_port); proxy_metrics=$(free_port)
    write_kubeconfig "$STATE/kube-scheduler.kubeconfig" "$api_url" kube-scheduler
    local ks=$STATE/kube-scheduler.kubeconfig
    start kube-scheduler "$KUBE_DIR/bin/kube-scheduler" \
      --kubeconfig "$ks" --authentication-kubeconfig "$ks" --authorization-kubeconfig "$ks" \
      --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false
    echo "https://127.0.0.1:$sched_port" >"$STATE/kube-scheduler.url"
    node_containerd
    node_kubelet "$kubelet_port" "$api_url"
    node_proxy "$proxy_port" "$proxy_metrics" "$api_url"
  fi

  wait_for "moto" moto 150 health moto
  wait_for "kube-controller-manager to fill the admin role" kube-controller-manager 600 aggregated
  if [ "$node" = 1 ]; then
    wait_for "kube-scheduler" kube-scheduler 600 health kube-scheduler
    wait_for "kube-proxy" kube-proxy 600 health kube-proxy
    wait_for "node $NODE_NAME Ready" kubelet 900 node_ready
  fi
  write_env "http://$listen:$moto_port"
  log "up in $((SECONDS - start))s: kube-apiserver $api_url, etcd 127.0.0.1:$etcd_port, SSM http://$listen:$moto_port$([ "$node" = 1 ] && echo ", node $NODE_NAME Ready")"
  log "use it with: source $STATE/env"
}

cmd_down() {
  if [ -f "$STATE/node" ] || ls "$STATE"/{containerd,kubelet,kube-proxy}.pid >/dev/null 2>&1; then node_down; fi
  stop kube-scheduler
  stop kube-controller-manager
  stop kube-apiserver
  stop etcd
  stop moto
  # Keep logs/ for post-mortems; everything else is state of this run.
  rm -rf "$STATE/pki" "$STATE/etcd" "$STATE/env" "$STATE"/*.kubeconfig "$STATE/kubeconfig" \
    "$STATE"/*.cmd "$STATE"/*.url "$STATE/kube-controller-manager-pki"
  log "down"
}

cmd_status() {
  local rc=0 name names=("${CONTROL_COMPONENTS[@]}")
  [ -f "$STATE/node" ] && names+=("${NODE_COMPONENTS[@]}")
  for name in "${names[@]}"; do
    if is_ours "$name"; then
      printf '%-24s running  pid %s\n' "$name" "$(cat "$STATE/$name.pid")"
    else
      printf '%-24s stopped\n' "$name"; rc=1
    fi
  done
  if [ -f "$STATE/env" ]; then
    sed -n "s/^export \(KUBECONFIG\|AWS_ENDPOINT_URL_SSM\|VCO_TESTENV_NODE_NAME\)=/\1=/p" "$STATE/env"
    grep -o 'server: .*' "$STATE/kubeconfig" || true
  fi
  echo "logs: $STATE/logs/"
  return $rc
}

case "${1:-}" in
  install) cmd_install ;;
  up) cmd_up "${2:-}" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  path) tool_path ;;
  restart|start|stop|pause|resume) cmd_component "$1" "${2:-}" ;;
  *) usage; exit 2 ;;
esac
