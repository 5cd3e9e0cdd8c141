#!/usr/bin/env bash
# Regenerates the committed CRD files from the Rust types. CI fails when they drift
# (tests/crd.rs), so run this after changing src/api.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo run --quiet -- crd >crds/vaultconnections.yaml
mkdir -p charts/vault-connection-operator/files
cp crds/vaultconnections.yaml charts/vault-connection-operator/files/crd.yaml
echo "wrote crds/vaultconnections.yaml and charts/vault-connection-operator/files/crd.yaml"
