# shellcheck shell=bash
# A throwaway OCI registry on loopback, for the length of one script: cosign signs and verifies
# only what a registry holds, so hack/release.sh pushes the image there to sign it, and
# hack/release/verify.sh pushes the release there to check it the way a user does with their own
# registry. distribution's `registry` (v$REGISTRY_VERSION), storage in a temporary directory,
# plain HTTP on 127.0.0.1, stopped by pid. Sourced after hack/testenv/lib.sh and
# hack/release/tools.sh.
#
#   registry_start         start it; sets REGISTRY (host:port)
#   registry_stop          stop it and remove its storage (callers trap it on EXIT)

REGISTRY=
REGISTRY_PID=
REGISTRY_TMP=

registry_start() {
  [ -x "$REGISTRY_DIR/bin/registry" ] || die "the registry is missing: run hack/testenv.sh install"
  local port
  REGISTRY_TMP=$(mktemp -d)
  port=$(free_ports 1)
  REGISTRY=127.0.0.1:$port
  cat >"$REGISTRY_TMP/config.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $REGISTRY_TMP/data}
http: {addr: $REGISTRY}
EOF
  # OTEL_TRACES_EXPORTER=none: registry v3 would otherwise try to export traces to localhost:4318.
  OTEL_TRACES_EXPORTER=none setsid "$REGISTRY_DIR/bin/registry" serve "$REGISTRY_TMP/config.yml" \
    </dev/null >"$REGISTRY_TMP/registry.log" 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://$REGISTRY/v2/" 2>/dev/null && return 0
    kill -0 "$REGISTRY_PID" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$REGISTRY_TMP/registry.log" >&2
  die "the registry did not start on $REGISTRY"
}

registry_stop() {
  if [ -n "$REGISTRY_PID" ] && kill -0 "$REGISTRY_PID" 2>/dev/null; then
    kill -TERM "$REGISTRY_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$REGISTRY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$REGISTRY_PID" 2>/dev/null || true
  fi
  REGISTRY_PID=
  [ -n "$REGISTRY_TMP" ] && rm -rf "$REGISTRY_TMP"
  REGISTRY_TMP=
}
