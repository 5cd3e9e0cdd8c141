#!/usr/bin/env bash
# The main job, end to end, on this machine: a local cluster with a real node and an SSM
# emulator, the operator image built here and installed with Helm (two replicas, leader
# election), every example applied and Ready, and the parameters it wrote (names and versions,
# never values). Tears everything down at the end unless --keep.
#
#   hack/demo.sh          run the demo and clean up
#   hack/demo.sh --keep   leave it running and print how to use it
#   hack/demo.sh --down   stop a demo left running with --keep
#   hack/demo.sh --host   the same without a node: the operator runs as a host process (built
#                         with cargo), for development; combine with --keep
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export VCO_TESTENV_DIR="$ROOT/target/demo"
RELEASE=vault-connection-operator
RELEASE_NS=vault-connection-operator
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# The test environment's process records (start, stop, is_ours) also keep the --host operator.
# shellcheck source=hack/testenv/lib.sh
source "$ROOT/hack/testenv/lib.sh"

KEEP=false HOST=false
for arg in "$@"; do
  case "$arg" in
    --down) stop operator; hack/testenv.sh down; exit 0 ;;
    --keep) KEEP=true ;;
    --host) HOST=true ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
  esac
done

say "Setting up (the first run on a machine installs packages and builds the cluster and the image: ~26 minutes on 2 cores)"
# The same set-up step as hack/test.sh, limited to what the demo uses: the Debian packages and
# the cluster's binaries (hack/image.sh adds its own Rust target).
hack/testenv.sh install --cluster
# Also after a failure, so the next run starts clean (`up` itself stops what an earlier run left).
if [ "$KEEP" = false ]; then trap 'stop operator; hack/testenv.sh down >/dev/null 2>&1 || true' EXIT
else trap 'rc=$?; if [ $rc -ne 0 ]; then stop operator; hack/testenv.sh down >/dev/null 2>&1 || true; fi' EXIT; fi
mkdir -p "$STATE/logs"
stop operator
if [ "$HOST" = true ]; then hack/testenv.sh up; else hack/testenv.sh up --node; fi
# shellcheck disable=SC1091
source "$STATE/env"

if [ "$HOST" = true ]; then
  say "Installing the VaultConnection CRD"
  kubectl apply --server-side -f crds/vaultconnections.yaml
  kubectl wait --for condition=established --timeout=30s crd/vaultconnections.vaultconnections.io

  say "Starting the operator as a host process"
  cargo build --quiet --bin vault-connection-operator
  port=$(free_ports 1)
  start operator /usr/bin/env VCO_METRICS_ADDR="127.0.0.1:$port" VCO_LOG_FORMAT=text VCO_CLUSTER_NAME=demo \
    "$ROOT/target/debug/vault-connection-operator" run
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$port/readyz"
else
  say "Building the image and loading it into the node"
  hack/image.sh --load
  image=$(cat target/image/ref)

  say "helm install $RELEASE (image $image, two replicas)"
  # The SSM emulator stands in for AWS: its endpoint on the node's bridge and dummy keys.
  values=$STATE/values.yaml
  cat >"$values" <<VALUES
image: {repository: ${image%:*}, tag: ${image##*:}, pullPolicy: Never}
operator: {clusterName: demo, logFormat: text}
aws: {region: us-east-1}
extraEnv:
  - {name: AWS_ENDPOINT_URL_SSM, value: "$AWS_ENDPOINT_URL_SSM"}
  - {name: AWS_ACCESS_KEY_ID, value: testing}
  - {name: AWS_SECRET_ACCESS_KEY, value: testing}
  - {name: AWS_EC2_METADATA_DISABLED, value: "true"}
VALUES
  helm upgrade --install "$RELEASE" charts/vault-connection-operator \
    --namespace "$RELEASE_NS" --create-namespace -f "$values" --wait --timeout 3m
  kubectl get pods -n "$RELEASE_NS" -o wide
  echo "leader: $(kubectl get lease -n "$RELEASE_NS" vault-connection-operator -o jsonpath='{.spec.holderIdentity}')"
fi

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
if [ "$HOST" = true ]; then
  echo "operator:        $STATE/logs/operator.log"
  echo "metrics:         http://127.0.0.1:$port/metrics"
else
  echo "operator:        kubectl logs -n $RELEASE_NS deploy/$RELEASE"
fi
echo "cluster:         $STATE/logs/"

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
