# shellcheck shell=bash
# The operator's release binary, built one way for every user of it: hack/image.sh (the test
# node's image), hack/release.sh (the published image) and hack/test.sh (the arm64 smoke test).
# Sourced after hack/testenv/lib.sh and hack/release/tools.sh (versions and where the tools are).
#
# release_build TARGET prints the path of a static, stripped release binary for TARGET
# (x86_64-unknown-linux-musl or aarch64-unknown-linux-musl) with its dependency list embedded by
# cargo-auditable (section .dep-v0, read by `cargo audit bin`, syft, trivy and grype). The same
# commit gives the same bytes, wherever it is checked out and whatever else was built before:
#   - one compiler: Rust $RUST_RELEASE_VERSION, pinned, not `stable`;
#   - one C compiler per target: Debian's musl-gcc for x86_64 (musl-tools), zig $ZIG_VERSION for
#     aarch64 through cargo-zigbuild (pinned versions: hack/testenv/lib.sh);
#   - no build-machine paths: the crates' sources under $CARGO_HOME and the generated code under
#     the target directory are remapped (rustc --remap-path-prefix, and -ffile-prefix-map for the
#     C in aws-lc-sys, ring and psm), and the workspace's own paths are relative already;
#   - no symbols or debug info (strip = "symbols"), which also holds paths;
#   - Cargo.lock as committed (--locked).
# Checked by hack/release/reproduce.sh: two releases of one commit, from clones at two paths, one
# with a cold target directory of its own, give the same image index digest.
# The target directory is cached outside the checkout: $RELEASE_TARGET_DIR (one for both targets;
# the build scripts and proc macros they share are built once).

RELEASE_TARGET_DIR=${VCO_RELEASE_TARGET_DIR:-${VCO_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-connection-operator}/release-target}

# The C cross compiler for aarch64 is zig, not Debian's gcc-aarch64-linux-gnu: that gcc compiles
# against glibc's headers while the binary links musl, so the C in aws-lc-sys and ring would see
# glibc's sizes and constants (pthread_mutex_t is 48 bytes in glibc, 40 in musl) and work only as
# far as the two happen to agree; zig compiles against musl's own headers, as musl-gcc does for
# x86_64, and its version is pinned exactly (PyPI) rather than by the Debian release. Both were
# measured: a cold arm64 build costs about the same CPU either way (docs/release.md).

# release_env TARGET: the environment of the build for TARGET, as NAME=VALUE lines.
release_env() {
  local target=$1 cargo_home=${CARGO_HOME:-$HOME/.cargo} m rustflags=() cflags=()
  for m in "$cargo_home=/cargo" "$RELEASE_TARGET_DIR=/target"; do
    rustflags+=("--remap-path-prefix=$m"); cflags+=("-ffile-prefix-map=$m")
  done
  # CARGO_ENCODED_RUSTFLAGS: flags separated by 0x1f, so a path with a space stays one flag
  # (the cc crate splits CFLAGS at spaces: keep spaces out of those two paths).
  printf 'CARGO_ENCODED_RUSTFLAGS=%s\n' "$(IFS=$'\x1f'; echo "${rustflags[*]}")"
  printf 'CFLAGS_%s=%s\n' "${target//-/_}" "${cflags[*]}"
  echo CARGO_PROFILE_RELEASE_STRIP=symbols
  case "$target" in
    x86_64-unknown-linux-musl)
      echo "CC_${target//-/_}=musl-gcc" ;;
    aarch64-unknown-linux-musl)
      # cargo-zigbuild runs zig as `python3 -m ziglang` with the virtualenv's python; its
      # wrappers and zig's caches stay in the target directory.
      echo "CARGO_ZIGBUILD_PYTHON_PATH=$ZIG_DIR/bin/python3"
      echo "CARGO_ZIGBUILD_CACHE_DIR=$RELEASE_TARGET_DIR/zigbuild"
      echo "ZIG_GLOBAL_CACHE_DIR=$RELEASE_TARGET_DIR/zig-cache"
      echo "ZIG_LOCAL_CACHE_DIR=$RELEASE_TARGET_DIR/zig-cache" ;;
    *) die "no release build for $target" ;;
  esac
}

release_build() {
  local target=$1 t=$SECONDS envs=() line build=build
  case "$target" in
    x86_64-unknown-linux-musl)
      command -v musl-gcc >/dev/null || die "musl-gcc is missing: apt-get install musl-tools" ;;
    aarch64-unknown-linux-musl)
      [ -x "$CARGO_ZIGBUILD_DIR/bin/cargo-zigbuild" ] && [ -f "$ZIG_DIR/.complete" ] \
        || die "cargo-zigbuild or zig is missing: run hack/testenv.sh install"
      build=zigbuild ;;
  esac
  [ -x "$CARGO_AUDITABLE_DIR/bin/cargo-auditable" ] || die "cargo-auditable is missing: run hack/testenv.sh install"
  rustup +"$RUST_RELEASE_VERSION" target list --installed 2>/dev/null | grep -qx "$target" \
    || die "Rust $RUST_RELEASE_VERSION with target $target is missing: run hack/testenv.sh install"
  while IFS= read -r line; do envs+=("$line"); done < <(release_env "$target")
  log "building the release binary for $target (Rust $RUST_RELEASE_VERSION, cache $RELEASE_TARGET_DIR)"
  # `cargo auditable build|zigbuild` runs `cargo build|zigbuild` with a rustc wrapper for the
  # workspace's crate that adds the .dep-v0 section. Without SOURCE_DATE_EPOCH (hack/release.sh
  # sets it to the commit's time for the image): the cc crate reruns the build scripts of
  # aws-lc-sys, ring and psm when it changes, which rebuilt most of the tree on every commit, and
  # none of their C uses __DATE__ or __TIME__.
  (cd "$ROOT" && env -u SOURCE_DATE_EPOCH "${envs[@]}" PATH="$CARGO_AUDITABLE_DIR/bin:$CARGO_ZIGBUILD_DIR/bin:$PATH" \
    cargo +"$RUST_RELEASE_VERSION" auditable "$build" --release --locked --quiet --target "$target" \
    --bin vault-connection-operator --target-dir "$RELEASE_TARGET_DIR") >&2
  local bin=$RELEASE_TARGET_DIR/$target/release/vault-connection-operator
  # A static binary has no program interpreter; refuse one that would need a libc the image lacks.
  if readelf -l "$bin" | grep -q 'program interpreter'; then die "$bin is dynamically linked"; fi
  log "  $target: $((SECONDS - t))s, $(stat -c %s "$bin") bytes"
  echo "$bin"
}

# release_smoke BINARY [RUNNER]: the binary runs (under RUNNER, e.g. qemu-aarch64-static, for
# another architecture) and does its job: it names its version, finds the valid examples clean
# (exit 0) and every file in examples/invalid wrong (exit 1, one line per file). It prints what it
# saw (both runs' output and exit codes), so binaries for two architectures can be compared.
release_smoke() {
  local bin=$1 runner=${2:-} version out rc f
  local run=("$bin"); [ -z "$runner" ] || run=("$runner" "$bin")
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n1)
  out=$("${run[@]}" --version) || die "${run[*]} --version failed"
  [ "$out" = "vault-connection-operator $version" ] || die "${run[*]} --version said '$out', not 'vault-connection-operator $version'"
  echo "$out"
  rc=0; out=$(cd "$ROOT" && "${run[@]}" validate -f examples/ 2>&1) || rc=$?
  [ $rc -eq 0 ] || die "${run[*]} validate -f examples/ exited $rc: $out"
  printf 'validate -f examples/: %s\n%s\n' "$rc" "$out"
  rc=0; out=$(cd "$ROOT" && "${run[@]}" validate -R -f examples/ 2>&1) || rc=$?
  [ $rc -eq 1 ] || die "${run[*]} validate -R -f examples/ exited $rc, not 1: $out"
  for f in "$ROOT"/examples/invalid/*.yaml; do
    grep -q "^examples/invalid/${f##*/}:" <<<"$out" || die "${run[*]} validate found nothing wrong in examples/invalid/${f##*/}"
  done
  printf 'validate -R -f examples/: %s\n%s\n' "$rc" "$out"
}

# release_tls_smoke BINARY [RUNNER]: the binary's TLS stack (rustls on aws-lc-rs, the C the
# cross compiler built) works: `run`, pointed at hack/release/tls-probe.py as its API server,
# verifies the probe's P-256 certificate, sends its first request over TLS, reads the cluster id
# from the answer and logs "starting" with it. Prints the TLS version and cipher of that request.
release_tls_smoke() {
  local bin=$1 runner=${2:-} dir probe pid port started=false
  local run=("$bin"); [ -z "$runner" ] || run=("$runner" "$bin")
  dir=$(mktemp -d)
  # A CA and a server certificate it signs (webpki refuses a CA certificate as a server's).
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
      -subj /CN=tls-probe-ca -keyout "$dir/ca.key" -out "$dir/ca.pem"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=tls-probe \
      -keyout "$dir/key.pem" -out "$dir/server.csr"
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$dir/ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -days 1 \
      -extfile "$dir/ext" -out "$dir/cert.pem"
  } >/dev/null 2>&1 || die "openssl could not make the probe's certificates"
  python3 "$ROOT/hack/release/tls-probe.py" "$dir/cert.pem" "$dir/key.pem" "$dir/port" >"$dir/probe.log" 2>&1 &
  probe=$!
  for _ in $(seq 1 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
  port=$(cat "$dir/port" 2>/dev/null) || die "the TLS probe did not start: $(cat "$dir/probe.log")"
  cat >"$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: probe, cluster: {server: "https://127.0.0.1:$port", certificate-authority-data: "$(base64 -w0 "$dir/ca.pem")"}}]
users: [{name: probe, user: {token: probe}}]
contexts: [{name: probe, context: {cluster: probe, user: probe}}]
current-context: probe
KUBECONFIG
  KUBECONFIG=$dir/kubeconfig AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=probe AWS_SECRET_ACCESS_KEY=probe \
    AWS_EC2_METADATA_DISABLED=true "${run[@]}" run --metrics-addr "127.0.0.1:$(free_ports 1)" \
    --log-format text >"$dir/run.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    if grep -qs "starting.*0e0e0e0e-0000-4000-8000-0000000000a1" "$dir/run.log"; then started=true; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # SIGTERM, then SIGKILL: what matters here is the TLS exchange, not the shutdown (which, while
  # the first list of connections is still being retried, the operator does not finish).
  kill -TERM "$pid" "$probe" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" "$probe" 2>/dev/null || true
  if [ "$started" != true ]; then
    tail -n 20 "$dir/run.log" >&2
    rm -rf "$dir"
    die "${run[*]} run did not get the cluster id over TLS from the probe"
  fi
  echo "TLS: $(head -n1 "$dir/probe.log")"
  rm -rf "$dir"
}
