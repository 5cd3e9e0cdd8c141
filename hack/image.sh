#!/usr/bin/env bash
# Builds the operator image from the Dockerfile, offline: the static release binary
# (x86_64-unknown-linux-musl) compiled on the host exactly as hack/release.sh compiles it
# (hack/release/build.sh), packed with a CA bundle into a `FROM scratch` image by Debian's
# dockerd, saved as an archive and, with --load, imported into the test node.
#
#   hack/image.sh                 build IMAGE (default localhost/vault-connection-operator:dev)
#   hack/image.sh --load          also import it into the node of the test environment
#                                 (VCO_TESTENV_DIR, default target/testenv; `up --node`)
#
# Output: target/image/image.tar (docker archive) and target/image/ref (the image reference).
# The release build's target directory is cached outside the checkout, keyed by nothing but
# cargo's own fingerprints, and shared with hack/release.sh:
# ~/.cache/vault-connection-operator/release-target. Cold: a full release build of the
# dependencies; warm: seconds (or one crate's build after a source change).
# When no Docker daemon answers, one is started for the build (its own socket and data under
# /run/vco-dockerd and the cache; no bridge, no iptables) and stopped afterwards.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/testenv/lib.sh
source "$ROOT/hack/testenv/lib.sh"
# shellcheck source=hack/release/tools.sh
source "$ROOT/hack/release/tools.sh"
# shellcheck source=hack/release/build.sh
source "$ROOT/hack/release/build.sh"
cd "$ROOT"
IMAGE=${IMAGE:-localhost/vault-connection-operator:dev}
TARGET=x86_64-unknown-linux-musl
CACHE_ROOT=${VCO_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-connection-operator}
OUT=$ROOT/target/image
DOCKER_RUN=/run/vco-dockerd
# Debian's docker client, whatever else is first on PATH: it speaks the daemon's API version and
# builds with the classic builder, which needs no frontend image from a registry.
DOCKER=/usr/bin/docker
export DOCKER_BUILDKIT=0
log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

LOAD=false
case "${1:-}" in
  --load) LOAD=true ;;
  "") ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac

[ -x "$DOCKER" ] && command -v dockerd >/dev/null || die "docker is missing: apt-get install docker.io"
[ -f /etc/ssl/certs/ca-certificates.crt ] || die "/etc/ssl/certs/ca-certificates.crt is missing: apt-get install ca-certificates"
rustup +"$RUST_RELEASE_VERSION" target list --installed 2>/dev/null | grep -qx "$TARGET" \
  || quiet rustup target add --toolchain "$RUST_RELEASE_VERSION" "$TARGET"
install_crate cargo-auditable "$CARGO_AUDITABLE_VERSION" "$CARGO_AUDITABLE_DIR"

# Static, stripped (symbols only serve debuggers and backtraces; without them the image is a
# quarter smaller), with its dependency list embedded; refused if it needs a libc.
bin=$(release_build "$TARGET")
rm -rf "$OUT/context" && mkdir -p "$OUT/context"
cp "$bin" "$OUT/context/"
cp /etc/ssl/certs/ca-certificates.crt "$OUT/context/"

# The daemon: one that already answers, or our own for the length of this script.
STARTED_DOCKERD=false
if ! "$DOCKER" info >/dev/null 2>&1; then
  export DOCKER_HOST=unix://$DOCKER_RUN/docker.sock
  # One that an interrupted run of this script left is ours to stop at the end as well.
  if [ -f "$DOCKER_RUN/started-by-image-sh.pid" ] && "$DOCKER" info >/dev/null 2>&1; then
    STARTED_DOCKERD=true
  elif ! "$DOCKER" info >/dev/null 2>&1; then
    mkdir -p "$DOCKER_RUN" "$CACHE_ROOT/docker"
    log "starting dockerd (socket $DOCKER_HOST, data $CACHE_ROOT/docker)"
    setsid dockerd --host "$DOCKER_HOST" --data-root "$CACHE_ROOT/docker" --exec-root "$DOCKER_RUN/exec" \
      --pidfile "$DOCKER_RUN/dockerd.pid" --bridge none --iptables=false --ip6tables=false \
      --storage-driver overlay2 </dev/null >"$DOCKER_RUN/dockerd.log" 2>&1 &
    echo $! >"$DOCKER_RUN/started-by-image-sh.pid"
    STARTED_DOCKERD=true
    for _ in $(seq 1 150); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.2; done
    "$DOCKER" info >/dev/null 2>&1 || { tail -n 20 "$DOCKER_RUN/dockerd.log" >&2; die "dockerd did not start"; }
  fi
fi
stop_dockerd() {
  [ "$STARTED_DOCKERD" = true ] || return 0
  local pid; pid=$(cat "$DOCKER_RUN/started-by-image-sh.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$DOCKER_RUN/started-by-image-sh.pid"
}
trap stop_dockerd EXIT

t=$SECONDS
"$DOCKER" build --quiet -f Dockerfile -t "$IMAGE" "$OUT/context" >/dev/null
"$DOCKER" save -o "$OUT/image.tar.tmp" "$IMAGE"
mv "$OUT/image.tar.tmp" "$OUT/image.tar"
echo "$IMAGE" >"$OUT/ref"
size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
log "built $IMAGE in $((SECONDS - t))s: $((size / 1024 / 1024)) MiB ($size bytes), archive $OUT/image.tar"

if [ "$LOAD" = true ]; then
  STATE=${VCO_TESTENV_DIR:-$ROOT/target/testenv}
  sock=$STATE/containerd/containerd.sock
  [ -S "$sock" ] || die "no test node in $STATE: run 'hack/testenv.sh up --node' first"
  ctr --address "$sock" -n k8s.io images import "$OUT/image.tar" >/dev/null
  log "imported $IMAGE into the node's containerd ($sock)"
fi
