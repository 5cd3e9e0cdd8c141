#!/usr/bin/env bash
# The real test environment: kube-apiserver + etcd built from their Go modules, and moto's SSM
# emulator, all on loopback. See the README ("The test environment").
#
#   hack/testenv.sh install   build/cache the binaries (once per machine, keyed by version)
#   hack/testenv.sh up        start etcd, kube-apiserver and moto; write target/testenv/{kubeconfig,env}
#   hack/testenv.sh down      stop exactly what `up` started, by pid, and remove the state
#   hack/testenv.sh status    say what is running and where
#   hack/testenv.sh restart|stop|start|pause|resume COMPONENT   fault injection for tests
set -euo pipefail

# ---- versions: pinned here and nowhere else ---------------------------------------------------
KUBE_VERSION=1.36.3      # k8s.io/kubernetes (kube-apiserver, kubectl)
ETCD_VERSION=3.6.16      # go.etcd.io/etcd/server/v3
HELM_VERSION=3.19.5      # helm.sh/helm/v3
MOTO_VERSION=5.2.5       # moto[server] from PyPI
PROMETHEUS_VERSION=0.316.0  # github.com/prometheus/prometheus Go module (promtool; Prometheus v3.16.0)
# hack/ecosystem (kstatus and Argo CD health checker) pins its modules in its own go.mod; its cache
# is keyed by a hash of its source.
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

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { printf '[testenv %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  cat >&2 <<USAGE
usage: hack/testenv.sh <install|up|down|status|path>
  install  build kube-apiserver v$KUBE_VERSION, kubectl, etcd v$ETCD_VERSION, helm v$HELM_VERSION,
           promtool (prometheus module v$PROMETHEUS_VERSION), the hack/ecosystem checker and a
           moto $MOTO_VERSION virtualenv into $CACHE (once per machine)
  path     print the PATH entries of the installed tools (for tests run without 'up')
  up       start etcd, kube-apiserver and the moto SSM emulator on free loopback ports
  down     stop what 'up' started and remove its state
  status   show what is running and where
  restart|stop|start|pause|resume etcd|kube-apiserver|moto
           fault injection for tests: same ports and data (pause = SIGSTOP, resume = SIGCONT)
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

install_kube() {
  if [ -x "$KUBE_DIR/bin/kube-apiserver" ] && [ -x "$KUBE_DIR/bin/kubectl" ]; then
    log "kube-apiserver v$KUBE_VERSION: cached"; return
  fi
  log "kube-apiserver + kubectl v$KUBE_VERSION: building from k8s.io/kubernetes (cold: ~10-20 min)"
  go_wrapper "$KUBE_DIR"
  (
    cd "$KUBE_DIR"
    local gomod minor
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
    quiet go get "k8s.io/kubernetes/cmd/kube-apiserver@v$KUBE_VERSION" "k8s.io/kubernetes/cmd/kubectl@v$KUBE_VERSION"
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
    log "  compiling kube-apiserver"
    go build -trimpath -ldflags "$ldflags" -o bin/kube-apiserver.tmp k8s.io/kubernetes/cmd/kube-apiserver
    log "  compiling kubectl"
    go build -trimpath -ldflags "$ldflags" -o bin/kubectl.tmp k8s.io/kubernetes/cmd/kubectl
    mv bin/kube-apiserver.tmp bin/kube-apiserver
    mv bin/kubectl.tmp bin/kubectl
  )
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
  install_helm
  install_promtool
  install_ecosystem
  install_moto
  log "install done in $((SECONDS - start))s; cache: $CACHE ($(du -sh "$CACHE" 2>/dev/null | cut -f1))"
}

# ---- up / down / status ---------------------------------------------------------------------------

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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
    moto) curl -fsS "$(cat "$STATE/moto.url")/moto-api/" ;;
  esac
}

# For fault tests: restart one component on the same ports and data (moto's state is in memory,
# so restarting it resets it), or freeze/unfreeze it (an outage that keeps its state).
cmd_component() {
  local action=$1 name=${2:-}
  case "$name" in etcd|kube-apiserver|moto) ;; *) usage; exit 2 ;; esac
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

make_certs() {
  local d=$STATE/pki
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=testenv-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
      -extfile server.ext -out server.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=testenv-admin" \
      -keyout admin.key -out admin.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
      -extfile admin.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext ca.srl
  )
}

write_kubeconfig() {
  local port=$1 d=$STATE/pki
  cat >"$STATE/kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$d/ca.crt")
users:
- name: testenv-admin
  user:
    client-certificate-data: $(base64 -w0 "$d/admin.crt")
    client-key-data: $(base64 -w0 "$d/admin.key")
contexts:
- name: testenv
  context: {cluster: testenv, user: testenv-admin}
current-context: testenv
KCFG
}

write_env() {
  local moto_port=$1
  cat >"$STATE/env.tmp" <<ENV
# Written by hack/testenv.sh up; source it to use the test environment.
export KUBECONFIG='$STATE/kubeconfig'
export AWS_ENDPOINT_URL_SSM='http://127.0.0.1:$moto_port'
export AWS_REGION='us-east-1'
export AWS_ACCESS_KEY_ID='testing'
export AWS_SECRET_ACCESS_KEY='testing'
export AWS_EC2_METADATA_DISABLED='true'
export VCO_TESTENV_BIN='$(tool_path)'
export VCO_TESTENV_PYTHON='$MOTO_DIR/bin/python'
export PATH="\$VCO_TESTENV_BIN:\$PATH"
ENV
  mv "$STATE/env.tmp" "$STATE/env"
}

all_running() { is_ours etcd && is_ours kube-apiserver && is_ours moto; }

cmd_up() {
  for b in "$ETCD_DIR/bin/etcd" "$KUBE_DIR/bin/kube-apiserver" "$MOTO_DIR/bin/moto_server"; do
    [ -x "$b" ] || die "$b is missing: run 'hack/testenv.sh install' first"
  done
  if [ -f "$STATE/env" ] && all_running; then
    log "already running (see 'hack/testenv.sh status'); starting nothing"
    return 0
  fi
  if [ -d "$STATE" ] && ls "$STATE"/*.pid >/dev/null 2>&1; then
    log "found stale state from an earlier run; cleaning it up"
    cmd_down
  fi
  local start=$SECONDS etcd_port peer_port api_port moto_port
  rm -rf "$STATE/pki" "$STATE/etcd" "$STATE/env" "$STATE/kubeconfig"
  mkdir -p "$STATE/logs"
  make_certs
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port); moto_port=$(free_port)

  start etcd "$ETCD_DIR/bin/etcd" --name testenv --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "testenv=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn
  start moto "$MOTO_DIR/bin/moto_server" -H 127.0.0.1 -p "$moto_port"
  echo "http://127.0.0.1:$etcd_port" >"$STATE/etcd.url"
  echo "https://127.0.0.1:$api_port" >"$STATE/kube-apiserver.url"
  echo "http://127.0.0.1:$moto_port" >"$STATE/moto.url"
  wait_for "etcd health" etcd 150 health etcd

  local d=$STATE/pki
  start kube-apiserver "$KUBE_DIR/bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$d" --tls-cert-file "$d/server.crt" --tls-private-key-file "$d/server.key" \
    --client-ca-file "$d/ca.crt" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$d/sa.pub" \
    --service-account-signing-key-file "$d/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
    --disable-admission-plugins ServiceAccount
  write_kubeconfig "$api_port"
  wait_for "kube-apiserver /readyz" kube-apiserver 600 health kube-apiserver
  wait_for "moto" moto 150 health moto
  write_env "$moto_port"
  log "up in $((SECONDS - start))s: kube-apiserver https://127.0.0.1:$api_port, etcd 127.0.0.1:$etcd_port, SSM http://127.0.0.1:$moto_port"
  log "use it with: source $STATE/env"
}

cmd_down() {
  stop kube-apiserver
  stop etcd
  stop moto
  # Keep logs/ for post-mortems; everything else is state of this run.
  rm -rf "$STATE/pki" "$STATE/etcd" "$STATE/env" "$STATE/kubeconfig" "$STATE"/*.cmd "$STATE"/*.url
  log "down"
}

cmd_status() {
  local rc=0 name
  for name in etcd kube-apiserver moto; do
    if is_ours "$name"; then
      printf '%-15s running  pid %s\n' "$name" "$(cat "$STATE/$name.pid")"
    else
      printf '%-15s stopped\n' "$name"; rc=1
    fi
  done
  if [ -f "$STATE/env" ]; then
    sed -n "s/^export \(KUBECONFIG\|AWS_ENDPOINT_URL_SSM\)=/\1=/p" "$STATE/env"
    grep -o 'server: .*' "$STATE/kubeconfig" || true
  fi
  echo "logs: $STATE/logs/"
  return $rc
}

case "${1:-}" in
  install) cmd_install ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  path) tool_path ;;
  restart|start|stop|pause|resume) cmd_component "$1" "${2:-}" ;;
  *) usage; exit 2 ;;
esac
