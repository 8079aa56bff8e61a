"""The pgbouncer scenario (clients through Debian's PgBouncer, paused at the cutover): a file of its own, so that
pytest -n 2 (--dist loadfile) runs it beside the other scenarios."""
from scenario import run_scenario


def test_molecule_scenario_pgbouncer():
    run_scenario("pgbouncer")
