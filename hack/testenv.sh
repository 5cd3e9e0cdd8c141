#!/usr/bin/env bash
# The real test environment: a Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager) built from its Go modules and moto's SSM emulator, on loopback; with
# --node also a real node (kube-scheduler, containerd + runc, CNI bridge, kubelet, kube-proxy) on
# a bridge of its own. Also builds promtool and the hack/ecosystem checker for the tests. See the
# README ("The test environment"). The parts, by job, are in hack/testenv/: lib.sh (versions,
# paths, processes), install.sh, control-plane.sh, node.sh and faults.sh.
#
#   hack/testenv.sh install [--cluster]  install the Debian packages and Rust components, and
#                               build/cache the binaries (once per machine, keyed by version;
#                               --cluster: only what hack/demo.sh and hack/bench.sh use)
#   hack/testenv.sh up [--node|--floor]  start it (--floor: the oldest supported API server);
#                               write target/testenv/{kubeconfig,env,env.json}
#   hack/testenv.sh down        stop exactly what `up` started, by pid, and remove its state
#   hack/testenv.sh status      say what is running and where
#   hack/testenv.sh restart|stop|start|pause|resume COMPONENT   fault injection for tests
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/testenv/lib.sh
source "$HERE/testenv/lib.sh"
# shellcheck source=hack/testenv/install.sh
source "$HERE/testenv/install.sh"
# shellcheck source=hack/testenv/node.sh
source "$HERE/testenv/node.sh"
# shellcheck source=hack/testenv/control-plane.sh
source "$HERE/testenv/control-plane.sh"
# shellcheck source=hack/testenv/faults.sh
source "$HERE/testenv/faults.sh"

usage() {
  cat >&2 <<USAGE
usage: hack/testenv.sh <install [--cluster]|up [--node|--floor]|down|status|path>
  install  install the Debian packages (${APT_PACKAGES[*]}) and the Rust components the tests
           and the demo use; build the Kubernetes v$KUBE_VERSION binaries, the pause binary, etcd
           v$ETCD_VERSION, helm v$HELM_VERSION, promtool (prometheus module v$PROMETHEUS_VERSION),
           the hack/ecosystem checker and a moto $MOTO_VERSION virtualenv into $CACHE (once per
           machine), and the release tools
  install --cluster
           only the cluster and the SSM emulator, what hack/demo.sh and hack/bench.sh use: the
           Debian packages, etcd, the Kubernetes binaries, pause, helm and moto
  path     print the PATH entries of the installed tools, the release's cosign, oras and
           registry too (for tests run without 'up')
  up       start etcd, kube-apiserver, kube-controller-manager and the moto SSM emulator on free
           loopback ports; first stops whatever an earlier run in the same state directory left,
           and stops what it started if it fails
  up --floor (or VCO_TESTENV_FLOOR=1)
           the control plane of the oldest supported Kubernetes (kube-apiserver v$KUBE_FLOOR_VERSION,
           etcd and moto; no controller manager, no node), for the compatibility tests
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

case "${1:-}" in
  install) cmd_install "${2:-}" ;;
  up) cmd_up "${2:-}" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  path) echo "$(tool_path):$COSIGN_DIR/bin:$ORAS_DIR/bin:$REGISTRY_DIR/bin" ;;
  restart|start|stop|pause|resume) cmd_component "$1" "${2:-}" ;;
  *) usage; exit 2 ;;
esac
