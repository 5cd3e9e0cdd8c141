#!/usr/bin/env bash
# Checks a release directory (hack/release.sh OUT) the way a user does before installing it, with
# the commands the README gives ("Release artifacts and verification"), OUT/cosign.pub as the only
# key, and a throwaway registry on loopback standing in for the user's own:
#   1. the checksums (SHA256SUMS);
#   2. the chart's signature, and the image digest the chart pins (its image.digest default);
#   3. the image copied into the registry (`oras cp -r`, which carries the signatures along);
#   4. the signatures of the index and of each platform image (`cosign verify`);
#   5. the SBOM attestation (`cosign verify-attestation --type cyclonedx`), whose predicate must
#      be OUT/sbom.cdx.json.
#
#   hack/release/verify.sh OUT
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=hack/testenv/lib.sh
source "$ROOT/hack/testenv/lib.sh"
# shellcheck source=hack/release/tools.sh
source "$ROOT/hack/release/tools.sh"
# shellcheck source=hack/release/registry.sh
source "$ROOT/hack/release/registry.sh"
log() { printf '[verify %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
OUT=$(cd "${1:?usage: hack/release/verify.sh OUT}" && pwd)
COSIGN=$COSIGN_DIR/bin/cosign HELM=$HELM_DIR/bin/helm ORAS=$ORAS_DIR/bin/oras
NAME=vault-connection-operator
WORK=$(mktemp -d)
trap 'registry_stop; rm -rf "$WORK"' EXIT

(cd "$OUT" && sha256sum --check --quiet --strict SHA256SUMS) || die "SHA256SUMS does not match $OUT"
log "1. SHA256SUMS: $(wc -l <"$OUT/SHA256SUMS") files match"

CHART=$(find "$OUT" -maxdepth 1 -name "$NAME-*.tgz" | head -n1)
[ -n "$CHART" ] || die "no chart in $OUT"
VERSION=${CHART##*/"$NAME"-}; VERSION=${VERSION%.tgz}
quiet "$COSIGN" verify-blob --key "$OUT/cosign.pub" --insecure-ignore-tlog=true \
  --bundle "$CHART.sigstore.json" "$CHART"
DIGEST=$("$HELM" show values "$CHART" | sed -n 's/^  digest: "\(sha256:[0-9a-f]*\)"$/\1/p')
[ -n "$DIGEST" ] || die "the chart's values pin no image digest"
log "2. the chart ${CHART##*/} is signed by cosign.pub; its image.digest default is $DIGEST"

registry_start
REF=$REGISTRY/$NAME
quiet "$ORAS" cp --recursive --from-oci-layout "$OUT/image:$VERSION" --to-plain-http "$REF:$VERSION"
pushed=$(curl -fsSI -H 'Accept: application/vnd.oci.image.index.v1+json' \
  "http://$REGISTRY/v2/$NAME/manifests/$VERSION" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
[ "$pushed" = "$DIGEST" ] || die "the registry holds $pushed under $VERSION, the chart pins $DIGEST"
log "3. oras cp -r: $REF:$VERSION is $DIGEST"

verify() { "$COSIGN" verify --key "$OUT/cosign.pub" --insecure-ignore-tlog=true --allow-http-registry "$1" 2>"$WORK/err"; }
verify "$REF@$DIGEST" >"$WORK/index.json" || { cat "$WORK/err" >&2; die "the index signature does not verify"; }
grep -q "\"docker-manifest-digest\":\"$DIGEST\"" "$WORK/index.json" || die "the signature is not for $DIGEST"
platforms=$(python3 - "$OUT/image" "$DIGEST" <<'EOF'
import json, sys
layout, digest = sys.argv[1], sys.argv[2]
index = json.load(open(f"{layout}/blobs/sha256/{digest.split(':')[1]}"))
for m in index["manifests"]:
    print(m["platform"]["os"] + "/" + m["platform"]["architecture"], m["digest"])
EOF
)
while read -r platform digest; do
  verify "$REF@$digest" >/dev/null || { cat "$WORK/err" >&2; die "the $platform image ($digest) signature does not verify"; }
done <<<"$platforms"
log "4. cosign verify: the index and its $(wc -l <<<"$platforms") images ($(cut -d' ' -f1 <<<"$platforms" | tr '\n' ' ')) are signed by cosign.pub"

"$COSIGN" verify-attestation --key "$OUT/cosign.pub" --insecure-ignore-tlog=true --allow-http-registry \
  --type cyclonedx "$REF@$DIGEST" >"$WORK/att.json" 2>"$WORK/err" \
  || { cat "$WORK/err" >&2; die "the SBOM attestation does not verify"; }
python3 - "$WORK/att.json" "$OUT/sbom.cdx.json" <<'EOF' || die "the attested SBOM is not OUT/sbom.cdx.json"
import base64, json, sys
envelope = json.loads(open(sys.argv[1]).readline())
statement = json.loads(base64.b64decode(envelope["payload"]))
assert statement["predicateType"] == "https://cyclonedx.org/bom", statement["predicateType"]
assert statement["predicate"] == json.load(open(sys.argv[2])), "predicate differs"
EOF
log "5. cosign verify-attestation: the CycloneDX SBOM attested on $DIGEST is sbom.cdx.json"
