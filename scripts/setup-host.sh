#!/usr/bin/env bash
# Debian packages the controller needs: the Docker engine, debootstrap for the base image,
# the shared libraries of the PostgreSQL binary distributions (the benchmarks run them here), and
# PgBouncer for the benchmark's PgBouncer row (bench/gap.py starts its own; the service is not used), and
# gcc and make for the extensions scripts/fetch-postgres.sh builds into a release with PGXS (pg_cron).
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
packages=(docker.io debootstrap libicu72 libreadline8 libxml2 libzstd1 liblz4-1 libssl3 libgssapi-krb5-2 python3-venv shellcheck pgbouncer gcc make libc6-dev)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
  [[ $EUID -eq 0 ]] || die "run as root to install: ${missing[*]}"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
