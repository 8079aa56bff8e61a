"""The order pytest-xdist hands test files to its workers (``make test``: ``-n 2 --dist loadfile``): the longest
first, so that no long file starts last while the other worker sits idle.  Seconds of one worker, from the
``--durations`` of a fresh-clone ``make test``; a file not named here weighs nothing and keeps its place."""

import os

FILE_SECONDS = {
    "tests/molecule/test_scenarios.py": 520,
    "tests/integration/test_upgrade_flows.py": 470,
    "tests/integration/test_many_databases.py": 420,
    "tests/integration/test_cutover_safety.py": 350,
    "tests/molecule/test_pgbouncer_scenario.py": 265,
    "tests/molecule/test_systemd_scenarios.py": 245,
    "tests/integration/test_fleet_runner.py": 195,
    "tests/integration/test_second_upgrade.py": 150,
    "tests/integration/test_bad_input.py": 150,
    "tests/integration/test_data_kinds.py": 130,
    "tests/integration/test_security.py": 120,
    "tests/integration/test_rollback_finalize_multidb.py": 100,
    "tests/integration/test_older_majors.py": 85,
    "tests/integration/test_installed_collection.py": 55,
}


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: -FILE_SECONDS.get(os.path.relpath(str(item.path), str(config.rootpath)), 0))
