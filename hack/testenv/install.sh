# `hack/testenv.sh install`: the Debian packages and Rust components the tests and the demo use,
# and the test environment's binaries, built from their Go modules (or PyPI) and cached per
# version under $CACHE. Sourced by hack/testenv.sh after lib.sh.

# go_wrapper DIR: a throwaway module in DIR from which binaries of other modules are built.
go_wrapper() {
  mkdir -p "$1/bin"
  [ -f "$1/go.mod" ] || (cd "$1" && go mod init local/testenv >/dev/null 2>&1)
}

KUBE_COMMANDS=(kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)

# build_kube VERSION DIR COMMAND...: the COMMANDs of k8s.io/kubernetes at VERSION into DIR/bin
# (each only if missing).
build_kube() {
  local version=$1 dir=$2 missing=() c; shift 2
  for c in "$@"; do [ -x "$dir/bin/$c" ] || missing+=("$c"); done
  if [ ${#missing[@]} -eq 0 ]; then log "kubernetes v$version ($*): cached"; return; fi
  log "kubernetes v$version (${missing[*]}): building from k8s.io/kubernetes (cold: ~5-25 min)"
  go_wrapper "$dir"
  (
    cd "$dir"
    local gomod minor pkgs=()
    gomod=$(go mod download -json "k8s.io/kubernetes@v$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [ -n "$gomod" ] || die "could not download k8s.io/kubernetes@v$version"
    minor=v0.${version#1.}
    # k8s.io/kubernetes requires its staging modules as v0.0.0 with `=> ./staging/...` replaces,
    # which do not apply outside its repository: point each at its published v0.X.Y instead.
    for m in $(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*|\1|p' "$gomod"); do
      go mod edit -replace="$m=$m@$minor"
    done
    log "  resolving modules"
    # Get the commands' packages (not just the module) so go.sum covers everything they import.
    for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c@v$version"); done
    quiet go get "${pkgs[@]}"
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$version" | cut -d. -f2)"
    for c in "${missing[@]}"; do
      local t=$SECONDS
      go build -trimpath -ldflags "$ldflags" -o "bin/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv "bin/$c.tmp" "bin/$c"
      log "  compiled $c ($((SECONDS - t))s)"
    done
  )
}

install_kube() {
  build_kube "$KUBE_VERSION" "$KUBE_DIR" "${KUBE_COMMANDS[@]}"
}

# The oldest supported Kubernetes: its API server only (`up --floor`).
install_kube_floor() {
  build_kube "$KUBE_FLOOR_VERSION" "$KUBE_FLOOR_DIR" kube-apiserver
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
  GOBIN="$HELM_DIR/bin.tmp" quiet go install "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
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

# kube-network-policies, SIG Network's NetworkPolicy enforcer (nftables, with the first packet of
# each connection judged in user space through NFQUEUE), built unmodified from its Go module: the
# node's policy engine on top of the bridge CNI, which enforces nothing itself.
install_netpol() {
  if [ -x "$NETPOL_DIR/bin/kube-network-policies" ]; then log "kube-network-policies v$NETPOL_VERSION: cached"; return; fi
  log "kube-network-policies v$NETPOL_VERSION: building from sigs.k8s.io/kube-network-policies (cold: ~2-4 min)"
  go_wrapper "$NETPOL_DIR"
  (
    cd "$NETPOL_DIR"
    quiet go get "sigs.k8s.io/kube-network-policies/cmd@v$NETPOL_VERSION"
    go build -trimpath -ldflags "-s -w" -o bin/kube-network-policies.tmp sigs.k8s.io/kube-network-policies/cmd
    mv bin/kube-network-policies.tmp bin/kube-network-policies
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

install_moto() {
  if [ -f "$MOTO_DIR/.complete" ]; then log "moto $MOTO_VERSION: cached"; return; fi
  log "moto[server] $MOTO_VERSION: creating virtualenv (cold: ~1 min)"
  rm -rf "$MOTO_DIR"
  python3 -m venv "$MOTO_DIR"
  "$MOTO_DIR/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  touch "$MOTO_DIR/.complete"   # a half-built venv from an interrupted run is rebuilt next time
}

# Debian packages: openssl and curl (certificates, health checks), the node's container runtime,
# CNI plugins and iptables (up --node), musl-tools and docker.io (hack/image.sh: the static binary
# and the image), qemu-user-static (runs the arm64 release binary here); python3-venv only when
# the python3 on PATH cannot make moto's virtualenv.
APT_PACKAGES=(openssl curl containerd runc containernetworking-plugins iptables musl-tools docker.io
  qemu-user-static)

# installed PACKAGE: dpkg records PACKAGE as installed. `dpkg -s` alone also succeeds for a package
# removed with its configuration files left ("deinstall ok config-files"), whose binaries are gone.
installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

install_debian() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -eq 0 ]; then log "Debian packages: installed"; return; fi
  log "Debian packages: installing ${missing[*]}"
  local sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  quiet $sudo apt-get update -qq
  quiet env DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  for p in "${missing[@]}"; do installed "$p" || die "apt-get did not install $p"; done
}

# The Rust components the checks use (cargo fmt, cargo clippy).
install_rust() {
  command -v rustup >/dev/null || die "rustup is required to build the operator"
  local c
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || quiet rustup component add "$c"
  done
}

# The release and supply-chain tools: cargo-auditable, cargo-cyclonedx, cargo-deny,
# cargo-zigbuild and zig, cosign, oras, the registry, hack/oci and the Rust toolchains.
# shellcheck source=hack/release/tools.sh
source "$ROOT/hack/release/tools.sh"

# cmd_install [--cluster]: everything hack/test.sh uses, or with --cluster only the cluster and
# the SSM emulator, what hack/demo.sh and hack/bench.sh use
# (the packages, etcd, the Kubernetes v$KUBE_VERSION binaries, pause, helm and moto; hack/image.sh
# adds its own Rust target and cargo-auditable): a first demo does not wait for the floor API
# server, promtool, the policy enforcer, the ecosystem checker or the release tools.
cmd_install() {
  local profile=${1:-}
  case "$profile" in
    "" | --cluster) ;;
    *) die "install: unknown option $profile (expected --cluster or nothing)" ;;
  esac
  command -v go >/dev/null || die "go is required to build the control plane"
  command -v python3 >/dev/null || die "python3 is required for the SSM emulator"
  mkdir -p "$CACHE"
  local start=$SECONDS
  install_debian
  install_etcd
  install_kube
  install_pause
  install_helm
  install_moto
  if [ "$profile" != --cluster ]; then
    install_rust
    install_kube_floor
    install_promtool
    install_netpol
    install_ecosystem
    install_release_tools
  fi
  log "install${profile:+ $profile} done in $((SECONDS - start))s; cache: $CACHE ($(du -sh "$CACHE" 2>/dev/null | cut -f1))"
}
