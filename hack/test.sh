#!/usr/bin/env bash
# The one test command. On a fresh machine of this kind it installs what is missing, brings up
# the real test environment with its node (its own instance, under target/testenv-test), builds
# the operator image and loads it into the node, runs fmt, clippy and every test, and always
# tears the environment down, even on failure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf '[test %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# One set-up step, the same as hack/demo.sh's: Debian packages, Rust components, test binaries.
hack/testenv.sh install

# A private instance, so a developer's own `hack/testenv.sh up` is neither reused nor stopped.
export VCO_TESTENV_DIR="$ROOT/target/testenv-test"
# CI runs everything: a test that finds a part of the environment missing fails, never skips.
export VCO_REQUIRE_TESTENV=1
trap 'hack/testenv.sh down || true' EXIT
hack/testenv.sh up --node
# shellcheck disable=SC1091
source "$VCO_TESTENV_DIR/env"
log "building the operator image and loading it into the node"
hack/image.sh --load
# The previous release, for the upgrade test: its tree (from git, no worktree to clean up) and
# its image, built the same way (the release build's cache is shared, so only its crate builds).
previous=$(grep -v '^#' hack/previous-release | head -n 1)
if git cat-file -e "$previous^{commit}" 2>/dev/null; then
  log "building the previous release's image ($previous) for the upgrade test"
  rm -rf target/previous && mkdir -p target/previous
  git archive "$previous" | tar -x -C target/previous
  (cd target/previous && IMAGE=localhost/vault-connection-operator:previous hack/image.sh --load)
else
  log "the previous release $previous is not in this clone's history; the upgrade test skips"
fi

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
log "cargo deny check: advisories (the committed snapshot), licenses, bans, sources"
hack/deny.sh
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
log "cargo check with Rust $msrv, Cargo.toml's rust-version"
cargo +"$msrv" check --locked --quiet --all-targets \
  --target-dir "${VCO_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-connection-operator}/msrv-target"
log "the release, as hack/release.sh makes it: both binaries (the arm64 one run under qemu), image, chart, SBOM, signatures, verified as a user would"
rm -rf target/release-ci
hack/release.sh --allow-dirty target/release-ci >/dev/null
log "cargo test"
results="$VCO_TESTENV_DIR/cargo-test.log"
# --all-targets: unit, integration and property tests (the crate has no doctests).
cargo test --no-fail-fast --all-targets 2>&1 | tee "$results"

# The oldest supported Kubernetes: a control plane of its own (API server only) for the CRD,
# admission of every example, deploy/install.yaml and the controller suite. Private
# environments the tests start are of the same version (VCO_TESTENV_FLOOR=1).
log "the compatibility suite on the oldest supported Kubernetes"
floor_dir=$ROOT/target/testenv-floor
trap 'hack/testenv.sh down || true; VCO_TESTENV_DIR=$floor_dir hack/testenv.sh down >/dev/null 2>&1 || true' EXIT
VCO_TESTENV_DIR=$floor_dir hack/testenv.sh up --floor
VCO_TESTENV_DIR=$floor_dir VCO_TESTENV_FLOOR=1 cargo test --no-fail-fast \
  --test crd --test install_manifest --test controller 2>&1 | tee -a "$results"
VCO_TESTENV_DIR=$floor_dir VCO_TESTENV_FLOOR=1 cargo test --no-fail-fast --test environment \
  the_api_server_runs_the_kubernetes_version 2>&1 | tee -a "$results"
VCO_TESTENV_DIR=$floor_dir hack/testenv.sh down
log "fuzz the validate command's YAML path (bounded)"
hack/fuzz.sh "${VCO_FUZZ_SECONDS:-60}"
# One closing line over every test binary (cargo prints one per binary).
sum() { grep -o "[0-9]* $1" "$results" | awk '{n += $1} END {print n + 0}'; }
echo "$(sum passed) passed, $(sum failed) failed"
