#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection laid out as ansible_collections/fleetdb/online_upgrade
# (ansible-test insists on that path). Extra arguments go to ansible-test.
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
# Outside the checkout (ansible-test skips files git ignores), one tree per checkout.
tree="$FLEETDB_CACHE/sanity/$(printf %s "$FLEETDB_ROOT" | sha256sum | cut -c1-8)/ansible_collections/fleetdb/online_upgrade"
rm -rf "$tree" && mkdir -p "$tree"
cd "$FLEETDB_ROOT" || exit 1
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$tree"
cd "$tree" || exit 1
# ansible-test bootstraps pip in its venvs with a get-pip script from ci-files.testing.ansible.com,
# which this network does not reach: stand in with the interpreter's own ensurepip.
pip_version="$(grep -oP "^\s+pip='\K[0-9.]+" "$("$FLEETDB_ROOT/.venv/bin/python" -c \
  'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py")"
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [[ ! -f "$get_pip" ]]; then
  mkdir -p "$(dirname "$get_pip")"
  cat > "$get_pip" <<'PY'
# Written by fleetdb scripts/sanity.sh: installs pip with ensurepip, then pip installs the arguments.
import runpy, subprocess, sys
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
sys.argv = ["pip", "install"] + [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
PY
fi
python_version="$("$FLEETDB_ROOT/.venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
exec "$FLEETDB_ROOT/.venv/bin/ansible-test" sanity --venv --requirements --python "$python_version" --color no "$@"
