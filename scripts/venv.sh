#!/usr/bin/env bash
# The controller's virtualenv with the pinned Python dependencies, cached by a hash of
# requirements/controller.txt and linked as .venv.
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
py="$(python_bin)"
key="$(printf '%s %s' "$("$py" -c 'import sys; print(sys.version)')" "$(hash_of "$FLEETDB_ROOT/requirements/controller.txt")" | sha256sum | cut -c1-12)"
venv="$FLEETDB_CACHE/venv-$key"
if [[ ! -x "$venv/bin/ansible-playbook" ]]; then
  log "creating the virtualenv $venv"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$FLEETDB_ROOT/requirements/controller.txt" \
    2> >(grep -v "is ignored: it is neither" >&2)
fi
ln -sfn "$venv" "$FLEETDB_ROOT/.venv"
# The collection is used from the working tree: .cache/collections/ansible_collections/fleetdb/online_upgrade -> .
mkdir -p "$FLEETDB_ROOT/.cache/collections/ansible_collections/fleetdb"
ln -sfn ../../../.. "$FLEETDB_ROOT/.cache/collections/ansible_collections/fleetdb/online_upgrade"
