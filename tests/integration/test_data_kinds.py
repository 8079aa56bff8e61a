"""Every kind of data comes across, or preflight says why (docs/procedure.md, "What happens to each kind of
object"). One PostgreSQL 16 host, driven by playbooks/upgrade.yml like test_upgrade_flows.py:

  app and inventory   tests/integration/full_schema.sql: partitions two levels deep with a default partition,
                      identity, generated columns, free sequences (called, never called, set back with
                      RESTART; 12,000 more never called in app), text/uuid/composite keys, REPLICA IDENTITY
                      FULL and USING INDEX, materialized views, row-level security, unlogged tables, a large
                      object, extensions, a user publication, grants, default privileges, an event trigger;
                      inventory has its own owner and settings; in app a writer of large objects
                      (tools/fleetdb_lo_writer.sql) from before the first run to the fence
  pagila              pagila v3.1.0 as published (../shared/data/pagila), when present
  ts_app              a tablespace holding a table of app and its index

  1. preflight refuses the unlogged tables, naming each, and changes nothing (the large objects it lets through);
  2. fixed (one table SET LOGGED, the other opted in to start empty), an extension
     and a preload library missing in 18 stop the run once 18's files are there, before any instance of 18
     exists, and preflight refuses the next run; once the extension is installed and the library no longer
     preloaded, the re-run finishes (held 1 s before the fence, so that the window has large objects to carry);
  3. afterwards: every write acknowledged (the proof's writers and a writer into the partitioned table) is on
     18, every other table has the same rows (count and hash) on both servers, the materialized views hold the
     same rows, pg_dump --schema-only of old and new differ only by what the docs list, and the tablespace's
     location holds 18's files beside 16's; every large object is on 18 as on 16 when it stopped (content
     md5, owner, ACL; none unlinked there), each as its last change recorded, every acknowledged change among them;
     the large objects' rounds, run again on both in a database of their own, carry each interleaving of a client's
     changes with a round's end that the writer only meets by chance (tests/integration/large_object_rounds.py).
"""
import datetime
import difflib
import importlib.util
import os
import re
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from test_upgrade_flows import NEW_DATA, OLD_DATA, PG16, PG18, Flow, wait_for

PORT = int(os.environ.get("DATAKINDS_PORT", "25081"))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGILA = os.path.join(os.path.dirname(ROOT), "shared", "data", "pagila")
FULL_SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "full_schema.sql")
DATABASES = ["app", "inventory", "pagila"]
WRITTEN_SCHEMAS = {"app": ("app.", "proof.")}   # tools/fleetdb_proof.py's tables: checked through its writers
ACK_LOG = "/root/measurements.ack"
UNUSED_SEQUENCES = 12000  # one UNION ALL of 10,000 of them exceeds the default max_stack_depth (2 MB)
TABLESPACE_DIR = "/srv/ts_app"
OPT_INS = ("-e", "online_upgrade_unlogged_tables=empty", "-e", "online_upgrade_tables_without_key=replica_identity_full")
TLS_PASSWORD = "tls-only-pw"
DBA_SETTINGS = ("TimeZone = 'Europe/Berlin'", "default_text_search_config = 'pg_catalog.german'", "lc_time = 'C'",
                "log_timezone = 'Europe/Berlin'")
NO_KEY = ("feat.events", "feat.history")
NO_KEY_IDENTITIES = ("SELECT string_agg(relreplident::text, '' ORDER BY relname) FROM pg_class WHERE relname IN "
                     "('history', 'events', 'events_early', 'events_late') AND relnamespace = 'feat'::regnamespace")
# A throwaway extension PostgreSQL 16 has and 18 lacks until the test installs it.
DEMO_EXTENSION = {"fleetdb_demo.control": "default_version = '1.0'\nrelocatable = true\n",
                  "fleetdb_demo--1.0.sql": "CREATE FUNCTION fleetdb_demo() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"}

TABLES_SQL = """SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'fleetdb%' AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"""
LO_ACK_LOG = "/root/large-objects.ack"
LO_WRITER = os.path.join(ROOT, "tools", "fleetdb_lo_writer")   # .sql (lo_writer.op in app) and .sh (its caller)
LO_STATE = ("SELECT oid, md5(lo_get(oid)), pg_get_userbyid(lomowner), coalesce(lomacl::text, '-') "
            "FROM pg_largeobject_metadata ORDER BY oid")
PARTITION_WRITER = r"""
i=1000000
while [ ! -e /root/stop-measurements ]; do
  if runuser -u postgres -- %(bin)s/psql -h /var/run/postgresql -p 5432 -d app -XAtq -c \
       "INSERT INTO feat.measurements VALUES ($i, DATE '2024-12-01' + ($i %% 800), 1)" >/dev/null 2>&1; then
    echo $i >> %(ack)s
    i=$((i + 1))
  fi
  sleep 0.02
done
"""


class DataKindsFlow(Flow):
    locale = "en_US.UTF-8"

    def __init__(self, tmp_path):
        super().__init__(tmp_path, PORT)
        with open(self.inventory) as handle:
            text = handle.read()
        databases = DATABASES if os.path.isdir(PAGILA) else DATABASES[:2]
        with open(self.inventory, "w") as handle:
            handle.write(text.replace('online_upgrade_databases=["app"]',
                                      "online_upgrade_databases=%s" % str(databases).replace("'", '"')))
        self.databases = databases

    def sql16(self, sql, dbname="postgres"):
        return self.psql(sql, bin_dir=PG16, dbname=dbname)

    def load_file(self, path, dbname):
        self.host.copy_in(path, "/tmp/load.sql")
        self.sh("chmod 644 /tmp/load.sql && runuser -u postgres -- %s/psql -h /var/run/postgresql -d %s -XAq "
                "-v ON_ERROR_STOP=1 -f /tmp/load.sql > /dev/null" % (PG16, dbname))

    def prepare(self):
        self.prepare_16()   # app with the proof's tables and four writers
        self.set_up_as_a_dba_would()
        self.sql16("CREATE ROLE reporting NOLOGIN; CREATE ROLE stock LOGIN PASSWORD 'stock-pw'")
        self.sql16("CREATE DATABASE inventory OWNER stock")
        self.sql16("ALTER DATABASE inventory SET work_mem = '8MB'")
        self.sql16("ALTER ROLE app IN DATABASE inventory SET statement_timeout = '31s'")
        for db in ("app", "inventory"):
            self.load_file(FULL_SCHEMA, db)
        # Thousands of sequences never called: read from their relations, in statements of 500 (one UNION ALL of
        # them all exceeds max_stack_depth); pg_dump locks them all, so the lock table must hold them.
        self.restart16("SET max_locks_per_transaction = 256")
        self.sql16("DO $$BEGIN FOR i IN 1..%d LOOP EXECUTE format('CREATE SEQUENCE feat.unused_%%s START %%s', i, i); "
                   "END LOOP; END$$" % UNUSED_SEQUENCES, dbname="app")
        # A tablespace of its own, with a table and its index in it
        self.sh("install -d -o postgres -g postgres -m 700 %s" % TABLESPACE_DIR)
        self.sql16("CREATE TABLESPACE ts_app LOCATION '%s'" % TABLESPACE_DIR)
        self.sql16("CREATE TABLE feat.in_tablespace (id int PRIMARY KEY USING INDEX TABLESPACE ts_app, v text) "
                   "TABLESPACE ts_app; INSERT INTO feat.in_tablespace SELECT g, md5(g::text) "
                   "FROM generate_series(1, 5000) g", dbname="app")
        if "pagila" in self.databases:
            self.sql16("CREATE DATABASE pagila")
            for name in ("pagila-schema.sql", "pagila-data.sql"):
                self.load_file(os.path.join(PAGILA, name), "pagila")
        script = str(self.tmp / "partition-writer.sh")
        with open(script, "w") as handle:
            handle.write(PARTITION_WRITER % dict(bin=PG16, ack=ACK_LOG))
        self.host.copy_in(script, "/root/partition-writer.sh")
        self.sh("rm -f /root/stop-measurements %s; nohup bash /root/partition-writer.sh > /dev/null 2>&1 &" % ACK_LOG)
        wait_for("the partition writer", lambda: self.host.run("test -s %s" % ACK_LOG).returncode == 0, timeout=30)
        self.load_file(LO_WRITER + ".sql", "app")
        self.host.copy_in(LO_WRITER + ".sh", "/root/lo-writer.sh")
        self.sh("rm -f /root/stop-lo-writer %s; nohup bash /root/lo-writer.sh %s app %s /root/stop-lo-writer "
                "> /dev/null 2>&1 &" % (LO_ACK_LOG, PG16, LO_ACK_LOG))
        wait_for("the large objects' writer", lambda: self.host.run("test -s %s" % LO_ACK_LOG).returncode == 0, timeout=30)

    def set_up_as_a_dba_would(self):
        """TLS with the key and certificate in the data directory under their default names, a role that may
        log in over TCP with TLS only; the time zone, text search and lc_time of another country; settings and a
        comment on the postgres database."""
        key, crt = str(self.tmp / "server.key"), str(self.tmp / "server.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
        for path in (key, crt):
            self.host.copy_in(path, "%s/%s" % (OLD_DATA, os.path.basename(path)))
        self.host.copy_in(crt, "%s/root.crt" % OLD_DATA)   # the CA clients' certificates would be checked against
        self.host.copy_in(revocation_list(key, crt, str(self.tmp / "root.crl")), "/etc/ssl/root.crl")
        self.sh("cd %s && chown postgres:postgres server.key server.crt root.crt && chmod 600 server.key && "
                "chmod 644 /etc/ssl/root.crl" % OLD_DATA)
        self.sh("sed -i -e '1i hostssl all tls_only all scram-sha-256' -e '1i hostnossl all tls_only all reject' "
                "%s/pg_hba.conf" % OLD_DATA)
        self.sql16("CREATE ROLE tls_only LOGIN PASSWORD '%s'" % TLS_PASSWORD)
        for change in DBA_SETTINGS:
            self.sql16("ALTER SYSTEM SET " + change)
        self.sql16("ALTER SYSTEM SET ssl_ca_file = 'root.crt'")   # relative: in the data directory
        self.sql16("ALTER SYSTEM SET ssl_crl_file = '/etc/ssl/root.crl'")   # absolute: stays where it is
        self.sql16("ALTER SYSTEM SET ssl = on")
        self.sql16("SELECT pg_reload_conf()")
        self.sql16("ALTER DATABASE postgres SET maintenance_work_mem = '96MB'; "
                   "ALTER ROLE app IN DATABASE postgres SET work_mem = '5MB'; "
                   "COMMENT ON DATABASE postgres IS 'the maintenance database'")
        assert self.tls_login("require") == "t"

    def tls_login(self, sslmode):
        """Whether tls_only's session over TCP uses TLS ('t'), or None when the login fails."""
        proc = self.host.run("PGPASSWORD=%s %s/psql 'host=127.0.0.1 dbname=postgres user=tls_only sslmode=%s' -XAtc "
                             "'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'" % (TLS_PASSWORD, PG16, sslmode))
        return proc.stdout.strip() if proc.returncode == 0 else None

    def tables(self, dbname, port, bin_dir):
        return self.psql(TABLES_SQL, port=port, bin_dir=bin_dir, dbname=dbname).split()

    def contents(self, dbname, table, port, bin_dir):
        """Row count and a hash of the rows (order-independent), as one string."""
        return self.psql("SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-') "
                         "FROM %s t" % table, port=port, bin_dir=bin_dir, dbname=dbname)

    def schema_dump(self, dbname, port):
        """pg_dump --schema-only by 18's pg_dump, without comments, SET lines and the upgrade's own objects."""
        text = self.sh("runuser -u postgres -- %s/pg_dump -h /var/run/postgresql -p %d -d %s --schema-only "
                       "--exclude-schema='fleetdb*'" % (PG18, port, dbname))
        kept = []
        for line in text.splitlines():
            if not line.strip() or line.startswith("--") or line.startswith("SET ") or line.startswith("\\") \
                    or re.search(r"\bfleetdb_(upgrade|rollback|replicator)", line) \
                    or line.startswith("SELECT pg_catalog."):
                continue
            kept.append(line)
        return kept


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    made = DataKindsFlow(tmp_path_factory.mktemp("kinds"))
    made.prepare()
    yield made
    made.host.run("touch /root/stop-measurements /root/stop-lo-writer")
    if os.environ.get("DATAKINDS_KEEP"):
        print("kept", made.host.name)
        made.host = type(made.host)("--keep--")
    made.close()


def test_pagila_is_there_or_the_test_says_why():
    if not os.path.isdir(PAGILA):
        pytest.skip("pagila is not in %s (../shared/data/pagila): the upgrade runs without it" % PAGILA)


def test_preflight_refuses_unlogged_tables_lets_large_objects_through_and_changes_nothing(kinds):
    rc, out = kinds.playbook("upgrade.yml")
    assert rc != 0, out[-3000:]
    assert "the host is not ready for the upgrade (nothing was changed)" in out, out[-4000:]
    for db in ("app", "inventory"):
        assert "large objects" not in out, out[-4000:]
        assert re.search(r"database %s has unlogged tables, which logical replication does not carry: "
                         r"feat\.cache, feat\.staging" % db, out), out[-4000:]
        assert "database %s has tables without a primary key or replica identity: %s;" % (db, ", ".join(NO_KEY)) \
            in out, out[-4000:]
    for fix in ("online_upgrade_method=dump_restore", "ALTER TABLE ... SET LOGGED", "online_upgrade_unlogged_tables=empty",
                "online_upgrade_tables_without_key=replica_identity_full"):
        assert fix in out, fix
    assert kinds.host.run("test -e /opt/fleetdb/postgresql/18 || test -e /var/lib/fleetdb/online_upgrade").returncode != 0
    assert kinds.sql16("SELECT count(*) FROM pg_replication_slots") == "0"
    assert kinds.sql16("SELECT count(*) FROM pg_publication", dbname="app") == "1"   # user_pub only
    assert kinds.sql16(NO_KEY_IDENTITIES, dbname="app") == "dddd"


def test_an_extension_missing_in_18_stops_before_any_new_instance_exists_then_the_rerun_finishes(kinds):
    for db in ("app", "inventory"):
        kinds.sql16("ALTER TABLE feat.staging SET LOGGED", dbname=db)
    for name, text in DEMO_EXTENSION.items():
        path = str(kinds.tmp / name)
        with open(path, "w") as handle:
            handle.write(text)
        kinds.host.copy_in(path, "/opt/fleetdb/postgresql/16/share/extension/" + name)
    kinds.sql16("CREATE EXTENSION fleetdb_demo", dbname="app")
    kinds.restart16("SET shared_preload_libraries = 'old_snapshot'")   # a library 16 has and 18 dropped
    missing = (r"database app: extension fleetdb_demo 1\.0 \(no fleetdb_demo\.control in "
               r"/opt/fleetdb/postgresql/18/share/extension\); shared_preload_libraries: old_snapshot \(not in "
               r"/opt/fleetdb/postgresql/18/lib\)")
    # 18 is not on the host yet: the install step checks its files, before any instance of it exists.
    rc, out = kinds.playbook("upgrade.yml", *OPT_INS)
    assert rc != 0, out[-3000:]
    assert re.search(r"PostgreSQL 18 in /opt/fleetdb/postgresql/18/bin lacks what the old server's databases use "
                     r"\(no instance of it exists yet; the old server is unchanged\): " + missing, out), out[-4000:]
    assert "apt install postgresql-18-<extension>" in out and "DROP EXTENSION" in out, out[-4000:]
    assert kinds.host.run("test -e %s" % NEW_DATA).returncode != 0
    # Now that 18 is there, preflight itself refuses, and changes nothing.
    rc, out = kinds.playbook("upgrade.yml", *OPT_INS)
    assert rc != 0, out[-3000:]
    assert "the host is not ready for the upgrade (nothing was changed)" in out, out[-4000:]
    assert re.search(r"extensions: PostgreSQL 18 in /opt/fleetdb/postgresql/18/bin lacks what the databases use: "
                     + missing, out), out[-4000:]
    assert kinds.sql16("SHOW server_version").startswith("16")
    assert kinds.host.run("test -e %s" % NEW_DATA).returncode != 0
    kinds.restart16("RESET shared_preload_libraries")
    for name in DEMO_EXTENSION:
        kinds.sh("cp /opt/fleetdb/postgresql/16/share/extension/%s /opt/fleetdb/postgresql/18/share/extension/" % name)
    # Held 1 s before the fence rises: the large objects the writer changes meanwhile are the window's to carry.
    kinds.sh("mkdir -p /var/lib/fleetdb/online_upgrade && echo 'fence 1' > /var/lib/fleetdb/online_upgrade/failpoint")
    out = kinds.ok("upgrade.yml", *OPT_INS, "-e", "online_upgrade_progress_interval=1")
    kinds.sh("rm /var/lib/fleetdb/online_upgrade/failpoint")
    assert kinds.psql("SHOW server_version").startswith("18")
    # The progress callback (the project's ansible.cfg enables it) printed where each copy stood, and its end.
    lines = re.findall(r"^fleetdb progress \[%s\]: (.*)$" % re.escape(kinds.host.name), out, re.M)
    for db in kinds.databases:
        assert any(re.match(r"%s: in sync, (\d+) of \1 tables copied, [\d.]+ \w+ of [\d.]+ \w+" % db, line)
                   for line in lines), (db, lines)


def test_every_acknowledged_write_is_on_18(kinds):
    kinds.sh("touch /root/stop-measurements")
    kinds.stop_and_verify()
    wait_for("the partition writer to stop", lambda: kinds.host.run("pgrep -f partition-writer.sh").returncode != 0,
             timeout=30)
    acknowledged = set(int(i) for i in kinds.sh("cat %s" % ACK_LOG).split())
    present = set(int(i) for i in kinds.psql("SELECT id FROM feat.measurements WHERE id >= 1000000").split())
    assert len(acknowledged) > 50, len(acknowledged)
    assert acknowledged - present == set(), sorted(acknowledged - present)[:20]


@pytest.fixture(scope="module")
def old_running(kinds):
    """The stopped 16, started on its after-the-cutover port for the comparisons, stopped again afterwards."""
    start = "runuser -u postgres -- %s/pg_ctl -D %s -w -l /tmp/old-compare.log %s" % (PG16, OLD_DATA, "%s")
    kinds.sh(start % "start")
    yield 5433
    kinds.sh(start % "stop -m fast")


@pytest.mark.parametrize("dbname", DATABASES)
def test_every_table_has_the_same_rows_on_both_servers(kinds, old_running, dbname):
    if dbname not in kinds.databases:
        pytest.skip("pagila is not in %s" % PAGILA)
    old_tables = kinds.tables(dbname, old_running, PG16)
    assert old_tables == kinds.tables(dbname, 5432, PG18)
    compared = 0
    for table in old_tables:
        if table.startswith(WRITTEN_SCHEMAS.get(dbname, ())) or table.startswith("feat.measurements"):
            continue   # checked through their writers
        populated = "SELECT relispopulated FROM pg_class WHERE oid = '%s'::regclass" % table
        if kinds.psql(populated, port=old_running, bin_dir=PG16, dbname=dbname) == "f":
            assert kinds.psql(populated, dbname=dbname) == "f", "%s.%s: populated on 18 only" % (dbname, table)
            continue   # a materialized view WITH NO DATA (feat.never_filled, pagila's rental_by_category)
        new = kinds.contents(dbname, table, 5432, PG18)
        if table == "feat.cache":
            assert new.startswith("0 "), "the unlogged table opted in to start empty: %s" % new
            continue
        assert new == kinds.contents(dbname, table, old_running, PG16), "%s.%s" % (dbname, table)
        compared += 1
    assert compared >= (10 if dbname != "pagila" else 20), compared


def test_large_objects_changed_through_the_cutover_are_on_18_as_on_16(kinds, old_running):
    """The writer stopped at the fence (18 skips its changes): 16 as it stopped and 18 hold the same large objects,
    the window's round carried some, and each of the writer's objects is as its last recorded change left it."""
    wait_for("the large objects' writer to stop", lambda: kinds.host.run("pgrep -f lo-writer.sh").returncode != 0,
             timeout=30)
    for dbname in ("app", "inventory"):
        old = kinds.psql(LO_STATE, port=old_running, bin_dir=PG16, dbname=dbname)
        assert old and kinds.psql(LO_STATE, dbname=dbname) == old, dbname
    assert kinds.sh("ls -A %s/pg_replslot" % OLD_DATA).strip() == "", "the slot of the large objects keeps WAL on 16"
    window = kinds.state()["large_objects_window"]
    assert window["carried"] >= 1 and window["wal"][0] < window["wal"][1], window
    recorded = {}
    for line in kinds.psql("SELECT loid, op, coalesce(md5, '-'), coalesce(owner, '-'), coalesce(acl, '-') "
                           "FROM lo_writer.ops ORDER BY i").splitlines():
        oid, op, md5, owner, acl = line.split("\t")
        recorded[oid] = (op, md5, owner, acl)
    acknowledged = set(kinds.sh("cat %s" % LO_ACK_LOG).split())
    assert len(acknowledged) > 100, len(acknowledged)
    assert acknowledged <= set(kinds.psql("SELECT i FROM lo_writer.ops").split())
    assert set(kinds.psql("SELECT DISTINCT op FROM lo_writer.ops").split()) == {
        "create", "put", "truncate", "unlink", "owner", "grant"}
    on18 = dict((row.split("\t")[0], tuple(row.split("\t")[1:])) for row in kinds.psql(
        LO_STATE.replace("ORDER BY", "WHERE oid BETWEEN 900000 AND 900015 ORDER BY")).splitlines())
    for oid, (op, md5, owner, acl) in recorded.items():
        assert on18.get(oid, ("-", "-", "-")) == (md5, owner, acl), (oid, op)
    assert len(recorded) == 16 and 0 < len(on18) <= 16


def test_the_rounds_carry_each_interleaving_of_a_client_with_them(kinds, old_running):
    """tests/integration/large_object_rounds.py, on 16 as it stopped and 18, in a database of their own: each round
    ends inside a client's changes (created before the end and written after it, unlinked and created again,
    re-owned, created and unlinked after it, an object the new server lacks, WAL past a segment), and 18 then holds
    what 16 holds."""
    servers = ((old_running, PG16), (5432, PG18))
    for port, bin_dir in servers:
        kinds.psql("CREATE DATABASE lo_rounds", port=port, bin_dir=bin_dir, dbname="postgres")
        kinds.psql("CREATE ROLE lo_rounds_owner", port=port, bin_dir=bin_dir, dbname="postgres")
    collection = "/tmp/lo-rounds/ansible_collections/fleetdb/online_upgrade/plugins"
    kinds.sh("rm -rf /tmp/lo-rounds && mkdir -p %s" % collection)
    kinds.host.copy_in(os.path.join(ROOT, "plugins", "module_utils"), collection + "/module_utils")
    kinds.host.copy_in(os.path.join(ROOT, "tests", "integration", "large_object_rounds.py"), "/tmp/lo-rounds/")
    try:
        out = kinds.sh("python3 /tmp/lo-rounds/large_object_rounds.py %s %s %d 5432 lo_rounds"
                       % (PG16, OLD_DATA, old_running))
    finally:
        for port, bin_dir in servers:
            kinds.psql("DROP DATABASE lo_rounds", port=port, bin_dir=bin_dir, dbname="postgres")
            kinds.psql("DROP ROLE lo_rounds_owner", port=port, bin_dir=bin_dir, dbname="postgres")
    cases = out.splitlines()
    assert len(cases) == 7 and all(case.endswith(": equal") for case in cases), out
    assert kinds.sh("ls -A %s/pg_replslot" % OLD_DATA).strip() == "", "the rounds' slot keeps WAL on 16"


@pytest.mark.parametrize("dbname", DATABASES)
def test_every_sequence_goes_on_where_it_stood_on_16(kinds, old_running, dbname):
    """last_value and is_called of every sequence but the writers' (they went on on 18)."""
    if dbname not in kinds.databases:
        pytest.skip("pagila is not in %s" % PAGILA)
    written = ",".join(prefix.rstrip(".") for prefix in WRITTEN_SCHEMAS.get(dbname, ()))
    names = kinds.psql("SELECT format('%%I.%%I', schemaname, sequencename) FROM pg_sequences WHERE schemaname "
                       "NOT IN ('fleetdb_switchover', 'fleetdb_upgrade_record') AND NOT schemaname = ANY ('{%s}')"
                       " ORDER BY 1" % written, dbname=dbname).split()
    assert dbname != "app" or {"feat.free_seq", "feat.never_called", "feat.set_back"} <= set(names), names
    selects = ["SELECT '%s', last_value, is_called FROM %s" % (name, name) for name in names]
    queries = [" UNION ALL ".join(selects[i:i + 500]) for i in range(0, len(selects), 500)]
    old = "\n".join(kinds.psql(query, port=old_running, bin_dir=PG16, dbname=dbname) for query in queries)
    assert "\n".join(kinds.psql(query, dbname=dbname) for query in queries) == old
    if dbname == "app":
        assert "feat.set_back\t1000\tf" in old and "feat.never_called\t42\tf" in old, old[:3000]
        assert "feat.unused_%d\t%d\tf" % (UNUSED_SEQUENCES, UNUSED_SEQUENCES) in old


def test_the_schemas_differ_only_by_what_the_docs_list(kinds, old_running):
    for dbname in kinds.databases:
        old, new = kinds.schema_dump(dbname, old_running), kinds.schema_dump(dbname, 5432)
        diff = list(difflib.unified_diff(old, new, "16 (%s)" % dbname, "18 (%s)" % dbname, lineterm="", n=1))
        assert not diff, "\n".join(diff[:80])


def test_settings_and_owners_of_the_second_database_came_across(kinds):
    assert kinds.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'inventory'") == "stock"
    settings = kinds.psql("SELECT coalesce(r.rolname, '-') || ' ' || array_to_string(s.setconfig, ',') "
                          "FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                          "LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = 'inventory' ORDER BY 1")
    assert settings.splitlines() == ["- work_mem=8MB", "app statement_timeout=31s"], settings
    assert kinds.psql("SELECT relpersistence FROM pg_class WHERE oid = 'feat.cache'::regclass", dbname="app") == "u"


def test_a_tablespace_keeps_its_location_and_18s_files_go_beside_16s(kinds):
    """docs/procedure.md: the same tablespace at the same location, 18's files in its own PG_18_* directory."""
    assert kinds.psql("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts_app'") == \
        TABLESPACE_DIR
    for relation in ("feat.in_tablespace", "feat.in_tablespace_pkey"):
        path = kinds.psql("SELECT pg_relation_filepath('%s')" % relation, dbname="app")
        assert re.match(r"^pg_tblspc/\d+/PG_18_\d+/\d+/\d+$", path), (relation, path)
    versions = sorted(name.split("_")[1] for name in kinds.sh("ls %s" % TABLESPACE_DIR).split())
    assert versions == ["16", "18"], versions   # 16's stay for a rollback, until finalize
    assert kinds.psql("SELECT count(*) FROM feat.in_tablespace", dbname="app") == "5000"


@pytest.mark.parametrize("dbname", DATABASES)
def test_update_and_delete_work_on_every_table_of_18_with_the_rollback_publication(kinds, dbname):
    """The rollback publishes every table on 18: a table (or partition) without a replica identity there would
    make the application's UPDATE and DELETE fail the moment the cutover ends."""
    if dbname not in kinds.databases:
        pytest.skip("pagila is not in %s" % PAGILA)
    assert kinds.psql("SELECT count(*) FROM pg_publication WHERE pubname LIKE 'fleetdb_rollback%'", dbname=dbname) \
        == "1"
    tables = kinds.psql("SELECT format('%I.%I', n.nspname, c.relname) || ' ' || quote_ident(a.attname) "
                        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = (SELECT min(attnum) FROM "
                        "pg_attribute b WHERE b.attrelid = c.oid AND b.attnum > 0 AND NOT b.attisdropped "
                        "AND b.attgenerated = '' AND b.attidentity = '') WHERE c.relkind = 'r' "
                        "AND c.relpersistence = 'p' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                        "AND n.nspname NOT LIKE 'fleetdb%'", dbname=dbname).splitlines()
    assert len(tables) >= 10, tables
    # An UPDATE or DELETE checks the identity of each table it may change, even when no row matches.
    statements = ["UPDATE %s SET %s = %s WHERE false; DELETE FROM %s WHERE false;" % (t, c, c, t)
                  for t, c in (line.split(" ", 1) for line in tables)]
    kinds.psql("BEGIN; %s ROLLBACK;" % " ".join(statements), dbname=dbname)
    if dbname != "pagila":
        assert kinds.psql("UPDATE feat.history SET what = what || '!' WHERE what = 'event 7' RETURNING what; "
                          "DELETE FROM feat.events WHERE what = 'e7' RETURNING what", dbname=dbname) == "event 7!\ne7"
        assert kinds.psql(NO_KEY_IDENTITIES, dbname=dbname) == "ffff"


def revocation_list(key, crt, path):
    """A CRL signed by the self-signed certificate (revoking nothing), as a CA publishes one."""
    with open(key, "rb") as handle:
        private = serialization.load_pem_private_key(handle.read(), password=None)
    with open(crt, "rb") as handle:
        issuer = x509.load_pem_x509_certificate(handle.read()).subject
    now = datetime.datetime.now(datetime.timezone.utc)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(issuer).last_update(now)
           .next_update(now + datetime.timedelta(days=2)).sign(private, hashes.SHA256()))
    with open(path, "wb") as handle:
        handle.write(crl.public_bytes(serialization.Encoding.PEM))
    return path


def test_tls_serves_18_with_the_old_key_and_certificate_and_non_tls_logins_stay_rejected(kinds):
    """18 started with ssl = on, which loads every file named (a file it cannot load stops the start)."""
    assert kinds.psql("SHOW ssl") == "on"
    assert kinds.psql("SHOW ssl_cert_file") == "server.crt"
    assert kinds.psql("SHOW ssl_ca_file") == "root.crt"
    assert kinds.psql("SHOW ssl_crl_file") == "/etc/ssl/root.crl"
    assert kinds.sh("stat -c '%%a %%U' %s/server.key" % NEW_DATA).strip() == "600 postgres"
    assert kinds.sh("stat -c '%%a %%U' %s/root.crt" % NEW_DATA) == kinds.sh("stat -c '%%a %%U' %s/root.crt" % OLD_DATA)
    assert kinds.tls_login("require") == "t"
    assert kinds.tls_login("disable") is None


def test_the_cluster_keeps_its_locale_time_zone_text_search_and_the_settings_of_postgres(kinds):
    for db in ("postgres", "template0", "template1"):
        assert kinds.psql("SELECT datcollate || ' ' || datctype FROM pg_database WHERE datname = '%s'" % db) == \
            "en_US.UTF-8 en_US.UTF-8", db
    settings = dict(line.split("\t") for line in kinds.psql(
        "SELECT name, setting FROM pg_settings WHERE name IN ('TimeZone', 'log_timezone', 'default_text_search_config', "
        "'lc_time', 'lc_messages')").splitlines())
    assert settings == {"default_text_search_config": "pg_catalog.german", "lc_messages": "en_US.UTF-8", "lc_time": "C",
                        "log_timezone": "Europe/Berlin", "TimeZone": "Europe/Berlin"}, settings
    settings = kinds.psql("SELECT coalesce(r.rolname, '-') || ' ' || array_to_string(s.setconfig, ',') "
                          "FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                          "LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = 'postgres' ORDER BY 1")
    assert settings.splitlines() == ["- maintenance_work_mem=96MB", "app work_mem=5MB"], settings
    assert kinds.psql("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'postgres'") \
        == "the maintenance database"


def test_the_wire_client_over_tls_cancels_a_statement_past_its_timeout_and_refuses_copy(kinds):
    """pgwire (loaded as tools load it, a file of its own) from the controller through the published port, as
    tls_only (a hostssl rule only) on 18 with the old certificate: require, verify-full (CA and host name) and
    prefer use TLS, disable is refused by pg_hba.conf; a statement past io_timeout is cancelled on the server, not
    left running; COPY TO STDOUT is refused with a clear error and the session goes on."""
    spec = importlib.util.spec_from_file_location(
        "pgwire", os.path.join(ROOT, "plugins", "module_utils", "postgres", "pgwire.py"))
    pgwire = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pgwire)
    rootcert = str(kinds.tmp / "server.crt")

    def connect(sslmode, host="127.0.0.1", **kwargs):
        return pgwire.Connection(host=host, port=PORT, user="tls_only", dbname="postgres", password=TLS_PASSWORD,
                                 connect_timeout=10, sslmode=sslmode, **kwargs)

    in_tls = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    for sslmode, host in (("require", "127.0.0.1"), ("verify-full", "localhost"), ("prefer", "127.0.0.1")):
        with connect(sslmode, host, sslrootcert=rootcert) as conn:
            assert conn.scalar(in_tls) == "t", sslmode
    with pytest.raises(pgwire.PgConnectError, match="IP address mismatch"):
        connect("verify-full", sslrootcert=rootcert)   # the certificate names localhost
    with pytest.raises(pgwire.PgConnectError, match="pg_hba.conf"):
        connect("disable")

    conn = connect("require", io_timeout=1)
    pid = conn.backend_pid
    started = time.monotonic()
    with pytest.raises(pgwire.PgError, match="timed out: .* within io_timeout 1 s; the statement was cancelled"):
        conn.execute("SELECT pg_sleep(30)")
    assert conn.closed
    gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = %d" % pid
    wait_for("the cancelled backend to end", lambda: kinds.psql(gone, dbname="postgres") == "0", timeout=2)
    assert time.monotonic() - started < 4

    with connect("require") as conn:
        with pytest.raises(pgwire.PgError, match="COPY TO STDOUT is not supported by this client"):
            conn.execute("COPY (SELECT 1) TO STDOUT")
        assert conn.scalar("SELECT 2") == "2"
