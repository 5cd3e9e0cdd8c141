#!/usr/bin/env bash
# The release, built from the checkout with nothing pulled: in OUT, everything a user installs
# and everything they need to check it first.
#
#   hack/release.sh [--key KEY] [--allow-dirty] OUT
#
#   OUT/image/                     OCI layout: the image index (linux/amd64, linux/arm64) named
#                                  VERSION, its platform images, and the signatures and the SBOM
#                                  attestation as OCI referrers (cosign bundles)
#   OUT/vault-connection-operator-VERSION.tgz
#                                  the Helm chart, its image.digest default set to the index digest
#   OUT/vault-connection-operator-VERSION.tgz.sigstore.json   the chart's signature (cosign bundle)
#   OUT/install.yaml               deploy/install.yaml rendered from that chart (image by digest)
#   OUT/sbom.cdx.json              CycloneDX SBOM: every crate in the two binaries
#   OUT/cosign.pub                 the public key everything verifies with
#   OUT/BUILDINFO                  the inputs: commit, toolchains, tool and package versions
#   OUT/SHA256SUMS                 checksums of all of the above
#
#   --key KEY      sign with KEY: a cosign private key file (its password in COSIGN_PASSWORD) or a
#                  KMS URI cosign understands (awskms://..., hashivault://...). Default: a key pair
#                  made for this release; its private half lives in a temporary directory and is
#                  deleted when the release is signed, so only OUT/cosign.pub remains.
#   --allow-dirty  release a working tree with uncommitted changes (for CI runs on a developer's
#                  tree); the revision label then ends in -dirty and the result is not a release.
#
# Reproducible: two runs on the same commit give the same index digest. The binaries are pinned as
# hack/release/build.sh says (compiler, paths, symbols, Cargo.lock); the image by hack/oci (the
# commit's time as the creation time of the image and its files, owner 0:0, a fixed file order,
# Go's gzip) and by its inputs: the Debian CA bundle and musl-gcc (BUILDINFO lists their
# versions). Signatures differ between runs: ECDSA signatures are randomised, and each run makes
# its own key unless given one.
#
# Signing needs a registry (cosign signs only what one holds): the image is pushed to a throwaway
# one on loopback (with oras), signed there (the index and each platform image), attested with the
# SBOM, and copied back with its signatures into OUT/image. Nothing is uploaded to a transparency
# log (none is reachable here); users verify with the key (see the README, "Release artifacts and
# verification"). Last, hack/release/verify.sh checks OUT as a user would: copied into a second,
# empty registry and verified there with OUT/cosign.pub.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/testenv/lib.sh
source "$ROOT/hack/testenv/lib.sh"
# shellcheck source=hack/testenv/install.sh
source "$ROOT/hack/testenv/install.sh"
# shellcheck source=hack/release/build.sh
source "$ROOT/hack/release/build.sh"
# shellcheck source=hack/release/registry.sh
source "$ROOT/hack/release/registry.sh"
log() { printf '[release %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cd "$ROOT"

KEY='' ALLOW_DIRTY=false OUT=''
while [ $# -gt 0 ]; do
  case "$1" in
    --key) KEY=${2:?--key needs a value}; shift 2 ;;
    --allow-dirty) ALLOW_DIRTY=true; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 0 ;;
    -*) die "unknown option $1 (see hack/release.sh --help)" ;;
    *) [ -z "$OUT" ] || die "one OUT directory"; OUT=$1; shift ;;
  esac
done
[ -n "$OUT" ] || die "usage: hack/release.sh [--key KEY] [--allow-dirty] OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -z "$(ls -A "$OUT")" ] || die "$OUT is not empty: a release is written to a new or empty directory"

# ---- what is released ---------------------------------------------------------------------------
NAME=vault-connection-operator
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
CHART_SRC=charts/$NAME
for field in version appVersion; do
  v=$(sed -n "s/^$field: *\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$CHART_SRC/Chart.yaml")
  [ "$v" = "$VERSION" ] || die "$CHART_SRC/Chart.yaml $field is '$v', Cargo.toml's version is '$VERSION': make them equal"
done
REVISION=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=normal)" ]; then
  [ "$ALLOW_DIRTY" = true ] || die "the working tree has uncommitted changes: commit them (or --allow-dirty for a test run)"
  log "warning: uncommitted changes; this is a test run, not a release"
  REVISION=$REVISION-dirty
fi
# The commit's time stands for "when": the same commit gives the same image.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
SOURCE=$(sed -n 's/^repository = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
LICENSE=$(sed -n 's/^license = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
DESCRIPTION=$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[ -n "$SOURCE" ] && [ -n "$LICENSE" ] || die "Cargo.toml needs repository and license"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[ -f "$CA_BUNDLE" ] || die "$CA_BUNDLE is missing: apt-get install ca-certificates"
command -v qemu-aarch64-static >/dev/null || die "qemu-aarch64-static is missing: apt-get install qemu-user-static"
log "releasing $NAME $VERSION, revision $REVISION ($CREATED) into $OUT"

# ---- tools (cached per version; the first run builds them) -------------------------------------
t=$SECONDS
install_helm
install_release_tools
COSIGN=$COSIGN_DIR/bin/cosign HELM=$HELM_DIR/bin/helm OCI=$OCI_DIR/bin/vco-oci ORAS=$ORAS_DIR/bin/oras
for tool in "$CARGO_CYCLONEDX_DIR/bin/cargo-cyclonedx" "$COSIGN" "$OCI" "$HELM" "$ORAS"; do
  [ -x "$tool" ] || die "$tool is missing after the install"
done
log "tools ready in $((SECONDS - t))s"

# ---- the binaries, and proof that both run --------------------------------------------------------
WORK=$(mktemp -d)
cleanup() { registry_stop; rm -rf "$WORK"; rm -f "$ROOT/${NAME}"_bin_*.cdx.json; }
trap cleanup EXIT
t=$SECONDS
AMD64=$(release_build x86_64-unknown-linux-musl)
ARM64=$(release_build aarch64-unknown-linux-musl)
# One build context per platform, as the Dockerfile expects: the binary and the CA bundle.
for arch in amd64 arm64; do mkdir -p "$WORK/context-$arch" && cp "$CA_BUNDLE" "$WORK/context-$arch/"; done
cp "$AMD64" "$WORK/context-amd64/$NAME" && cp "$ARM64" "$WORK/context-arm64/$NAME"
cp "$AMD64" "$WORK/amd64" && cp "$ARM64" "$WORK/arm64"
log "binaries built in $((SECONDS - t))s; running them (arm64 under qemu-aarch64-static)"
{ release_smoke "$WORK/amd64" && release_tls_smoke "$WORK/amd64"; } >"$WORK/smoke-amd64"
{ release_smoke "$WORK/arm64" qemu-aarch64-static && release_tls_smoke "$WORK/arm64" qemu-aarch64-static; } >"$WORK/smoke-arm64"
cmp -s "$WORK/smoke-amd64" "$WORK/smoke-arm64" \
  || { diff "$WORK/smoke-amd64" "$WORK/smoke-arm64" >&2; die "the arm64 binary answers differently from the amd64 one"; }
log "  both print '$(head -n1 "$WORK/smoke-amd64")', judge the examples and the $(find examples/invalid -name '*.yaml' | wc -l) invalid ones alike, and get the cluster id over $(sed -n 's/^TLS: \([^ ]* [^ ]*\).*/\1/p' "$WORK/smoke-amd64")"

# ---- the SBOM, checked against what the binaries say they contain -------------------------------
t=$SECONDS
for target in "${RELEASE_TARGETS[@]}"; do
  # cargo cyclonedx writes next to Cargo.toml; SOURCE_DATE_EPOCH fixes its timestamp.
  PATH="$CARGO_CYCLONEDX_DIR/bin:$PATH" cargo cyclonedx --quiet --format json --spec-version 1.5 \
    --describe binaries --target "$target" --target-in-filename --no-build-deps >&2
  mv "${NAME}_bin_$target.cdx.json" "$WORK/sbom-$target.json"
done
python3 "$ROOT/hack/release/artifacts.py" sbom-merge "$WORK/sbom-x86_64-unknown-linux-musl.json" \
  "$WORK/sbom-aarch64-unknown-linux-musl.json" >"$OUT/sbom.cdx.json"
python3 "$ROOT/hack/release/artifacts.py" sbom-covers "$OUT/sbom.cdx.json" "$WORK/amd64" "$WORK/arm64" >&2
log "SBOM in $((SECONDS - t))s: $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["components"]))' "$OUT/sbom.cdx.json") components"

# ---- the image ---------------------------------------------------------------------------------------
labels=(
  "org.opencontainers.image.title=$NAME"
  "org.opencontainers.image.description=$DESCRIPTION"
  "org.opencontainers.image.source=$SOURCE"
  "org.opencontainers.image.url=$SOURCE"
  "org.opencontainers.image.revision=$REVISION"
  "org.opencontainers.image.version=$VERSION"
  "org.opencontainers.image.licenses=$LICENSE"
  "org.opencontainers.image.created=$CREATED"
)
label_args=(); for l in "${labels[@]}"; do label_args+=(-label "$l"); done
oci_build() {
  "$OCI" build -dockerfile Dockerfile -out "$1" -tag "$VERSION" -created "$CREATED" "${label_args[@]}" \
    "linux/amd64=$WORK/context-amd64" "linux/arm64=$WORK/context-arm64"
}
DIGEST=$(oci_build "$OUT/image")
# The same inputs must give the same image: build it again and compare (seconds).
[ "$(oci_build "$WORK/image-again")" = "$DIGEST" ] || die "hack/oci gave two digests for the same inputs"
log "image index $DIGEST (linux/amd64, linux/arm64), OCI layout $OUT/image"

# ---- the chart, pinned to that digest, and install.yaml from it -------------------------------------
cp -r "$CHART_SRC" "$WORK/chart"
python3 "$ROOT/hack/release/artifacts.py" pin-chart "$WORK/chart/values.yaml" "$DIGEST"
"$HELM" lint --quiet "$WORK/chart" >/dev/null
"$HELM" package "$WORK/chart" --destination "$OUT" >/dev/null
CHART=$OUT/$NAME-$VERSION.tgz
[ -f "$CHART" ] || die "helm package did not write $CHART"
HELM=$HELM hack/gen-install.sh --chart "$CHART" --stdout >"$OUT/install.yaml"
grep -q "image: \".*@$DIGEST\"" "$OUT/install.yaml" || die "install.yaml does not pin the image by $DIGEST"
log "chart $CHART (image.digest $DIGEST) and install.yaml"

# ---- signatures ------------------------------------------------------------------------------------
# cosign signs offline: no transparency log upload and no signing config from Sigstore's TUF
# repository (neither is reachable here); the verifiers say --insecure-ignore-tlog for the same reason.
SIGN_FLAGS=(--tlog-upload=false --use-signing-config=false)
export COSIGN_YES=true
if [ -z "$KEY" ]; then
  (cd "$WORK" && COSIGN_PASSWORD=${COSIGN_PASSWORD:-} "$COSIGN" generate-key-pair >/dev/null 2>&1) \
    || die "cosign generate-key-pair failed"
  KEY=$WORK/cosign.key
  export COSIGN_PASSWORD=${COSIGN_PASSWORD:-}
  log "signing with a key pair made for this release (the private key is deleted afterwards)"
fi
"$COSIGN" public-key --key "$KEY" >"$OUT/cosign.pub" 2>/dev/null || die "cosign public-key --key $KEY failed"
registry_start
REF=$REGISTRY/$NAME
quiet "$ORAS" cp --recursive --from-oci-layout "$OUT/image:$VERSION" --to-plain-http "$REF:$VERSION"
quiet "$COSIGN" sign --key "$KEY" "${SIGN_FLAGS[@]}" --recursive --allow-http-registry "$REF@$DIGEST"
quiet "$COSIGN" attest --key "$KEY" "${SIGN_FLAGS[@]}" --allow-http-registry --type cyclonedx \
  --predicate "$OUT/sbom.cdx.json" "$REF@$DIGEST"
# Back into the layout: the same index, now with its referrers (the signature and attestation
# bundles), so a user's `oras cp -r` carries them to their registry.
quiet "$ORAS" cp --recursive --from-plain-http "$REF:$VERSION" --to-oci-layout "$OUT/image:$VERSION"
quiet "$COSIGN" sign-blob --key "$KEY" "${SIGN_FLAGS[@]}" --bundle "$CHART.sigstore.json" "$CHART"
chmod 0644 "$CHART.sigstore.json"   # cosign writes it 0600; it is published like the chart
registry_stop
log "signed the index, both platform images and the chart; attested the SBOM"

# ---- what it was built with, and checksums ------------------------------------------------------
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }
cat >"$OUT/BUILDINFO" <<EOF
name          $NAME
version       $VERSION
revision      $REVISION
created       $CREATED
index         $DIGEST
rustc         $(rustc +"$RUST_RELEASE_VERSION" -V)
tools         cargo-auditable $CARGO_AUDITABLE_VERSION, cargo-zigbuild $CARGO_ZIGBUILD_VERSION, zig $ZIG_VERSION, cargo-cyclonedx $CARGO_CYCLONEDX_VERSION, cosign $COSIGN_VERSION, oras $ORAS_VERSION, helm $HELM_VERSION
go            $(go env GOVERSION) (hack/oci: $(basename "$OCI_DIR"))
debian        musl-tools $(pkgver musl-tools), ca-certificates $(pkgver ca-certificates), qemu-user-static $(pkgver qemu-user-static)
EOF
(cd "$OUT" && find . -type f -printf "%P\n" | LC_ALL=C sort | xargs sha256sum >"$WORK/SHA256SUMS")
mv "$WORK/SHA256SUMS" "$OUT/SHA256SUMS"

hack/release/verify.sh "$OUT"
log "done: $NAME $VERSION, index $DIGEST, in $OUT"
echo "$DIGEST"
