#!/usr/bin/env bash
# Benchmarks the operator (docs/performance.md): create, rotate, restart, idle, noise, write
# rate, drift repair, delete, noisy neighbours and a fleet, on a private test environment in
# target/bench-env that is torn down at the end (also on failure). Writes
# target/bench/results.json and prints a Markdown table. The driver is the Python package
# hack/bench (one module per concern, one file per scenario under hack/bench/scenarios).
#
#   hack/bench.sh            default sizes (about 7 minutes on 2 cores, plus the release build,
#                            plus the fleet: half an hour or more at N=10,000, most of it N / 20 s
#                            reads while the fleet is created and again after its restart)
#   hack/bench.sh --quick    small sizes to check the harness (about 4 minutes)
#   hack/bench.sh --keep     leave the environment up afterwards (stop it with --down)
#   hack/bench.sh --down     stop an environment left with --keep
#
# Sizes come from environment variables (defaults in hack/bench/settings.py):
#   BENCH_N=1000 BENCH_WRITE_RATE=10 BENCH_ROTATIONS=50 BENCH_POLL_MS=20 BENCH_IDLE_SECONDS=120
#   BENCH_DRIFT_INTERVAL=60 BENCH_NOISE=10000 BENCH_NOISE_KIB=10 BENCH_RATE_N=150 BENCH_RATE=3
#   BENCH_DRIFT_N=20 BENCH_DRIFT_REPAIR_INTERVAL=20 BENCH_CONCURRENCY=4 BENCH_READ_RATE=20
#   BENCH_SCENARIOS=create,rotate,restart,idle,noise,rate,delete,drift,neighbours,fleet
#   (delete needs rate before it)
# The neighbours scenario: a noisy namespace (tier "noisy", limit SHARED) with SHARED served
# connections on one Secret, REFUSED more beyond the limit and an annotate loop on that Secret,
# and a quiet namespace rotating its Secrets meanwhile:
#   BENCH_NEIGHBOURS_REFUSED=5000 BENCH_NEIGHBOURS_SHARED=300 BENCH_NEIGHBOURS_ROTATIONS=50
#   BENCH_NEIGHBOURS_ANNOTATE_MS=100 BENCH_NEIGHBOURS_REST_SECONDS=30
# The fleet scenario (namespace bench-fleet, tier enterprise, unlimited): N connections created
# while the operator is stopped; then a restart, an idle window, memory against an operator with
# no connections, rotations on the idle fleet, and a forced relist (the API server stopped,
# etcd moved on behind it, watches answered 410 Gone), each judged against the fleet goals:
#   BENCH_FLEET_N=10000                connections
#   BENCH_FLEET_WRITE_RATE=200         VCO_SSM_WRITE_RATE of its operators (moto has no quota)
#   BENCH_FLEET_DRIFT_INTERVAL=60      VCO_DRIFT_CHECK_INTERVAL of its operators, in seconds
#   BENCH_FLEET_IDLE_INTERVALS=3       length of the idle window, in drift intervals
#   BENCH_FLEET_ROTATIONS=50           Secrets rotated one at a time on the idle fleet
#   BENCH_FLEET_TIMEOUT=0              longest wait for all Ready and for the restart to catch up,
#                                      in seconds (0: 3 x N / the lower of the read and write
#                                      rates, at least 600)
#   BENCH_BIN=PATH measures that binary instead of building target/release (e.g. the image's
#   static musl binary, target/image/context/vault-connection-operator)
# Flags combine: hack/bench.sh --quick --keep.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# A private environment: never the default target/testenv that tests and other people use.
export VCO_TESTENV_DIR="$ROOT/target/bench-env"
STATE=$VCO_TESTENV_DIR
KEEP=false

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Stops the operator the driver left behind (it normally stops its own), by recorded pid.
stop_operator() {
  [ -f "$STATE/operator.pid" ] || return 0
  local pid; pid=$(cat "$STATE/operator.pid")
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "${BENCH_BIN:-$ROOT/target/release/vault-connection-operator} run"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/operator.pid"
}

for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=true ;;
    --quick)
      : "${BENCH_N:=100}" "${BENCH_ROTATIONS:=10}" "${BENCH_IDLE_SECONDS:=30}" "${BENCH_DRIFT_INTERVAL:=15}"
      : "${BENCH_NOISE:=1000}" "${BENCH_RATE_N:=30}" "${BENCH_DRIFT_N:=10}"
      : "${BENCH_FLEET_N:=300}" "${BENCH_FLEET_DRIFT_INTERVAL:=15}" "${BENCH_FLEET_IDLE_INTERVALS:=2}"
      : "${BENCH_FLEET_ROTATIONS:=10}"
      : "${BENCH_NEIGHBOURS_REFUSED:=100}" "${BENCH_NEIGHBOURS_SHARED:=20}" "${BENCH_NEIGHBOURS_ROTATIONS:=10}"
      : "${BENCH_NEIGHBOURS_REST_SECONDS:=15}"
      export BENCH_N BENCH_ROTATIONS BENCH_IDLE_SECONDS BENCH_DRIFT_INTERVAL BENCH_NOISE BENCH_RATE_N BENCH_DRIFT_N
      export BENCH_FLEET_N BENCH_FLEET_DRIFT_INTERVAL BENCH_FLEET_IDLE_INTERVALS BENCH_FLEET_ROTATIONS
      export BENCH_NEIGHBOURS_REFUSED BENCH_NEIGHBOURS_SHARED BENCH_NEIGHBOURS_ROTATIONS BENCH_NEIGHBOURS_REST_SECONDS
      ;;
    --down) stop_operator; hack/testenv.sh down; exit 0 ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
  esac
done

hack/testenv.sh install --cluster
if [ "$KEEP" = false ]; then
  trap 'rc=$?; stop_operator; hack/testenv.sh down >/dev/null 2>&1 || true; exit $rc' EXIT
  trap 'exit 130' INT TERM
fi
stop_operator
# A fresh environment every run, so counters and objects start from zero.
hack/testenv.sh down >/dev/null 2>&1 || true
hack/testenv.sh up
# shellcheck disable=SC1091
source "$STATE/env"

if [ -z "${BENCH_BIN:-}" ]; then
  log "building the operator (release)"
  cargo build --release --bin vault-connection-operator
fi
kubectl apply --server-side -f crds/vaultconnections.yaml >/dev/null
kubectl wait --for condition=established --timeout=30s crd/vaultconnections.vaultconnections.io >/dev/null

mkdir -p target/bench
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$ROOT/hack" "$VCO_TESTENV_PYTHON" -m bench | tee target/bench/table.md
