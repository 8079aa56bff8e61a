"""Every Molecule scenario on the plain test host, run whole (create, converge, idempotence, verify, destroy).
The scenarios on the systemd test host are in test_systemd_scenarios.py: a file of their own, so that pytest -n 2
(--dist loadfile) runs them beside these."""
import glob
import os

import pytest

from scenario import ROOT, run_scenario
from test_systemd_scenarios import SYSTEMD_SCENARIOS

SCENARIOS = sorted(name for name in (os.path.basename(os.path.dirname(p))
                                     for p in glob.glob(os.path.join(ROOT, "molecule", "*", "molecule.yml")))
                   if name not in SYSTEMD_SCENARIOS + ("pgbouncer",))  # test_pgbouncer_scenario.py


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    run_scenario(scenario)
