# The test environment's common parts, sourced by hack/testenv.sh (and hack/demo.sh): versions,
# where things live, logging, and the processes it starts — how they are started, recognised,
# waited for and stopped.

# ---- versions: pinned here and nowhere else ---------------------------------------------------
KUBE_VERSION=1.36.3      # k8s.io/kubernetes: kube-apiserver, kubectl, kube-controller-manager,
                         # kube-scheduler, kubelet, kube-proxy
KUBE_FLOOR_VERSION=1.33.13  # the oldest Kubernetes the operator supports (EKS extended support):
                         # its kube-apiserver, for `up --floor`
PAUSE_VERSION=3.10.2     # the sandbox image, built from build/pause/linux/pause.c of that module
ETCD_VERSION=3.6.16      # go.etcd.io/etcd/server/v3
HELM_VERSION=3.19.5      # helm.sh/helm/v3
MOTO_VERSION=5.2.5       # moto[server] from PyPI
PROMETHEUS_VERSION=0.316.0  # github.com/prometheus/prometheus Go module (promtool; Prometheus v3.16.0)
NETPOL_VERSION=0.8.0     # sigs.k8s.io/kube-network-policies: SIG Network's NetworkPolicy enforcer
                         # (nftables + NFQUEUE), the node's policy engine (up --node)
# The EKS stand-ins (hack/testenv/eks.py: the pod identity webhook and the Pod Identity agent) are
# Python standard library only, run with moto's interpreter; nothing to pin.
# hack/ecosystem (kstatus and Argo CD health checker) pins its modules in its own go.mod; its cache
# is keyed by a hash of its source.
# containerd, runc, the CNI plugins, iptables, musl-tools and docker.io are Debian 12 packages
# (containerd 1.6, runc 1.1, containernetworking-plugins 1.1), installed by `install`.
# The release and the supply-chain checks (hack/release.sh, hack/deny.sh; hack/release/tools.sh):
RUST_RELEASE_VERSION=1.95.0     # the toolchain release binaries are built with: a reproducible
                                # build needs one compiler, not whatever `stable` is today
CARGO_AUDITABLE_VERSION=0.7.7   # crates.io: embeds the dependency list in the binary
CARGO_CYCLONEDX_VERSION=0.5.9   # crates.io: the CycloneDX SBOM
CARGO_DENY_VERSION=0.20.2       # crates.io: advisories, licenses, bans, sources
CARGO_ZIGBUILD_VERSION=0.24.1   # crates.io: builds the arm64 binary with zig as C compiler and linker
ZIG_VERSION=0.17.0              # ziglang from PyPI: a C cross compiler with musl's own headers
COSIGN_VERSION=3.1.3            # github.com/sigstore/cosign/v3: signatures and attestations
ORAS_VERSION=1.3.6              # oras.land/oras: copies the OCI layout, signatures included
                                # (OCI referrers), to and from a registry
REGISTRY_VERSION=3.1.2          # github.com/distribution/distribution/v3: the loopback registry
                                # cosign signs in (it signs only what a registry holds)
# hack/oci (the image builder, go-containerregistry) pins its module in its own go.mod and is
# cached per hash of its source, like hack/ecosystem. The minimum Rust version is Cargo.toml's
# rust-version, read from there. The advisory database is the snapshot in hack/advisory-db/.
# qemu-user-static (runs the arm64 binary here) is a Debian package.
# ------------------------------------------------------------------------------------------------

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${VCO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-connection-operator/testenv}
STATE=${VCO_TESTENV_DIR:-$ROOT/target/testenv}
KUBE_DIR=$CACHE/kubernetes-v$KUBE_VERSION
KUBE_FLOOR_DIR=$CACHE/kubernetes-v$KUBE_FLOOR_VERSION
ETCD_DIR=$CACHE/etcd-v$ETCD_VERSION
HELM_DIR=$CACHE/helm-v$HELM_VERSION
MOTO_DIR=$CACHE/moto-$MOTO_VERSION
PROMTOOL_DIR=$CACHE/promtool-v$PROMETHEUS_VERSION
ECO_SRC=$ROOT/hack/ecosystem
ECO_DIR=$CACHE/ecosystem-$(cat "$ECO_SRC"/go.mod "$ECO_SRC"/go.sum "$ECO_SRC"/*.go | sha256sum | cut -c1-12)
PAUSE_DIR=$CACHE/pause-$PAUSE_VERSION
NETPOL_DIR=$CACHE/kube-network-policies-v$NETPOL_VERSION

CONTROL_COMPONENTS=(etcd kube-apiserver kube-controller-manager moto)
NODE_COMPONENTS=(containerd kubelet kube-proxy kube-scheduler kube-network-policies eks-webhook eks-agent)

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { printf '[testenv %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# quiet CMD...: run CMD with its output in a temporary log, shown only if it fails.
quiet() {
  local out rc=0
  out=$(mktemp)
  "$@" >"$out" 2>&1 || rc=$?
  if [ $rc -ne 0 ]; then tail -n 40 "$out" >&2; rm -f "$out"; die "failed ($rc): $*"; fi
  rm -f "$out"
}

tool_path() { echo "$KUBE_DIR/bin:$ETCD_DIR/bin:$HELM_DIR/bin:$PROMTOOL_DIR/bin:$ECO_DIR/bin"; }

# free_ports N [ADDRESS]: N distinct ports nothing listens on at ADDRESS (default loopback), on
# one line. (Each socket is held until all are chosen, so no two are the same.)
free_ports() {
  python3 -c '
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind((sys.argv[2], 0))
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1" "${2:-127.0.0.1}"
}

# ---- processes ------------------------------------------------------------------------------------
# A process is known by its pid and its start time (field 22 of /proc/PID/stat, clock ticks since
# boot). Together they name one process for the life of the machine: a pid reused after a crash
# or reboot has another start time. The start time is set at fork and kept across exec, so the
# process is recognised from the moment it is started, before and after it execs its program.
# (Recognising it by its command line, as this script once did, misjudges a process between fork
# and exec, when /proc/PID/cmdline still shows the script that forked it, or nothing at all.)

# proc_stat PID: "STATE STARTTIME" of a live process (STATE Z: a zombie, dead).
proc_stat() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$stat" ] || return 1
  stat=${stat##*) } # the command name may hold spaces and parentheses; fields follow its ')'
  # shellcheck disable=SC2086 # the fields are split on purpose
  set -- $stat
  echo "$1 ${20}"
}

# is_ours NAME: the process recorded for NAME is the one we started, and alive.
is_ours() {
  local pid want stat
  pid=$(cat "$STATE/$1.pid" 2>/dev/null) && [ -n "$pid" ] || return 1
  want=$(cat "$STATE/$1.start" 2>/dev/null) && [ -n "$want" ] || return 1
  stat=$(proc_stat "$pid") || return 1
  [ "${stat#* }" = "$want" ] && [ "${stat%% *}" != Z ]
}

# start NAME EXE ARGS...: start a process in its own session, logging to logs/NAME.log. The
# command line is kept so `restart NAME` can start it again on the same ports and data.
start() {
  local name=$1 exe=$2 pid stat; shift 2
  printf '%s\0' "$exe" "$@" >"$STATE/$name.cmd"
  # No job control in scripts, so setsid does not fork and $! is the server's own pid.
  VCO_TESTENV_OWNER=$STATE setsid "$exe" "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 &
  pid=$!
  # Recorded before anyone asks: a process that is already gone has no start time, and then
  # is_ours says so.
  stat=$(proc_stat "$pid") || stat="gone -"
  echo "${stat#* }" >"$STATE/$name.start"
  echo "$pid" >"$STATE/$name.pid"
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
  rm -f "$STATE/$name.pid" "$STATE/$name.start"
}

# kill_leftovers DIR: kill every process an earlier run in state directory DIR left running
# after its records were lost (a killed script, a removed target/). `start` marks each process
# it starts with VCO_TESTENV_OWNER=DIR in its environment, which its children inherit.
kill_leftovers() {
  local mark="VCO_TESTENV_OWNER=$1" pid environ found=() alive
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    [ "$pid" = $$ ] && continue
    # Read whole, then matched: a `tr | grep -q` pipeline fails under pipefail when grep stops
    # reading early.
    environ=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ") || continue
    case $'\n'"$environ"$'\n' in *$'\n'"$mark"$'\n'*) found+=("$pid") ;; esac
  done
  [ ${#found[@]} -gt 0 ] || return 0
  log "stopping ${#found[@]} process(es) an earlier run in $1 left behind: ${found[*]}"
  kill -CONT "${found[@]}" 2>/dev/null || true
  kill -TERM "${found[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${found[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "${found[@]}" 2>/dev/null || true
}

# health NAME: the readiness check of a running component.
health() {
  local d=$STATE/pki
  case "$1" in
    etcd) curl -fsS --max-time 5 "$(cat "$STATE/etcd.url")/health" ;;
    kube-apiserver) curl -fsS --max-time 5 --cacert "$d/ca.crt" --cert "$d/admin.crt" --key "$d/admin.key" "$(cat "$STATE/kube-apiserver.url")/readyz" ;;
    kube-controller-manager|kube-scheduler) curl -fsSk --max-time 5 "$(cat "$STATE/$1.url")/healthz" ;;
    kubelet|kube-proxy) curl -fsS --max-time 5 "$(cat "$STATE/$1.url")/healthz" ;;
    containerd) ctr --address "$STATE/containerd/containerd.sock" version ;;
    moto) curl -fsS --max-time 5 "$(cat "$STATE/moto.url")/moto-api/" ;;
    kube-network-policies) curl -fsS --max-time 5 "$(cat "$STATE/$1.url")/metrics" ;;
    eks-webhook) curl -fsS --max-time 5 --cacert "$d/ca.crt" "$(cat "$STATE/$1.url")/healthz" ;;
    # Any HTTP answer (404 here) from inside the link-local namespace, where it listens.
    eks-agent) ip netns exec vco-linklocal curl -sS -o /dev/null --max-time 5 http://169.254.170.23/ ;;
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
