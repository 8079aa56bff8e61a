"""Molecule scenario `default`, run whole.
A PostgreSQL 16 host with 1 million rows and four writers on the controller,
upgraded to 18 by playbooks/upgrade.yml; no acknowledged write lost."""
from scenario import run_scenario


def test_molecule_scenario_default():
    run_scenario("default")
