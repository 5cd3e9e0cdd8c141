#!/usr/bin/env bash
# Renders deploy/install.yaml: the chart with its default values, plus the namespace it installs
# into, for people who do not use Helm (`kubectl apply --server-side -f deploy/install.yaml`, or an
# Argo CD Application whose source is the deploy/ directory). CI fails when the file drifts from
# the chart (tests/install_manifest.rs), so run this after changing the chart.
#   hack/gen-install.sh            rewrite deploy/install.yaml
#   hack/gen-install.sh --stdout   print what it would write
#   hack/gen-install.sh --chart CHART.tgz --stdout
#                                  the same from a packaged chart (hack/release.sh: the release's
#                                  install.yaml, from the chart whose image is pinned by digest)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NAMESPACE=vault-connection-operator
CHART=charts/vault-connection-operator CHART_NAME=charts/vault-connection-operator
if [ "${1:-}" = "--chart" ]; then
  CHART=${2:?--chart needs a path}; CHART_NAME=${CHART##*/}; shift 2
  [ "${1:-}" = "--stdout" ] || { echo "--chart renders to stdout only: deploy/install.yaml follows the chart's sources" >&2; exit 2; }
fi
HELM=${HELM:-$(PATH="$(hack/testenv.sh path):$PATH" command -v helm || true)}
[ -n "$HELM" ] || { echo "helm not found: run hack/testenv.sh install" >&2; exit 1; }

render() {
  cat <<HEADER
# vault-connection-operator: the Helm chart $CHART_NAME rendered with its
# default values into namespace $NAMESPACE by hack/gen-install.sh. Do not edit: change the
# chart and run the script again. Apply with
#   kubectl apply --server-side -f deploy/install.yaml
# then give the operator AWS credentials (IRSA annotation or EKS Pod Identity on the
# $NAMESPACE/$NAMESPACE ServiceAccount). See the README.
---
apiVersion: v1
kind: Namespace
metadata:
  name: $NAMESPACE
  labels:
    pod-security.kubernetes.io/enforce: restricted
HEADER
  # --kube-version: offline helm assumes 1.20, below the chart's kubeVersion.
  "$HELM" template "$NAMESPACE" "$CHART" --namespace "$NAMESPACE" --kube-version 1.33.0
}

if [ "${1:-}" = "--stdout" ]; then
  render
else
  render >deploy/install.yaml.tmp
  mv deploy/install.yaml.tmp deploy/install.yaml
  echo "wrote deploy/install.yaml"
fi
