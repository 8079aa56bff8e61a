"""Which replication slots on the old server are the upgrade's own: its fleetdb_* slots, and the table-sync
slots its new server's subscriptions leave when that server stops in the middle of the copy."""
import os
import struct

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight import PostgresPreflight
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import system_identifier

SYSTEM_ID = 7714407194255615608


def preflight(new_data_dir):
    return PostgresPreflight(None, None, "18", new_data_dir, [], "replication", 15432, 5433)


def new_data_dir(tmp_path):
    os.makedirs(str(tmp_path / "global"))
    (tmp_path / "global" / "pg_control").write_bytes(struct.pack("=Q", SYSTEM_ID) + b"\0" * 8184)
    return str(tmp_path)


def test_system_identifier_is_read_from_pg_control(tmp_path):
    assert system_identifier(new_data_dir(tmp_path)) == SYSTEM_ID
    assert system_identifier(str(tmp_path / "missing")) is None


def test_the_new_servers_table_sync_slots_are_ours(tmp_path):
    check = preflight(new_data_dir(tmp_path))
    assert check._ours("fleetdb_upgrade_app")
    assert check._ours("pg_16513_sync_16398_%d" % SYSTEM_ID)


def test_another_subscribers_slots_are_not(tmp_path):
    check = preflight(new_data_dir(tmp_path))
    assert not check._ours("pg_16513_sync_16398_%d" % (SYSTEM_ID + 1))
    assert not check._ours("debezium")
    assert not preflight(str(tmp_path / "missing"))._ours("pg_16513_sync_16398_%d" % SYSTEM_ID)


def test_the_physical_copys_rate_limit_is_one_pg_basebackup_takes():
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.physical_copy import max_rate_problem
    for fine in (None, "", "32", "200M", "1024M", "512k", "1048576"):
        assert max_rate_problem(fine) is None, fine
    for wrong in ("fast", "31", "1025M", "0", "20 M", "20MB", "-5", "1.5M"):
        assert "is not a rate pg_basebackup takes" in max_rate_problem(wrong), wrong


def test_what_an_old_server_before_14_lacks():
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication import (
        source_lacks, source_version_problem)
    assert source_lacks(14) == [] and source_version_problem(15) is None
    assert [what.split(" ")[0] for what in source_lacks(13)] == ["pg_stat_progress_copy"]
    assert [what.split(" ")[0] for what in source_lacks(12)] == [
        "publish_via_partition_root", "pg_current_xact_id()", "pg_stat_progress_copy"]
    assert source_version_problem(12).startswith("PostgreSQL 12, older than 14, the oldest major")


def test_a_subscriptions_password_never_reaches_the_fix():
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_replication import (
        without_password)
    assert without_password("host=pub port=5432 password='s3 cret' dbname=feed") == \
        "host=pub port=5432 password=<its password> dbname=feed"
    assert without_password("host=pub password=s3cret") == "host=pub password=<its password>"
    assert without_password("host=/var/run/postgresql port=5441 dbname=feed") == \
        "host=/var/run/postgresql port=5441 dbname=feed"
