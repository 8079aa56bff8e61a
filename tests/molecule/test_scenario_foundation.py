"""Molecule scenario `foundation`, run whole.
The four foundation modules in a playbook: PostgreSQL 16 from a binary archive and 15
from the Debian package, side by side in one test host, each with its instance, port and server."""
from scenario import run_scenario


def test_molecule_scenario_foundation():
    run_scenario("foundation")
