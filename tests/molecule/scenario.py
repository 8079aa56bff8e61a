"""Running one Molecule scenario whole (create, converge, idempotence, verify, destroy), for the test files.

Each scenario has a test file of its own (tests/molecule/test_scenario_NAME.py), so that ``make test``'s
``pytest -n 2 --dist loadfile`` can run any two of them side by side."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")
# The systemd test host (tests/images/pghost-systemd, built by make setup): Debian's packaged PostgreSQL and a
# PGDG-style service run there.
SYSTEMD_IMAGE = os.environ.get("FLEETDB_PGHOST_SYSTEMD_IMAGE", "fleetdb-test/pghost-systemd:latest")


def run_scenario(scenario, image=None):
    if image:
        found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
        assert found.returncode == 0, "%s is missing: run `make setup` (scripts/build-images.sh)" % image
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], ANSIBLE_NOCOLOR="1", NO_COLOR="1",
               ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    proc = subprocess.run([os.path.join(BIN, "molecule"), "test", "-s", scenario], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=2400, check=False)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "Found installed collection" not in line]
    assert proc.returncode == 0, "\n".join(lines[-150:])
