# shellcheck shell=bash
# The release and supply-chain tools, cached per version under $CACHE like the test
# environment's binaries (versions: hack/testenv/lib.sh). Sourced by hack/testenv/install.sh, so
# `hack/testenv.sh install` (the install step of hack/test.sh; hack/demo.sh runs its --cluster part,
# which leaves these out) installs them.
#
#   cargo-auditable, cargo-cyclonedx, cargo-deny, cargo-zigbuild   crates.io, `cargo install --locked`
#   zig                                            PyPI's ziglang, in a virtualenv
#   cosign, oras, registry                         Go modules, `go install`
#   vco-oci                                        hack/oci, cached per hash of its source
#   Rust $RUST_RELEASE_VERSION with the x86_64 and aarch64 musl targets, and the minimum
#   supported Rust (Cargo.toml's rust-version, profile minimal)   rustup

CARGO_AUDITABLE_DIR=$CACHE/cargo-auditable-v$CARGO_AUDITABLE_VERSION
CARGO_CYCLONEDX_DIR=$CACHE/cargo-cyclonedx-v$CARGO_CYCLONEDX_VERSION
CARGO_DENY_DIR=$CACHE/cargo-deny-v$CARGO_DENY_VERSION
CARGO_ZIGBUILD_DIR=$CACHE/cargo-zigbuild-v$CARGO_ZIGBUILD_VERSION
ZIG_DIR=$CACHE/ziglang-$ZIG_VERSION
COSIGN_DIR=$CACHE/cosign-v$COSIGN_VERSION
ORAS_DIR=$CACHE/oras-v$ORAS_VERSION
REGISTRY_DIR=$CACHE/registry-v$REGISTRY_VERSION
OCI_SRC=$ROOT/hack/oci
OCI_DIR=$CACHE/oci-$(cat "$OCI_SRC"/go.mod "$OCI_SRC"/go.sum "$OCI_SRC"/*.go | sha256sum | cut -c1-12)
RELEASE_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

# msrv: the minimum supported Rust version, as Cargo.toml states it.
msrv() { sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml"; }

# install_crate NAME VERSION DIR: `cargo install` into DIR, which appears only when complete.
install_crate() {
  local name=$1 version=$2 dir=$3
  if [ -x "$dir/bin/$name" ]; then log "$name v$version: cached"; return; fi
  log "$name v$version: cargo install (cold: minutes)"
  rm -rf "$dir.tmp"
  # Its own temporary target directory, whatever CARGO_TARGET_DIR says.
  quiet env -u CARGO_TARGET_DIR cargo install --locked --quiet --root "$dir.tmp" "$name" --version "$version"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

# install_go_command MODULE/CMD VERSION DIR NAME: `go install` into DIR/bin.
install_go_command() {
  local pkg=$1 version=$2 dir=$3 name=$4
  if [ -x "$dir/bin/$name" ]; then log "$name v$version: cached"; return; fi
  log "$name v$version: go install $pkg (cold: minutes)"
  mkdir -p "$dir"
  GOBIN="$dir/bin.tmp" quiet go install -trimpath -ldflags "-s -w" "$pkg@v$version"
  mkdir -p "$dir/bin" && mv "$dir/bin.tmp/$name" "$dir/bin/$name" && rmdir "$dir/bin.tmp"
}

# zig, as PyPI ships it (the `ziglang` package: the compiler and musl's headers for every
# target), in a virtualenv of its own; cargo-zigbuild runs it as `$ZIG_DIR/bin/python3 -m ziglang`.
install_zig() {
  if [ -f "$ZIG_DIR/.complete" ]; then log "zig $ZIG_VERSION: cached"; return; fi
  log "zig $ZIG_VERSION: ziglang from PyPI into a virtualenv (cold: ~30 s)"
  rm -rf "$ZIG_DIR"
  python3 -m venv "$ZIG_DIR"
  quiet "$ZIG_DIR/bin/pip" install --quiet --disable-pip-version-check "ziglang==$ZIG_VERSION"
  touch "$ZIG_DIR/.complete"
}

install_oci() {
  if [ -x "$OCI_DIR/bin/vco-oci" ]; then log "vco-oci ($(basename "$OCI_DIR")): cached"; return; fi
  log "vco-oci: building hack/oci (cold: ~1 min)"
  mkdir -p "$OCI_DIR/bin"
  (cd "$OCI_SRC" && go build -trimpath -ldflags "-s -w" -o "$OCI_DIR/bin/vco-oci.tmp" .)
  mv "$OCI_DIR/bin/vco-oci.tmp" "$OCI_DIR/bin/vco-oci"
}

# The release toolchain with both musl targets, and the minimum supported toolchain for the
# rust-version check. rustup keeps them under ~/.rustup; each is downloaded once.
install_rust_toolchains() {
  local t missing=() min
  rustup toolchain list | grep -q "^$RUST_RELEASE_VERSION-" || quiet rustup toolchain install "$RUST_RELEASE_VERSION" --profile minimal
  for t in "${RELEASE_TARGETS[@]}"; do
    rustup +"$RUST_RELEASE_VERSION" target list --installed | grep -qx "$t" || missing+=("$t")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "Rust $RUST_RELEASE_VERSION targets: adding ${missing[*]}"
    quiet rustup target add --toolchain "$RUST_RELEASE_VERSION" "${missing[@]}"
  fi
  min=$(msrv)
  [ -n "$min" ] || die "Cargo.toml has no rust-version"
  if ! rustup toolchain list | grep -q "^$min-"; then
    log "Rust $min (Cargo.toml's rust-version): rustup toolchain install --profile minimal"
    quiet rustup toolchain install "$min" --profile minimal
  fi
  log "Rust $RUST_RELEASE_VERSION (${RELEASE_TARGETS[*]}) and $min: installed"
}

install_release_tools() {
  install_rust_toolchains
  install_crate cargo-auditable "$CARGO_AUDITABLE_VERSION" "$CARGO_AUDITABLE_DIR"
  install_crate cargo-cyclonedx "$CARGO_CYCLONEDX_VERSION" "$CARGO_CYCLONEDX_DIR"
  install_crate cargo-deny "$CARGO_DENY_VERSION" "$CARGO_DENY_DIR"
  install_crate cargo-zigbuild "$CARGO_ZIGBUILD_VERSION" "$CARGO_ZIGBUILD_DIR"
  install_zig
  install_go_command github.com/sigstore/cosign/v3/cmd/cosign "$COSIGN_VERSION" "$COSIGN_DIR" cosign
  install_go_command oras.land/oras/cmd/oras "$ORAS_VERSION" "$ORAS_DIR" oras
  install_go_command github.com/distribution/distribution/v3/cmd/registry "$REGISTRY_VERSION" "$REGISTRY_DIR" registry
  install_oci
}
