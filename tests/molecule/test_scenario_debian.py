"""Molecule scenario `debian`, run whole.
Debian's packaged PostgreSQL 15 (postgresql@15-main, a pg_cron job) on the systemd host,
upgraded with nothing but versions, archive and password, rebooted, rolled back."""
from scenario import SYSTEMD_IMAGE, run_scenario


def test_molecule_scenario_debian():
    run_scenario("debian", image=SYSTEMD_IMAGE)
