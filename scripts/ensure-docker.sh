#!/usr/bin/env bash
# Make sure a Docker engine answers. An engine that already runs is left alone;
# otherwise Debian's dockerd is started in the background (log: /var/log/fleetdb-dockerd.log).
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
docker info >/dev/null 2>&1 && exit 0
command -v dockerd >/dev/null || die "dockerd not found: run scripts/setup-host.sh (apt-get install docker.io)"
log "starting dockerd"
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  systemctl start docker || true
fi
if ! docker info >/dev/null 2>&1; then
  # its own session: a signal to the process group of whoever ran make setup must not reach the engine
  setsid nohup dockerd >/var/log/fleetdb-dockerd.log 2>&1 < /dev/null &
fi
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
tail -20 /var/log/fleetdb-dockerd.log >&2 || true
die "dockerd did not answer within 30 s (see /var/log/fleetdb-dockerd.log)"
