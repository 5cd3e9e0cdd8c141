#!/usr/bin/env bash
# The supply-chain check: `cargo deny check` with deny.toml (advisories, licenses, bans, sources),
# offline, against the RustSec advisory database snapshot committed in hack/advisory-db/.
#
#   hack/deny.sh [CHECK...]          cargo deny check (all checks, or those named: advisories,
#                                    licenses, bans, sources)
#   hack/deny.sh import-snapshot DIR replace the committed snapshot with the advisory database in
#                                    DIR: a git checkout of github.com/rustsec/advisory-db, or a
#                                    copy of its data files with a SNAPSHOT file (lines
#                                    `commit SHA` and `date ISO-8601`); then commit the result
#
# Why a committed snapshot: no package registry serves the advisory database and CI cannot reach
# its git host, so a check that fetched it could not run here; and a check whose data is pinned
# by the commit gives the same answer on every run of that commit. It is small (~300 KB as
# xz), public domain (CC0-1.0), and refreshed like any other pinned version: import a newer copy
# and commit it. deny.toml's maximum-db-staleness makes the check fail once the snapshot is too
# old to trust, so a forgotten refresh is noticed.
#
# cargo-deny reads a database from a git repository under db-path (deny.toml: target/advisory-db,
# relative to the repository) named after its URL: advisory-db-3157b0e258782691 for the default
# https://github.com/rustsec/advisory-db (cargo-deny's url_to_db_path: the last path segment and
# an xxHash64 of the URL). The snapshot is unpacked there and committed with its own date, and
# .git/HEAD gets that date as well: cargo-deny measures staleness by it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/testenv/lib.sh
source "$ROOT/hack/testenv/lib.sh"
# shellcheck source=hack/release/tools.sh
source "$ROOT/hack/release/tools.sh"
cd "$ROOT"
log() { printf '[deny %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
SNAPSHOT_DIR=$ROOT/hack/advisory-db
DB_ROOT=$ROOT/target/advisory-db
DB_DIR=$DB_ROOT/advisory-db-3157b0e258782691

snapshot_field() { sed -n "s/^$1 *//p" "$SNAPSHOT_DIR/SNAPSHOT" | head -n1; }

import_snapshot() {
  local src=$1 commit date tmp
  [ -d "$src/crates" ] || die "$src does not look like the advisory database (no crates/ directory)"
  if git -C "$src" rev-parse --verify -q HEAD >/dev/null 2>&1; then
    commit=$(git -C "$src" rev-parse HEAD)
    date=$(git -C "$src" show -s --format=%cI HEAD)
  elif [ -f "$src/SNAPSHOT" ]; then
    commit=$(sed -n 's/^commit *//p' "$src/SNAPSHOT" | head -n1)
    date=$(sed -n 's/^date *//p' "$src/SNAPSHOT" | head -n1)
  else
    die "$src is neither a git checkout nor a snapshot with a SNAPSHOT file naming its commit and date"
  fi
  [ -n "$commit" ] && [ -n "$date" ] || die "could not read the commit and date of $src"
  tmp=$(mktemp -d)
  # Data only, in a fixed order with fixed owners and times: the same database gives the same file.
  (cd "$src" && find crates rust -name '*.md' -print0 | LC_ALL=C sort -z >"$tmp/list")
  (cd "$src" && tar --null --files-from="$tmp/list" --no-recursion --owner=0 --group=0 --numeric-owner --mode=u=rw,go=r \
    --mtime="$date" --format=ustar -cf - LICENSE.txt support.toml) | xz -9 -T1 >"$tmp/advisory-db.tar.xz"
  mkdir -p "$SNAPSHOT_DIR"
  mv "$tmp/advisory-db.tar.xz" "$SNAPSHOT_DIR/advisory-db.tar.xz"
  cat >"$SNAPSHOT_DIR/SNAPSHOT" <<EOF
source  https://github.com/rustsec/advisory-db
commit  $commit
date    $date
license CC0-1.0 (the database's own LICENSE.txt is inside the archive)
files   $(tr -cd '\0' <"$tmp/list" | wc -c) advisories, advisory-db.tar.xz sha256 $(sha256sum "$SNAPSHOT_DIR/advisory-db.tar.xz" | cut -d' ' -f1)
EOF
  rm -rf "$tmp"
  log "imported advisory database $commit ($date) into hack/advisory-db/; commit it"
}

# unpack: the committed snapshot as the git repository cargo-deny reads, rebuilt when it changes.
unpack() {
  local sum date
  sum=$(sha256sum "$SNAPSHOT_DIR/advisory-db.tar.xz" | cut -d' ' -f1)
  [ "$(cat "$DB_DIR/.snapshot-sha256" 2>/dev/null)" = "$sum" ] && return 0
  date=$(snapshot_field date)
  rm -rf "$DB_DIR" && mkdir -p "$DB_DIR"
  xz -dc "$SNAPSHOT_DIR/advisory-db.tar.xz" | tar -C "$DB_DIR" -xf -
  (
    cd "$DB_DIR"
    export GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date
    git -c init.defaultBranch=main init -q .
    git add -A
    git -c user.name=hack/deny.sh -c user.email=deny@localhost commit -q -m "snapshot $(snapshot_field commit)"
    touch -d "$date" .git/HEAD
  )
  echo "$sum" >"$DB_DIR/.snapshot-sha256"
}

case "${1:-}" in
  import-snapshot)
    [ $# -eq 2 ] || die "usage: hack/deny.sh import-snapshot DIR"
    import_snapshot "$2"
    exit 0 ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 0 ;;
esac

[ -x "$CARGO_DENY_DIR/bin/cargo-deny" ] || die "cargo-deny is missing: run hack/testenv.sh install"
[ -f "$SNAPSHOT_DIR/advisory-db.tar.xz" ] || die "no advisory database snapshot in hack/advisory-db/"
unpack
age=$(( ($(date +%s) - $(date -d "$(snapshot_field date)" +%s)) / 86400 ))
log "cargo deny check ${*:-all} (advisory database $(snapshot_field commit | cut -c1-12) of $(snapshot_field date), $age days old)"
# cargo-deny reads `cargo metadata`, which needs every locked crate of every platform on disk; a
# build downloads only this platform's, so on a fresh machine the Windows- and wasm-only crates
# are missing. Fetch them (from crates.io, as any build does) before the offline check.
cargo fetch --locked --quiet
# --offline: no fetch of the database or of anything else; --locked: Cargo.lock as committed.
"$CARGO_DENY_DIR/bin/cargo-deny" --offline --locked check "$@"
