"""Molecule scenario `fleet`, run whole.
Three PostgreSQL 16 hosts with their own writers, upgraded in waves (serial); the unfit
one is stopped by preflight before anything changes on it while the others are upgraded."""
from scenario import run_scenario


def test_molecule_scenario_fleet():
    run_scenario("fleet")
