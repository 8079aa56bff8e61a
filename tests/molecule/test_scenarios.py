"""Every Molecule scenario, run whole (create, converge, idempotence, verify, destroy)."""
import glob
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")
SCENARIOS = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(ROOT, "molecule", "*", "molecule.yml")))
# Scenarios on the systemd test host (tests/images/pghost-systemd, built by make setup): Debian's
# packaged PostgreSQL (postgresql-common, postgresql@N-main) and a PGDG-style postgresql-16.service,
# each upgraded with nothing but versions, archive and password, rebooted and checked (debian also
# rolled back).
SYSTEMD_IMAGE = os.environ.get("FLEETDB_PGHOST_SYSTEMD_IMAGE", "fleetdb-test/pghost-systemd:latest")
SYSTEMD_SCENARIOS = {"debian", "pgdg"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    if scenario in SYSTEMD_SCENARIOS:
        image = subprocess.run(["docker", "image", "inspect", SYSTEMD_IMAGE], capture_output=True, check=False)
        assert image.returncode == 0, "%s is missing: run `make setup` (scripts/build-images.sh)" % SYSTEMD_IMAGE
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], ANSIBLE_NOCOLOR="1", NO_COLOR="1",
               ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    proc = subprocess.run([os.path.join(BIN, "molecule"), "test", "-s", scenario], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=2400, check=False)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "Found installed collection" not in line]
    assert proc.returncode == 0, "\n".join(lines[-150:])
