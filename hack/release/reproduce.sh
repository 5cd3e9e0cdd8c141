#!/usr/bin/env bash
# Shows that the release is reproducible: hack/release.sh run twice on one commit, each time in a
# fresh clone at its own path, the first with the shared (warm) release target directory, the
# second with an empty one of its own, must give the same image index digest, and so the same
# binaries, configs and layers.
#
#   hack/release/reproduce.sh [COMMIT]    (default HEAD)
#
# Cold, the second run is a full release build of both binaries (tens of minutes on 2 cores), so
# CI does not run this; run it after changing anything that goes into the image (the build flags,
# the toolchain, hack/oci, Cargo.lock). Its clones and target directory are removed afterwards.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=hack/testenv/lib.sh
source "$ROOT/hack/testenv/lib.sh"
log() { printf '[reproduce %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
COMMIT=$(git -C "$ROOT" rev-parse "${1:-HEAD}")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vco-reproduce.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

run() {
  local n=$1 t=$SECONDS; shift
  git clone --quiet --no-checkout "$ROOT" "$WORK/checkout-$n"
  git -C "$WORK/checkout-$n" checkout --quiet --detach "$COMMIT"
  log "run $n: $COMMIT in $WORK/checkout-$n${*:+ ($*)}"
  env "$@" "$WORK/checkout-$n/hack/release.sh" "$WORK/out-$n" >"$WORK/digest-$n"
  log "run $n: $(cat "$WORK/digest-$n") in $((SECONDS - t))s"
}
run 1
run 2 VCO_RELEASE_TARGET_DIR="$WORK/target-2"
one=$(cat "$WORK/digest-1") two=$(cat "$WORK/digest-2")
if [ "$one" != "$two" ]; then
  for n in 1 2; do (cd "$WORK/out-$n" && sha256sum image/blobs/sha256/* | sort >"$WORK/blobs-$n"); done
  diff "$WORK/blobs-1" "$WORK/blobs-2" >&2 || true
  die "not reproducible: $one, then $two"
fi
log "reproducible: both runs of $COMMIT give index $one"
echo "$one"
