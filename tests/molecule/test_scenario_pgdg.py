"""Molecule scenario `pgdg`, run whole.
A PGDG-style postgresql-16.service on the systemd host, upgraded with nothing but
versions, archive and password, rebooted."""
from scenario import SYSTEMD_IMAGE, run_scenario


def test_molecule_scenario_pgdg():
    run_scenario("pgdg", image=SYSTEMD_IMAGE)
