"""Molecule scenario `pgbouncer`, run whole.
Clients only through Debian's PgBouncer: a cutover that cannot PAUSE aborts and
RESUMEs, then the upgrade 16 -> 18 with the pooler PAUSEd at the cutover."""
from scenario import run_scenario


def test_molecule_scenario_pgbouncer():
    run_scenario("pgbouncer")
