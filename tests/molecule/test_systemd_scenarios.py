"""Scenarios on the systemd test host (tests/images/pghost-systemd, built by make setup): Debian's packaged
PostgreSQL (postgresql-common, postgresql@N-main) and a PGDG-style postgresql-16.service, each upgraded with
nothing but versions, archive and password, rebooted and checked (debian also rolled back)."""
import os
import subprocess

import pytest

from scenario import run_scenario

SYSTEMD_IMAGE = os.environ.get("FLEETDB_PGHOST_SYSTEMD_IMAGE", "fleetdb-test/pghost-systemd:latest")
SYSTEMD_SCENARIOS = ("debian", "pgdg")


@pytest.mark.parametrize("scenario", SYSTEMD_SCENARIOS)
def test_systemd_scenario(scenario):
    image = subprocess.run(["docker", "image", "inspect", SYSTEMD_IMAGE], capture_output=True, check=False)
    assert image.returncode == 0, "%s is missing: run `make setup` (scripts/build-images.sh)" % SYSTEMD_IMAGE
    run_scenario(scenario)
