# The control plane of `up` (etcd, kube-apiserver, kube-controller-manager and moto; with a node
# also kube-scheduler and the node of node.sh), its certificates and kubeconfigs, the env files
# it leaves for its users, and `down` and `status`. Sourced by hack/testenv.sh after lib.sh and
# node.sh.

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

# write_env MOTO_URL: the environment's interface, twice from the same values: env.json (typed,
# for programs: the test kit reads it) and env (export lines, for shells: `source` it).
write_env() {
  local moto_url=$1 kube_version=$2 node_name="" containerd=""
  if [ -f "$STATE/node" ]; then node_name=$NODE_NAME; containerd=$STATE/containerd/containerd.sock; fi
  python3 - "$STATE" "$(cat "$STATE/kube-apiserver.url")" "$moto_url" "$(tool_path)" \
    "$MOTO_DIR/bin/python" "$node_name" "$containerd" "${BRIDGE_IP:-}" "$kube_version" >"$STATE/env.json.tmp" <<'PY'
import json, sys
state, api, moto, path, python, node, containerd, bridge, kube = sys.argv[1:]
print(json.dumps({
    "format": 1,
    "state_dir": state,
    "kubeconfig": f"{state}/kubeconfig",
    "api_server": api,
    "kube_version": kube,
    "ssm_endpoint": moto,
    "aws_region": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "bin": path.split(":"),
    "python": python,
    "node": {"name": node, "containerd": containerd, "host_ip": bridge} if node else None,
}, indent=2))
PY
  cat >"$STATE/env.tmp" <<ENV
# Written by hack/testenv.sh up (with env.json, the same values typed); source it to use the
# test environment.
export KUBECONFIG='$STATE/kubeconfig'
export AWS_ENDPOINT_URL_SSM='$moto_url'
export AWS_REGION='us-east-1'
export AWS_ACCESS_KEY_ID='testing'
export AWS_SECRET_ACCESS_KEY='testing'
export AWS_EC2_METADATA_DISABLED='true'
export VCO_TESTENV_DIR='$STATE'
export VCO_TESTENV_BIN='$(tool_path)'
export VCO_TESTENV_PYTHON='$MOTO_DIR/bin/python'
export PATH="\$VCO_TESTENV_BIN:\$PATH"
ENV
  if [ -n "$node_name" ]; then
    cat >>"$STATE/env.tmp" <<ENV
# The node: its name and the containerd socket to import images into (namespace k8s.io).
export VCO_TESTENV_NODE_NAME='$node_name'
export VCO_TESTENV_CONTAINERD='$containerd'
ENV
  fi
  mv "$STATE/env.json.tmp" "$STATE/env.json"
  mv "$STATE/env.tmp" "$STATE/env"
}

all_running() {
  local name
  for name in "${CONTROL_COMPONENTS[@]}"; do
    [ "$name" = kube-controller-manager ] && [ -f "$STATE/floor" ] && continue
    is_ours "$name" || return 1
  done
  if [ -f "$STATE/node" ]; then
    for name in "${NODE_COMPONENTS[@]}"; do
      [ "$name" = kube-network-policies ] && [ -f "$STATE/netpol-unsupported" ] && continue
      is_ours "$name" || return 1
    done
  fi
}

# aggregated: kube-controller-manager has filled the built-in `admin` role by aggregation.
aggregated() {
  [ -n "$(KUBECONFIG=$STATE/kubeconfig "$KUBE_DIR/bin/kubectl" get clusterrole admin -o jsonpath='{.rules[*].verbs}')" ]
}

node_ready() {
  [ "$(KUBECONFIG=$STATE/kubeconfig "$KUBE_DIR/bin/kubectl" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

cmd_up() {
  local node=${VCO_TESTENV_NODE:-0} floor=${VCO_TESTENV_FLOOR:-0}
  case "${1:-}" in --node) node=1 ;; --floor) floor=1 ;; "") ;; *) usage; exit 2 ;; esac
  [ "$node" = 1 ] || node=0
  [ "$floor" = 1 ] || floor=0
  [ "$floor" = 0 ] || node=0
  # --floor: the oldest supported Kubernetes, its API server only (no controller manager: a newer
  # one may not run against an older API server).
  local apiserver=$KUBE_DIR/bin/kube-apiserver version=$KUBE_VERSION
  if [ "$floor" = 1 ]; then apiserver=$KUBE_FLOOR_DIR/bin/kube-apiserver version=$KUBE_FLOOR_VERSION; fi
  [ -x "$apiserver" ] || die "$apiserver is missing: run 'hack/testenv.sh install' first"
  local b
  for b in "$ETCD_DIR/bin/etcd" "$MOTO_DIR/bin/moto_server" "$KUBE_DIR/bin/kube-apiserver" "$KUBE_DIR/bin/kube-controller-manager"; do
    [ -x "$b" ] || die "$b is missing: run 'hack/testenv.sh install' first"
  done
  if [ "$node" = 1 ]; then
    for b in kube-scheduler kubelet kube-proxy; do
      [ -x "$KUBE_DIR/bin/$b" ] || die "$KUBE_DIR/bin/$b is missing: run 'hack/testenv.sh install' first"
    done
  fi
  local running_floor=0
  [ ! -f "$STATE/floor" ] || running_floor=1
  if [ -f "$STATE/env" ] && all_running && { [ "$node" = 0 ] || [ -f "$STATE/node" ]; } &&
    [ "$floor" = "$running_floor" ]; then
    log "already running (see 'hack/testenv.sh status'); starting nothing"
    return 0
  fi
  # Whatever an earlier run here left — recorded processes, unrecorded ones, a node — goes first.
  if [ -d "$STATE" ]; then
    if ls "$STATE"/*.pid >/dev/null 2>&1 || [ -f "$STATE/node" ]; then
      log "found state of an earlier run in $STATE; cleaning it up"
      cmd_down
    fi
    kill_leftovers "$STATE"
  fi
  # An `up` that fails or is interrupted stops what it started, so the next one starts clean.
  trap 'rc=$?; trap - EXIT; if [ $rc -ne 0 ]; then log "up failed; stopping what it started"; cmd_down; fi; exit $rc' EXIT
  trap 'exit 130' INT TERM HUP
  local start=$SECONDS etcd_port peer_port api_port moto_port kcm_port listen=127.0.0.1
  rm -rf "$STATE/pki" "$STATE/etcd" "$STATE/env" "$STATE/env.json" "$STATE/kubeconfig" "$STATE/floor"
  mkdir -p "$STATE/logs"
  [ "$floor" = 0 ] || touch "$STATE/floor"
  if [ "$node" = 1 ]; then
    node_lock
    touch "$STATE/node"
    node_network
    # Pods reach the API server (through the `kubernetes` Service) and moto on the bridge.
    listen=$BRIDGE_IP
  fi
  make_certs
  read -r etcd_port peer_port kcm_port < <(free_ports 3)
  read -r api_port moto_port < <(free_ports 2 "$listen")
  [ -n "$kcm_port" ] && [ -n "$moto_port" ] || die "found no free ports"
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
  start kube-apiserver "$apiserver" \
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
  if [ "$floor" = 0 ]; then
  start kube-controller-manager "$KUBE_DIR/bin/kube-controller-manager" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --cert-dir "$STATE/kube-controller-manager-pki" \
    --leader-elect=false --use-service-account-credentials=false \
    --service-account-private-key-file "$d/sa.key" --root-ca-file "$d/ca.crt" \
    --cluster-signing-cert-file "$d/ca.crt" --cluster-signing-key-file "$d/ca.key"
  echo "https://127.0.0.1:$kcm_port" >"$STATE/kube-controller-manager.url"
  fi

  if [ "$node" = 1 ]; then
    local sched_port kubelet_port proxy_port proxy_metrics
    read -r sched_port kubelet_port proxy_port proxy_metrics < <(free_ports 4)
    [ -n "$proxy_metrics" ] || die "found no free ports"
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
  [ "$floor" = 1 ] || wait_for "kube-controller-manager to fill the admin role" kube-controller-manager 600 aggregated
  if [ "$node" = 1 ]; then
    wait_for "kube-scheduler" kube-scheduler 600 health kube-scheduler
    wait_for "kube-proxy" kube-proxy 600 health kube-proxy
    wait_for "node $NODE_NAME Ready" kubelet 900 node_ready
  fi
  write_env "http://$listen:$moto_port" "$version"
  trap - EXIT INT TERM HUP
  log "up in $((SECONDS - start))s: kube-apiserver v$version $api_url, etcd 127.0.0.1:$etcd_port, SSM http://$listen:$moto_port$([ "$node" = 1 ] && echo ", node $NODE_NAME Ready")"
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
  rm -rf "$STATE/pki" "$STATE/etcd" "$STATE/env" "$STATE/env.json" "$STATE"/*.kubeconfig \
    "$STATE/kubeconfig" "$STATE"/*.cmd "$STATE"/*.url "$STATE/kube-controller-manager-pki" \
    "$STATE/floor"
  log "down"
}

cmd_status() {
  local rc=0 name names=("${CONTROL_COMPONENTS[@]}")
  [ -f "$STATE/node" ] && names+=("${NODE_COMPONENTS[@]}")
  for name in "${names[@]}"; do
    if [ "$name" = kube-network-policies ] && [ -f "$STATE/netpol-unsupported" ]; then
      printf '%-24s not run  %s\n' "$name" "$(cat "$STATE/netpol-unsupported")"
    elif is_ours "$name"; then
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
