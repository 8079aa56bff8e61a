"""Thirty databases on one host (postgres, app and 28 more: the default database list), driven by the playbooks
like test_upgrade_flows.py, writers on app:

  1. with wal_level = replica and PostgreSQL's default max_replication_slots and max_wal_senders (10), preflight
     refuses, naming the values the copy needs (a slot and a sender per database, and one more of each for the
     table syncs of the database being copied) and the fix, playbooks/prepare.yml, and changes nothing;
  2. that fix as written: prepare.yml sets them with ALTER SYSTEM and says they wait for a restart; with
     online_upgrade_prepare_restart=true it restarts 16 (the writers reconnect);
  3. a copy that fails midway (rows already on 18 in db27 make its table copy fail again and again), given up with
     playbooks/abandon.yml: nothing of the upgrade is left on 16 (no slot, table syncs' included, no
     publication, no replication role or its pg_hba.conf lines) and the new instance is gone;
  4. the upgrade, run again, starts over and completes: the new server was given what
     thirty subscriptions, their table syncs and thirty rollback slots need (max_active_replication_origins,
     max_replication_slots, max_wal_senders), every write is on 18, every database holds its rows, and the only
     slots left are the rollback slots on 18;
  5. a rollback: 16, which had PostgreSQL's default 4 logical replication workers, is given one per database
     (restarted while still fenced), replays what 18 took in each of the thirty, and serves again; no slot is
     left on either server.
"""
import os

import pytest

from test_upgrade_flows import MODULE_PROCESS, NEW_DATA, OLD_DATA, PG16, PG18, Flow, wait_for

PORT = int(os.environ.get("MANYDB_PORT", "25086"))
TEMPORARY_PORT = 15432   # the new server's during the copy (online_upgrade_temporary_port)
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
        self.restart16("SET wal_level = replica")
        sql = "".join("CREATE DATABASE %s OWNER app;\n" % db for db in EXTRA)
        self.psql(sql, bin_dir=PG16, dbname="postgres")
        self.in_each(EXTRA, "CREATE TABLE t (id int PRIMARY KEY, v text); "
                            "INSERT INTO t SELECT g, '%(db)s ' || g FROM generate_series(1, 100) g", bin_dir=PG16)

    def in_each(self, databases, sql, bin_dir=PG18):
        """``sql`` (``%(db)s`` the database's name) in each of ``databases``, one psql session for them all."""
        self.psql("".join("\\connect %s\n%s;\n" % (db, sql % dict(db=db)) for db in databases),
                  bin_dir=bin_dir, dbname="postgres")

    def value_in_each(self, databases, sql, bin_dir=PG18):
        """{database: the one value ``sql`` returns in it}, one psql session for them all."""
        out = self.psql("".join("\\connect %s\nSELECT '%s', (%s);\n" % (db, db, sql) for db in databases),
                        bin_dir=bin_dir, dbname="postgres")
        return dict(line.split("\t", 1) for line in out.splitlines())


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
    assert "wal_level is replica on the old server; logical replication needs logical" in out, out[-4000:]
    for name in ("max_replication_slots", "max_wal_senders"):
        assert "%s is 10, 0 in use, 31 more needed" % name in out, out[-4000:]
        assert "run ansible-playbook fleetdb.online_upgrade.prepare (playbooks/prepare.yml) with this inventory and " \
               "-e online_upgrade_prepare_restart=true when clients may see a restart: it sets %s = 31" % name \
               in out, out[-4000:]
    assert many.psql("SELECT count(*) FROM pg_replication_slots", bin_dir=PG16, dbname="postgres") == "0"
    assert many.host.run("test -e /opt/fleetdb/postgresql/18").returncode != 0


def test_the_fix_preflight_names_readies_the_old_server_at_the_moment_chosen(many):
    pid = many.sh("head -1 %s/postmaster.pid" % OLD_DATA).strip()
    out = " ".join(many.ok("prepare.yml").split())   # the callback folds long messages
    assert "Set max_replication_slots, max_wal_senders, wal_level for the next start of the old server" in out, \
        out[-3000:]
    assert many.sh("head -1 %s/postmaster.pid" % OLD_DATA).strip() == pid, "restarted without being told"
    out = " ".join(many.ok("prepare.yml", "-e", "online_upgrade_prepare_restart=true").split())
    assert "Restarted the old server: max_replication_slots = 31, max_wal_senders = 31, wal_level = logical in " \
        "effect." in out, out[-3000:]
    assert many.psql("SELECT current_setting('wal_level') || ' ' || current_setting('max_replication_slots') || ' ' "
                     "|| current_setting('max_wal_senders')", bin_dir=PG16, dbname="postgres") == "logical 31 31"
    assert "lacks nothing" in " ".join(many.ok("prepare.yml").split())


def test_a_copy_that_keeps_failing_is_abandoned_and_nothing_of_the_upgrade_is_left(many):
    run = many.start_playbook("upgrade.yml")
    try:
        # every schema is restored before the first database replicates: 18's db27 is there, its copy not begun
        wait_for("the copy of the first databases", lambda: run.poll() is not None or many.psql(
            "SELECT count(*) FROM pg_replication_slots", bin_dir=PG16, dbname="postgres") not in ("0", "1"),
            timeout=300)
        many.psql("INSERT INTO t VALUES (1, 'already on 18')", port=TEMPORARY_PORT, dbname="db27")
        run.wait(timeout=900)
    finally:
        # Failed before its run ended (CI8: the wait timed out on a machine loaded by a bench), the run went on
        # and met the next test's upgrade.yml on the same host: neither may outlive this test.
        if run.poll() is None:
            many.kill_playbook(run)
            many.host.run("pkill -KILL -f '%s'" % MODULE_PROCESS)
    with open(run.log_path) as handle:
        out = " ".join(handle.read().split())
    assert run.returncode != 0 and "replication fleetdb_upgrade_db27 keeps failing" in out, out[-4000:]
    left = many.psql("SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots",
                     bin_dir=PG16, dbname="postgres")
    assert "fleetdb_upgrade_db27" in left and "fleetdb_upgrade_app" in left, left

    out = " ".join(many.ok("abandon.yml").split())
    assert "The upgrade to 18 was abandoned" in out, out[-3000:]
    assert many.psql("SELECT count(*) FROM pg_replication_slots", bin_dir=PG16, dbname="postgres") == "0"
    assert many.sh("ls -A %s/pg_replslot" % OLD_DATA).strip() == "", "a slot keeps WAL on 16"
    publications = many.value_in_each(DATABASES, "SELECT count(*) FROM pg_publication", bin_dir=PG16)
    for db in DATABASES:
        assert publications.get(db) == "0", db
    assert many.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'fleetdb_replicator'", bin_dir=PG16,
                     dbname="postgres") == "0"
    assert "fleetdb_replicator" not in many.sh("cat %s/pg_hba.conf" % OLD_DATA)
    assert many.host.run("test -e %s" % NEW_DATA).returncode != 0, "the new instance is still there"
    assert many.try_psql("SELECT 1", TEMPORARY_PORT) is None, "18 still runs"


def test_with_the_values_preflight_named_thirty_databases_come_across(many):
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
    rows = many.value_in_each(EXTRA, "SELECT count(*) || ' ' || sum(id) FROM t")
    for db in EXTRA:
        assert rows.get(db) == "100 5050", db
    many.stop_and_verify()


def test_a_rollback_brings_the_thirty_databases_back_to_16(many):
    many.in_each(EXTRA, "INSERT INTO t VALUES (1000, 'on 18')")
    many.ok("rollback.yml")
    assert many.psql("SHOW server_version", bin_dir=PG16, dbname="postgres").startswith("16")
    assert int(many.psql("SHOW max_logical_replication_workers", bin_dir=PG16, dbname="postgres")) >= 32
    rows = many.value_in_each(EXTRA, "SELECT count(*) || ' ' || sum(id) FROM t", bin_dir=PG16)
    for db in EXTRA:
        assert rows.get(db) == "101 6050", db
    assert many.psql("SELECT count(*) FROM pg_replication_slots", bin_dir=PG16, dbname="postgres") == "0"
    assert many.sh("ls -A %s/pg_replslot" % NEW_DATA).strip() == ""
