#!/usr/bin/env bash
# Fuzzes the YAML path of `validate` (fuzz/fuzz_targets/validate_yaml.rs) for a bounded time.
#
#   hack/fuzz.sh [SECONDS]     default 60
#
# Installs cargo-fuzz when it is missing. Uses a nightly toolchain when one is installed, else the
# stable one with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly-only compiler flags); set
# VCO_FUZZ_TOOLCHAIN=stable or nightly to choose. Seeds: the committed fuzz/seeds/validate_yaml/
# and every manifest under examples/. Exits non-zero when the fuzzer finds a crash, a failed
# assertion or a timeout;
# the input is then kept under fuzz/artifacts/validate_yaml/, and
# `cargo fuzz run --target-dir CACHE/target validate_yaml FILE` (same toolchain) replays it.
#
# The instrumented build (kube and the AWS SDK with coverage and AddressSanitizer) and the corpus
# the fuzzer grows live outside the checkout, in CACHE (VCO_FUZZ_CACHE, default
# ~/.cache/vault-connection-operator/fuzz), so a fresh clone on the same machine (CI) pays only
# for the operator's own crate, and each run starts from what earlier runs learned.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf '[fuzz %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

TARGET=validate_yaml
DURATION=${1:-60}
case $DURATION in
  '' | *[!0-9]*)
    echo "usage: hack/fuzz.sh [SECONDS]" >&2
    exit 2
    ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz (once per machine)"
  cargo install cargo-fuzz --locked
fi

TOOLCHAIN=${VCO_FUZZ_TOOLCHAIN:-}
if [ -z "$TOOLCHAIN" ]; then
  TOOLCHAIN=stable
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then TOOLCHAIN=nightly; fi
fi
case $TOOLCHAIN in
  nightly) FUZZ=(cargo +nightly fuzz) ;;
  stable)
    export RUSTC_BOOTSTRAP=1
    FUZZ=(cargo fuzz)
    ;;
  *)
    echo "VCO_FUZZ_TOOLCHAIN must be nightly or stable, not $TOOLCHAIN" >&2
    exit 2
    ;;
esac
log "toolchain: $TOOLCHAIN${RUSTC_BOOTSTRAP:+ with RUSTC_BOOTSTRAP=1}"

# The fuzz crate is a workspace of its own; start its lock file from the operator's, so the code
# under test builds with exactly the versions the operator ships (cargo adds the fuzz-only crates).
if [ ! -f fuzz/Cargo.lock ] || [ Cargo.lock -nt fuzz/Cargo.lock ]; then
  cp Cargo.lock fuzz/Cargo.lock
fi

CACHE=${VCO_FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-connection-operator/fuzz}
CORPUS=$CACHE/corpus/$TARGET
mkdir -p "$CORPUS"
log "building $TARGET in $CACHE/target (the first build on a machine takes minutes)"
"${FUZZ[@]}" build --target-dir "$CACHE/target" "$TARGET"

log "fuzzing $TARGET for ${DURATION}s"
# The first corpus directory is where libFuzzer writes new inputs; the others are only read.
# -timeout: an input that takes 10 s is a bug of its own (the largest is 8 KB).
"${FUZZ[@]}" run --target-dir "$CACHE/target" "$TARGET" "$CORPUS" "fuzz/seeds/$TARGET" examples -- \
  -max_total_time="$DURATION" -max_len=8192 -timeout=10 \
  -dict="fuzz/$TARGET.dict" -print_final_stats=1
log "no crash in ${DURATION}s"
