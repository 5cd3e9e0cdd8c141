#!/usr/bin/env bash
# The main job, end to end, on this machine: a local control plane and SSM emulator, the CRD,
# the operator, every example applied and Ready, and the parameters it wrote (names and
# versions, never values). Tears everything down at the end unless --keep.
#
#   hack/demo.sh          run the demo and clean up
#   hack/demo.sh --keep   leave it running and print how to use it
#   hack/demo.sh --down   stop a demo left running with --keep
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export VCO_TESTENV_DIR="$ROOT/target/demo"
STATE=$VCO_TESTENV_DIR
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_operator() {
  if [ -f "$STATE/operator.pid" ]; then
    local pid; pid=$(cat "$STATE/operator.pid")
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "vault-connection-operator run"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$STATE/operator.pid"
  fi
}

case "${1:-}" in
  --down) stop_operator; hack/testenv.sh down; exit 0 ;;
  --keep) KEEP=true ;;
  "") KEEP=false ;;
  *) echo "usage: hack/demo.sh [--keep|--down]" >&2; exit 2 ;;
esac

say "Setting up (first run on a machine builds the control plane: several minutes)"
hack/testenv.sh install
if [ "$KEEP" = false ]; then trap 'stop_operator; hack/testenv.sh down >/dev/null 2>&1 || true' EXIT; fi
stop_operator
hack/testenv.sh up
# shellcheck disable=SC1091
source "$STATE/env"
cargo build --quiet --bin vault-connection-operator
BIN="$ROOT/target/debug/vault-connection-operator"

say "Installing the VaultConnection CRD"
kubectl apply --server-side -f crds/vaultconnections.yaml
kubectl wait --for condition=established --timeout=30s crd/vaultconnections.vaultconnections.io

say "Starting the operator"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
VCO_METRICS_ADDR="127.0.0.1:$port" VCO_LOG_FORMAT=text VCO_CLUSTER_NAME=demo \
  setsid "$BIN" run </dev/null >"$STATE/logs/operator.log" 2>&1 &
echo $! >"$STATE/operator.pid"
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$port/readyz"

say "Applying the examples into namespace team-a"
kubectl create namespace team-a --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -n team-a -f examples/

say "Waiting until every connection is Ready"
kubectl wait -n team-a --for=condition=Ready vaultconnection --all --timeout=60s

say "kubectl get vc -A"
kubectl get vc -A

say "Parameters in the SSM emulator (names and versions; values are never shown)"
"$VCO_TESTENV_PYTHON" - <<'PY'
import boto3, os
ssm = boto3.client("ssm", endpoint_url=os.environ["AWS_ENDPOINT_URL_SSM"], region_name="us-east-1")
for p in ssm.describe_parameters()["Parameters"]:
    print(f'{p["Name"]:55} {p["Type"]:13} version {p["Version"]:<3} {p.get("Tier", "")}')
PY

say "Logs"
echo "operator:        $STATE/logs/operator.log"
echo "control plane:   $STATE/logs/"
echo "metrics:         http://127.0.0.1:$port/metrics"

if [ "$KEEP" = true ]; then
  say "Left running. Try:"
  cat <<USE
  source $STATE/env
  kubectl get vc -A
  kubectl describe vc -n team-a doppler-production
  kubectl patch secret -n team-a doppler-credentials -p '{"stringData":{"token":"dp.st.prd.ROTATED"}}'
  hack/demo.sh --down      # stop it all
USE
fi
