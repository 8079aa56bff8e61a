# shellcheck shell=bash
# Shared settings of the setup scripts. Sourced, not run.
set -euo pipefail
FLEETDB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FLEETDB_CACHE="${FLEETDB_CACHE:-/var/cache/fleetdb-online-upgrade}"
export FLEETDB_ROOT FLEETDB_CACHE
mkdir -p "$FLEETDB_CACHE"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# hash_of FILE... : a short hash of the files' contents, to key a cache by its recipe.
hash_of() { cat "$@" | sha256sum | cut -c1-12; }

# A Python that can build the virtualenv (3.11 or newer).
python_bin() {
  local py
  for py in python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$py"; return
    fi
  done
  die "Python 3.11 or newer is needed (apt-get install python3 python3-venv)"
}
