"""Thirty databases on one host (postgres, app and 28 more: the default database list), driven by the playbooks
like test_upgrade_flows.py, writers on app:

  1. with PostgreSQL's default max_replication_slots and max_wal_senders (10), preflight refuses, naming the
     values the copy needs (a slot and a sender per database, and one more of each for the table syncs of the
     database being copied), and changes nothing;
  2. with those values set on 16 as the message says, the upgrade completes: the new server was given what
     thirty subscriptions, their table syncs and thirty rollback slots need (max_active_replication_origins,
     max_replication_slots, max_wal_senders), every write is on 18, every database holds its rows, and the only
     slots left are the rollback slots on 18.
"""
import os

import pytest

from test_upgrade_flows import OLD_DATA, PG16, Flow

PORT = int(os.environ.get("MANYDB_PORT", "25086"))
EXTRA = ["db%02d" % i for i in range(1, 29)]
DATABASES = sorted(["app", "postgres"] + EXTRA)


class ManyDbFlow(Flow):
    def __init__(self, tmp_path):
        super().__init__(tmp_path, PORT)
        with open(self.inventory) as handle:
            text = handle.read()
        with open(self.inventory, "w") as handle:
            handle.write(text.replace('online_upgrade_databases=["app"]\n', ""))   # every connectable database

    def prepare(self):
        self.prepare_16()
        sql = "".join("CREATE DATABASE %s OWNER app;\n" % db for db in EXTRA)
        self.psql(sql, bin_dir=PG16, dbname="postgres")
        for db in EXTRA:
            self.psql("CREATE TABLE t (id int PRIMARY KEY, v text); "
                      "INSERT INTO t SELECT g, '%s ' || g FROM generate_series(1, 100) g" % db, bin_dir=PG16, dbname=db)

    def restart16(self, changes):
        self.psql("; ".join("ALTER SYSTEM SET %s" % c for c in changes), bin_dir=PG16, dbname="postgres")
        path = str(self.tmp / "restart16.yml")
        with open(path, "w") as handle:
            handle.write("---\n- hosts: all\n  gather_facts: false\n  tasks:\n"
                         "    - fleetdb.online_upgrade.server: {data_dir: %s, bin_dir: %s, state: restarted}\n"
                         % (OLD_DATA, PG16))
        self.ok(path)


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    made = ManyDbFlow(tmp_path_factory.mktemp("many"))
    made.prepare()
    yield made
    made.close()


def test_preflight_names_the_slots_and_senders_thirty_databases_need_and_changes_nothing(many):
    rc, out = many.playbook("upgrade.yml")
    assert rc != 0, out[-3000:]
    assert "the host is not ready for the upgrade (nothing was changed)" in out, out[-4000:]
    for name in ("max_replication_slots", "max_wal_senders"):
        assert "%s is 10, 0 in use, 31 more needed" % name in out, out[-4000:]
        assert "raise %s to at least 31 on the old server (needs a restart)" % name in out, out[-4000:]
    assert many.psql("SELECT count(*) FROM pg_replication_slots", bin_dir=PG16, dbname="postgres") == "0"
    assert many.host.run("test -e /opt/fleetdb/postgresql/18").returncode != 0


def test_with_the_values_preflight_named_thirty_databases_come_across(many):
    many.restart16(["max_replication_slots = 31", "max_wal_senders = 31"])
    many.ok("upgrade.yml")
    settings = dict(line.split("\t") for line in many.psql(
        "SELECT name, setting FROM pg_settings WHERE name IN ('max_active_replication_origins', "
        "'max_replication_slots', 'max_wal_senders')", dbname="postgres").splitlines())
    # 30 subscriptions and one database's table syncs (origins); 30 rollback slots and their senders
    assert int(settings["max_active_replication_origins"]) >= 32, settings
    assert int(settings["max_replication_slots"]) >= 32 and int(settings["max_wal_senders"]) >= 32, settings
    slots = many.psql("SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots",
                      dbname="postgres")
    assert slots == ",".join("fleetdb_rollback_" + db for db in DATABASES), slots
    assert many.sh("ls -A %s/pg_replslot" % OLD_DATA).strip() == "", "a slot keeps WAL on 16"
    for db in EXTRA:
        assert many.psql("SELECT count(*) || ' ' || sum(id) FROM t", dbname=db) == "100 5050", db
    many.stop_and_verify()
