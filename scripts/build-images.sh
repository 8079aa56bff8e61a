#!/usr/bin/env bash
# Build the test-host images from scratch: debootstrap Debian 12 -> docker import -> Dockerfile,
# then the systemd test host on top of the test host (tests/images/pghost-systemd/Dockerfile), and a Debian 11
# test host with PostgreSQL 13 (tests/images/pghost-bullseye/Dockerfile).
# Every image is tagged by a hash of its recipe (and of the image it is built on), so a second
# run only checks the tags. Prints the test-host image names (also tagged
# fleetdb-test/pghost:latest, fleetdb-test/pghost-systemd:latest and fleetdb-test/pghost-bullseye:latest).
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
MIRROR="${FLEETDB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
recipe_base="$(printf 'bookworm minbase %s v1' "$MIRROR" | sha256sum | cut -c1-12)"
base="fleetdb-test/debian12-base:$recipe_base"
pghost="fleetdb-test/pghost:$(printf '%s %s' "$recipe_base" "$(hash_of "$FLEETDB_ROOT/tests/images/pghost/Dockerfile")" | sha256sum | cut -c1-12)"
systemd="fleetdb-test/pghost-systemd:$(printf '%s %s' "$pghost" "$(hash_of "$FLEETDB_ROOT"/tests/images/pghost-systemd/*)" | sha256sum | cut -c1-12)"

if ! docker image inspect "$base" >/dev/null 2>&1; then
  log "building $base with debootstrap (about a minute)"
  rootfs="$(mktemp -d /var/tmp/fleetdb-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$FLEETDB_CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$FLEETDB_CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $FLEETDB_CACHE/debootstrap.log)"; }
  echo "deb $MIRROR bookworm-updates main" >> "$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
fi

if ! docker image inspect "$pghost" >/dev/null 2>&1; then
  log "building $pghost"
  docker build --quiet --network host --build-arg BASE="$base" -t "$pghost" \
    "$FLEETDB_ROOT/tests/images/pghost" >/dev/null
fi
docker tag "$pghost" fleetdb-test/pghost:latest

if ! docker image inspect "$systemd" >/dev/null 2>&1; then
  log "building $systemd (systemd, Debian's postgresql-15 and pgBackRest built from source, about 3 minutes)"
  docker build --quiet --network host --build-arg PGHOST="$pghost" -t "$systemd" \
    "$FLEETDB_ROOT/tests/images/pghost-systemd" >/dev/null
fi
docker tag "$systemd" fleetdb-test/pghost-systemd:latest

# Debian 11 (bullseye) with its postgresql-13: the oldest major a test host serves (refused by preflight).
build_bullseye() {
  local recipe image rootfs
  recipe="$(printf 'bullseye minbase %s v1' "$MIRROR" | sha256sum | cut -c1-12)"
  local base11="fleetdb-test/debian11-base:$recipe"
  image="fleetdb-test/pghost-bullseye:$(printf '%s %s' "$recipe" "$(hash_of "$FLEETDB_ROOT/tests/images/pghost-bullseye/Dockerfile")" | sha256sum | cut -c1-12)"
  if ! docker image inspect "$base11" >/dev/null 2>&1; then
    log "building $base11 with debootstrap (about a minute)"
    rootfs="$(mktemp -d /var/tmp/fleetdb-rootfs11.XXXXXX)"
    debootstrap --variant=minbase bullseye "$rootfs" "$MIRROR" >"$FLEETDB_CACHE/debootstrap-bullseye.log" 2>&1 \
      || { rm -rf "$rootfs"; tail -20 "$FLEETDB_CACHE/debootstrap-bullseye.log" >&2; die "debootstrap bullseye failed (log: $FLEETDB_CACHE/debootstrap-bullseye.log)"; }
    echo "deb $MIRROR bullseye-updates main" >> "$rootfs/etc/apt/sources.list"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$base11" >/dev/null
    rm -rf "$rootfs"
  fi
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    log "building $image (Debian's postgresql-13)"
    docker build --quiet --network host --build-arg BASE="$base11" -t "$image" \
      "$FLEETDB_ROOT/tests/images/pghost-bullseye" >/dev/null
  fi
  docker tag "$image" fleetdb-test/pghost-bullseye:latest
  echo "$image"
}

echo "$pghost"
echo "$systemd"
build_bullseye
