"""Molecule scenario `physical`, run whole.
The physical initial copy under four writers, the controller killed during the base backup
and during pg_upgrade, the third run finishing; no acknowledged write lost; then a rollback to 16."""
from scenario import run_scenario


def test_molecule_scenario_physical():
    run_scenario("physical")
