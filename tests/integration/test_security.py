"""Security of the online upgrade against real PostgreSQL 16 -> 18 in one test host, module by module.

Scenario (the tests run in this order and share the host):
  16 serves database ``app`` (roles ``app`` and ``other`` with passwords, TCP on 127.0.0.1 with
  scram-sha-256); the schema goes to 18 with migrate create (role_passwords) / restore; replication
  state=synced.  Then:
  - the replication role has only the privileges replication needs;
  - the files holding secrets are 0600 and owned by the database owner;
  - a schema change on 16 stops the switchover before the fence, 16 keeps serving; the same DDL on 18
    lets the switchover's checks pass;
  - a statement that hangs inside the window ends the cutover within drain_timeout, 16 keeps serving;
  - the fence cannot be bypassed: a second application role over TCP and an app session that turned
    the soft fence off (SET default_transaction_read_only = off) write every 10 ms during the real
    switchover; afterwards 16 is started on another port and proves that neither role can log in
    (it keeps the fence) and that every row it holds is on 18: no write it accepted was lost;
  - no password appears in any module result, -vvv output, server log or the state file.
"""
import hashlib
import os
import threading
import time

import pytest

from conftest import PGWIRE_FILES, ROOT

PREFIX = "/opt/fleetdb/postgresql"
SOCK = "/var/run/postgresql"
WORK = "/var/lib/fleetdb/online_upgrade"
STATE_FILE = WORK + "/switchover.json"
PORTS = {"16": 5432, "18": 6432}
OLD_PORT_AFTER = 5433
REPL_PW = "repl-Secr3t-7f2a"
APP_PW = "app-Secr3t-91cd"
OTHER_PW = "other-Secr3t-55be"
SECRETS = (REPL_PW, APP_PW, OTHER_PW)
DUMP = WORK + "/app.schema.dump"
# The phases a cutover window may hold: catalog reads and fixed-size work only (docs/procedure.md).
CONSTANT_TIME_PHASES = ("fence", "drain", "large_objects", "schema", "sequences", "roles", "detach", "stop", "proof", "start")
PASSFILE = "/var/lib/fleetdb/postgresql/18/fleetdb_replication.pgpass"


def sh(host, cmd):
    proc = host.run(cmd)
    assert proc.returncode == 0, "%s: %s" % (cmd, proc.stderr)
    return proc.stdout


def psql(host, major, db, sql, port=None):
    """As the owner postgres over the local socket (peer)."""
    return sh(host, "runuser -u postgres -- %s/%s/bin/psql -h %s -p %d -X -At -v ON_ERROR_STOP=1 -d %s -c \"%s\""
              % (PREFIX, major, SOCK, port or PORTS[major], db, sql)).strip()


def login(host, user, password, port, tcp=True):
    """Log in as ``user`` with its password (TCP 127.0.0.1 or the socket); the completed process."""
    return host.run("PGPASSWORD='%s' %s/18/bin/psql -h %s -p %d -U %s -d app -X -At -c 'SELECT 1'"
                    % (password, PREFIX, "127.0.0.1" if tcp else SOCK, port, user))


@pytest.fixture(scope="module")
def outputs():
    """-vvv output of every module call, by name, for the secrets test."""
    return {}


@pytest.fixture(scope="module")
def module(pghost, run_module, outputs):
    def call(name, check=False, verbosity=3, **args):
        result = run_module(pghost, "fleetdb.online_upgrade." + name, args, check=check, verbosity=verbosity)
        outputs.setdefault(name, []).append(result.get("_output", "") + repr(result))
        return result
    return call


@pytest.fixture(scope="module")
def servers(pghost, pg_dists, module):
    """16 and 18 from the archives, 16 on 5432, 18 on 6432 (its temporary port)."""
    sh(pghost, "mkdir -p /var/cache/fleetdb %s" % WORK)
    specs = {}
    for major in ("16", "18"):
        archive = "/var/cache/fleetdb/postgresql-%s.tar.gz" % major
        pghost.copy_in(pg_dists[major], archive)
        with open(pg_dists[major], "rb") as handle:
            checksum = "sha256:" + hashlib.sha256(handle.read()).hexdigest()
        installed = module("install", version=major, archive=archive, checksum=checksum, verbosity=0)
        assert not installed.get("failed"), installed
        spec = dict(data_dir="/var/lib/fleetdb/postgresql/%s/main" % major, bin_dir=installed["bin_dir"],
                    port=PORTS[major], socket_dir=SOCK)
        for name, args in (("instance", dict(settings=dict(wal_level="logical"))), ("server", dict(state="started"))):
            result = module(name, verbosity=0, **dict(spec, **args))
            assert not result.get("failed"), result
        specs[major] = spec
    sh(pghost, "chown postgres %s" % WORK)
    return specs


@pytest.fixture(scope="module")
def replicated(pghost, servers, module):
    """Database app on 16, its schema and roles (with their passwords) on 18, replication synced."""
    psql(pghost, "16", "postgres", "CREATE ROLE app LOGIN PASSWORD '%s'; CREATE ROLE other LOGIN PASSWORD '%s'"
         % (APP_PW, OTHER_PW))
    psql(pghost, "16", "postgres", "CREATE DATABASE app OWNER app")
    psql(pghost, "16", "app", "SET ROLE app; "
         "CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL); "
         "CREATE TABLE writes (id bigserial PRIMARY KEY, who text NOT NULL, at timestamptz NOT NULL "
         "DEFAULT clock_timestamp()); "
         "GRANT SELECT, INSERT ON writes TO other; GRANT USAGE ON SEQUENCE writes_id_seq TO other; "
         "INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 100) g")
    pre = module("preflight", old=servers["16"], new_version="18", new_data_dir=servers["18"]["data_dir"],
                 temporary_port=PORTS["18"], old_port_after=OLD_PORT_AFTER)
    assert pre["ok"], (pre.get("msg"), pre.get("problems"))
    created = module("migrate", mode="create", dbname="app", schema_only=True, path=DUMP, role_passwords=True,
                     tool_bin_dir=servers["18"]["bin_dir"], **servers["16"])
    assert created["changed"], created
    restored = module("migrate", mode="restore", dbname="app", path=DUMP, **servers["18"])
    assert restored["changed"] and not restored.get("failed"), restored
    synced = module("replication", state="synced", source=servers["16"], target=servers["18"], dbname="app",
                    replication_password=REPL_PW, timeout=120)
    assert not synced.get("failed"), (synced.get("msg"), synced.get("fix"))
    assert synced["tables_ready"] == synced["tables_total"] == 2, synced
    return synced


def switchover_args(servers):
    return dict(old=servers["16"], new=servers["18"], databases=["app"], old_port_after=OLD_PORT_AFTER,
                state_file=STATE_FILE, drain_timeout=30)


# -- least privilege --------------------------------------------------------------------------------------------

def test_the_replication_role_has_only_the_privileges_replication_needs(pghost, replicated):
    role = psql(pghost, "16", "app", "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
                                     "rolcanlogin FROM pg_roles WHERE rolname = 'fleetdb_replicator'")
    # BYPASSRLS: the copy of a table with row-level security must take every row (the decoding of the WAL that
    # REPLICATION allows sees them all anyway); it reaches only the tables the role may SELECT, checked below.
    assert role == "f|f|f|t|t|t", role
    member_of = psql(pghost, "16", "app", "SELECT string_agg(b.rolname, ',') FROM pg_auth_members m "
                                          "JOIN pg_roles r ON r.oid = m.member JOIN pg_roles b ON b.oid = m.roleid "
                                          "WHERE r.rolname = 'fleetdb_replicator'")
    assert member_of == "", "fleetdb_replicator is a member of %s" % member_of
    for builtin in ("pg_read_all_data", "pg_write_all_data", "pg_read_server_files", "pg_write_server_files",
                    "pg_execute_server_program", "pg_signal_backend", "pg_monitor"):
        assert psql(pghost, "16", "app", "SELECT pg_has_role('fleetdb_replicator', '%s', 'USAGE')" % builtin) == "f"
    tables = psql(pghost, "16", "app", "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                                       "WHERE schemaname = 'public' ORDER BY 1").split()
    assert tables == ["public.accounts", "public.writes"]
    for table in tables:
        privileges = psql(pghost, "16", "app", "SELECT string_agg(p, ',' ORDER BY p) FROM unnest(ARRAY['SELECT', "
                          "'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p "
                          "WHERE has_table_privilege('fleetdb_replicator', '%s', p)" % table)
        assert privileges == "SELECT", (table, privileges)
    assert psql(pghost, "16", "app", "SELECT has_sequence_privilege('fleetdb_replicator', 'writes_id_seq', "
                                     "'USAGE') OR has_sequence_privilege('fleetdb_replicator', 'writes_id_seq', "
                                     "'UPDATE')") == "f"
    assert psql(pghost, "16", "app", "SELECT has_database_privilege('fleetdb_replicator', 'app', 'CREATE') OR "
                                     "has_schema_privilege('fleetdb_replicator', 'public', 'CREATE')") == "f"
    owns = psql(pghost, "16", "app", "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                                     "WHERE r.rolname = 'fleetdb_replicator'")
    assert owns == "0"


def test_files_holding_secrets_are_0600_and_owned_by_the_database_owner(pghost, replicated):
    assert sh(pghost, "stat -c '%%U %%a' %s" % PASSFILE).strip() == "postgres 600"
    assert REPL_PW in sh(pghost, "cat %s" % PASSFILE)          # it is the file that holds the secret
    globals_file = DUMP + ".globals.sql"
    assert sh(pghost, "stat -c '%%U %%a' %s" % globals_file).strip() == "postgres 600"
    content = sh(pghost, "cat %s" % globals_file)
    assert "SCRAM-SHA-256$" in content                           # role_passwords: it holds password hashes
    assert not any(secret in content for secret in SECRETS)
    subconninfo = psql(pghost, "18", "app", "SELECT subconninfo FROM pg_subscription")
    assert "passfile=" in subconninfo and REPL_PW not in subconninfo


# -- DDL during replication -------------------------------------------------------------------------------------

def test_a_schema_change_on_the_old_server_stops_the_switchover_before_the_fence(
        pghost, servers, replicated, module):
    pid_before = sh(pghost, "head -1 %s/postmaster.pid" % servers["16"]["data_dir"]).strip()
    psql(pghost, "16", "app", "ALTER TABLE accounts ADD COLUMN note text")
    refused = module("switchover", **switchover_args(servers))
    assert refused.get("failed"), refused
    assert "public.accounts" in refused["msg"] and "DDL is not replicated" in refused["msg"], refused["msg"]
    assert "apply the same DDL on the new server" in refused["msg"], refused["msg"]
    assert "fence" not in (refused.get("phases") or {}), refused["phases"]
    assert "BEGIN fleetdb.online_upgrade fence" not in sh(pghost, "cat %s/pg_hba.conf" % servers["16"]["data_dir"])
    # The old server keeps serving, on the same postmaster, to its clients over TCP.
    assert sh(pghost, "head -1 %s/postmaster.pid" % servers["16"]["data_dir"]).strip() == pid_before
    wrote = pghost.run("PGPASSWORD='%s' %s/16/bin/psql -h 127.0.0.1 -p 5432 -U app -d app -X -At -c "
                       "\"INSERT INTO writes (who) VALUES ('after-refusal') RETURNING 1\"" % (APP_PW, PREFIX))
    assert wrote.returncode == 0 and wrote.stdout.split()[0] == "1", wrote.stderr
    # The same DDL on the new server: the switchover's checks pass (the cutover itself runs below).
    psql(pghost, "18", "app", "ALTER TABLE accounts ADD COLUMN note text")
    checked = module("switchover", check=True, **switchover_args(servers))
    assert not checked.get("failed") and "checks passed" in checked["msg"], checked


def test_a_database_tablespace_and_login_role_created_during_the_copy_stop_the_switchover_before_the_fence(
        pghost, servers, replicated, module):
    """None of them is replicated: the new server would take the production port without them."""
    sh(pghost, "install -d -o postgres -g postgres -m 700 /srv/late_ts")
    for sql in ("CREATE DATABASE late_db", "CREATE TABLESPACE late_ts LOCATION '/srv/late_ts'",
                "CREATE ROLE late_role LOGIN"):
        psql(pghost, "16", "postgres", sql)
    refused = module("switchover", **switchover_args(servers))
    assert refused.get("failed"), refused
    assert ("the old server has databases and tablespaces and login roles that the new one lacks (created after "
            "the copy began; none is replicated): databases: late_db; tablespaces: late_ts; login roles: late_role"
            ) in refused["msg"], refused["msg"]
    assert "run playbooks/upgrade.yml again" in refused["msg"], refused["msg"]
    assert "BEGIN fleetdb.online_upgrade fence" not in sh(pghost, "cat %s/pg_hba.conf" % servers["16"]["data_dir"])
    for sql in ("DROP DATABASE late_db", "DROP TABLESPACE late_ts", "DROP ROLE late_role"):
        psql(pghost, "16", "postgres", sql)
    checked = module("switchover", check=True, **switchover_args(servers))
    assert not checked.get("failed") and "checks passed" in checked["msg"], checked


def test_a_subscription_made_on_the_old_server_during_the_copy_stops_the_switchover_before_the_fence(
        pghost, servers, replicated, module):
    """Its apply worker would keep writing past the fence and the drain would never end (preflight refuses one that
    exists before the copy; this one came later)."""
    psql(pghost, "16", "app", "CREATE SUBSCRIPTION late_sub CONNECTION 'host=%s port=5432 dbname=postgres' "
                              "PUBLICATION elsewhere WITH (connect = false, slot_name = 'late_sub')" % SOCK)
    psql(pghost, "16", "app", "ALTER SUBSCRIPTION late_sub ENABLE")
    refused = module("switchover", **switchover_args(servers))
    assert refused.get("failed"), refused
    assert "the fence cannot hold these back: subscription late_sub (database app, publication elsewhere)" \
        in refused["msg"] and "check `subscriptions`" in refused["msg"], refused["msg"]
    assert "fence" not in (refused.get("phases") or {}), refused["phases"]
    assert "BEGIN fleetdb.online_upgrade fence" not in sh(pghost, "cat %s/pg_hba.conf" % servers["16"]["data_dir"])
    for sql in ("ALTER SUBSCRIPTION late_sub DISABLE", "ALTER SUBSCRIPTION late_sub SET (slot_name = NONE)",
                "DROP SUBSCRIPTION late_sub"):
        psql(pghost, "16", "app", sql)
    checked = module("switchover", check=True, **switchover_args(servers))
    assert not checked.get("failed") and "checks passed" in checked["msg"], checked


def test_a_login_role_dropped_during_the_copy_stops_the_switchover_before_the_fence(
        pghost, servers, replicated, module):
    """A login the DBA removed on the old server must not come back with the new one; the fix printed works."""
    for version in ("16", "18"):   # carried by the copy
        psql(pghost, version, "postgres", "CREATE ROLE \\\"gone role\\\" LOGIN")
    psql(pghost, "16", "postgres", "DROP ROLE \\\"gone role\\\"")
    refused = module("switchover", **switchover_args(servers))
    assert refused.get("failed"), refused
    assert ("the new server has login roles that the old one no longer has (dropped after the copy began): "
            "login roles: gone role") in refused["msg"], refused["msg"]
    assert "BEGIN fleetdb.online_upgrade fence" not in sh(pghost, "cat %s/pg_hba.conf" % servers["16"]["data_dir"])
    fix = refused["msg"].split("drop them on the new server too, then run again: ")[1].split(". Nothing was changed")[0]
    assert fix.startswith("runuser -u postgres -- ") and "DROP ROLE" in fix, fix
    sh(pghost, fix)
    checked = module("switchover", check=True, **switchover_args(servers))
    assert not checked.get("failed") and "checks passed" in checked["msg"], checked


def test_a_schema_change_after_the_check_before_the_fence_is_found_inside_the_window(
        pghost, servers, replicated, module):
    """The full comparison runs before the fence; the window reads each server's catalog token again. A column
    added on 16 while a failpoint holds the module right after that comparison moves the token and the md5s:
    the window compares in full again, names the table, and the cutover aborts with 16 serving."""
    result = switchover_changed_after_the_comparison(
        pghost, servers, module, "ALTER TABLE accounts ADD COLUMN late_note text")
    assert result.get("failed"), result
    assert "public.accounts" in result["msg"] and "DDL is not replicated" in result["msg"], result["msg"]
    assert "fence" in result["phases"] and "schema" in result["phases"], result["phases"]
    assert "sequences" not in result["phases"], result["phases"]
    assert "BEGIN fleetdb.online_upgrade fence" not in sh(pghost, "cat %s/pg_hba.conf" % servers["16"]["data_dir"])
    wrote = pghost.run("PGPASSWORD='%s' %s/16/bin/psql -h 127.0.0.1 -p 5432 -U app -d app -X -At -c "
                       "\"INSERT INTO writes (who) VALUES ('after-late-ddl') RETURNING 1\"" % (APP_PW, PREFIX))
    assert wrote.returncode == 0 and wrote.stdout.split()[0] == "1", wrote.stderr
    psql(pghost, "18", "app", "ALTER TABLE accounts ADD COLUMN late_note text")   # the schemas agree again


# -- a hung statement in the window ------------------------------------------------------------------------

def test_a_hung_statement_aborts_the_cutover_within_drain_timeout(pghost, servers, replicated, module):
    """The cutover's sessions on the new server stop answering inside the window (their backends are stopped
    with SIGSTOP while a failpoint holds the module 3 s after the drain): the next statement times out within
    drain_timeout, the cutover aborts, the old server serves its clients unfenced and replication resumes."""
    drain_timeout = 5
    sh(pghost, "echo 'roles 3' > %s/failpoint" % WORK)
    result = {}
    runner = threading.Thread(target=lambda: result.update(module(
        "switchover", verbosity=0, **dict(switchover_args(servers), drain_timeout=drain_timeout))))
    runner.start()
    stopped = []
    try:
        wait_until(lambda: '"phase": "roles"' in sh(pghost, "cat %s 2>/dev/null || true" % STATE_FILE), timeout=120)
        stopped = psql(pghost, "18", "postgres", "SELECT pid FROM pg_stat_activity WHERE application_name = "
                       "'fleetdb.online_upgrade switchover'").split()
        assert stopped, "no session of the cutover on the new server"
        sh(pghost, "kill -STOP %s" % " ".join(stopped))
        runner.join(timeout=120)
    finally:
        if stopped:
            sh(pghost, "kill -CONT %s" % " ".join(stopped))
        sh(pghost, "rm -f %s/failpoint" % WORK)
        runner.join(timeout=120)
    assert result.get("failed"), result
    assert "timed out" in result["msg"], result["msg"]
    assert result["aborted_because"], result
    # the statement that hung ended within drain_timeout (plus the socket's second), not whenever the server woke
    assert result["phases"]["roles"] <= drain_timeout + 2, result["phases"]
    assert "BEGIN fleetdb.online_upgrade fence" not in sh(pghost, "cat %s/pg_hba.conf" % servers["16"]["data_dir"])
    wrote = pghost.run("PGPASSWORD='%s' %s/16/bin/psql -h 127.0.0.1 -p 5432 -U app -d app -X -At -c "
                       "\"INSERT INTO writes (who) VALUES ('after-hang') RETURNING 1\"" % (APP_PW, PREFIX))
    assert wrote.returncode == 0 and wrote.stdout.split()[0] == "1", wrote.stderr
    assert psql(pghost, "18", "app", "SELECT subenabled FROM pg_subscription") == "t"
    wait_until(lambda: psql(pghost, "18", "app", "SELECT count(*) FROM writes WHERE who = 'after-hang'") == "1")


# -- a row the new server lacks ---------------------------------------------------------------------------------

def test_a_row_missing_on_the_new_server_stops_the_switchover_before_the_fence(pghost, servers, replicated, module):
    """The row counts are compared before the fence, at one point of replication, while a client writes: a row
    deleted on 18 behind replication's back is found, and nothing else is reported (the writes in flight are
    accounted for)."""
    sh(pghost, "rm -f /tmp/stop-writers")
    start_writer(pghost, "counted", "app", APP_PW)
    try:
        wait_until(lambda: count(pghost, "16", "counted") > 20)
        removed = psql(pghost, "18", "app", "DELETE FROM writes WHERE id = (SELECT min(id) FROM writes) "
                                            "RETURNING row_to_json(writes)").splitlines()[0]
        refused = module("switchover", **switchover_args(servers))
        assert refused.get("failed"), refused
        assert "row counts differ" in refused["msg"] and "public.writes" in refused["msg"], refused["msg"]
        assert refused["row_mismatches"] == [m for m in refused["row_mismatches"] if m.startswith("public.writes")]
        assert "fence" not in refused["phases"] and "verify" in refused["phases"], refused["phases"]
        assert "BEGIN fleetdb.online_upgrade fence" not in sh(pghost, "cat %s/pg_hba.conf"
                                                              % servers["16"]["data_dir"])
        assert psql(pghost, "18", "app", "SELECT subenabled FROM pg_subscription") == "t"
        # Put back, the row counts agree again: the real switchover below runs them, writers going.
        psql(pghost, "18", "app", "INSERT INTO writes SELECT * FROM json_populate_record(NULL::writes, '%s')"
             % removed.replace('"', '\\"'))
        before = count(pghost, "16", "counted")
        wait_until(lambda: count(pghost, "18", "counted") > before)  # replication goes on
    finally:
        sh(pghost, "touch /tmp/stop-writers; sleep 1")


# -- a commit waiting for a synchronous standby -----------------------------------------------------------------

def test_a_commit_waiting_for_a_synchronous_standby_is_waited_for_not_counted_as_a_difference(
        pghost, servers, replicated, module):
    """A commit in the old server's WAL is decoded, applied and confirmed by the new server while its session
    still waits for a synchronous standby: for other sessions it is in progress, and being the newest, it is in
    no snapshot's in-progress list (its id is past the snapshot's xmax).  The row counts must wait for it (here
    it never ends: they stop within drain_timeout and name it), never report its row as a difference."""
    sh(pghost, "echo 'verifying 15' > %s/failpoint" % WORK)   # after the module's ANALYZE, which commits too
    result, started = {}, []
    runner = threading.Thread(target=lambda: result.update(
        module("switchover", **dict(switchover_args(servers), drain_timeout=5))))
    runner.start()
    insert = ("nohup runuser -u postgres -- %s/16/bin/psql -h %s -p %d -d app -X -q -c \"INSERT INTO writes (who) "
              "VALUES ('waits-for-a-standby')\" > /dev/null 2>&1 &" % (PREFIX, SOCK, PORTS["16"]))
    waiting = "SELECT backend_xid FROM pg_stat_activity WHERE wait_event = 'SyncRep'"

    def one_waits():   # the setting reaches the backends once the checkpointer has read it: insert until one waits
        if psql(pghost, "16", "app", waiting):
            return True
        if not pghost.run("pgrep -f 'waits-for-a-[s]tandby'").stdout.strip():   # the last one committed at once
            started.append(sh(pghost, insert))
        return False
    try:
        wait_until(lambda: '"failpoint_reached": "verifying"' in sh(pghost, "cat %s 2>/dev/null || true"
                                                                    % STATE_FILE), timeout=120)
        psql(pghost, "16", "postgres", "ALTER SYSTEM SET synchronous_standby_names = 'fleetdb_nobody'")
        psql(pghost, "16", "postgres", "SELECT pg_reload_conf()")
        wait_until(one_waits, timeout=10)
        xid = psql(pghost, "16", "app", waiting)
        wait_until(lambda: count(pghost, "18", "waits-for-a-standby") == len(started), timeout=5)   # applied
        flushed = psql(pghost, "16", "app", "SELECT pg_current_wal_flush_lsn()")
        wait_until(lambda: psql(pghost, "16", "app", "SELECT bool_and(confirmed_flush_lsn >= '%s') FROM "
                                "pg_replication_slots WHERE database = 'app'" % flushed) == "t", timeout=5)
        assert count(pghost, "16", "waits-for-a-standby") == len(started) - 1   # and still in progress on 16
        runner.join(timeout=120)
    finally:
        psql(pghost, "16", "postgres", "ALTER SYSTEM RESET synchronous_standby_names")
        psql(pghost, "16", "postgres", "SELECT pg_reload_conf()")
        sh(pghost, "rm -f %s/failpoint" % WORK)
        runner.join(timeout=120)
    assert result.get("failed"), result
    assert "row counts differ" not in result["msg"], result["msg"]
    assert "did not end within 5 s: %s" % xid in result["msg"] and "SyncRep" in result["msg"], result["msg"]
    assert "fence" not in result["phases"] and "verify" in result["phases"], result["phases"]
    assert psql(pghost, "18", "app", "SELECT subenabled FROM pg_subscription") == "t"
    wait_until(lambda: not psql(pghost, "16", "app", waiting))   # released: every row on both servers
    wait_until(lambda: count(pghost, "18", "waits-for-a-standby") == count(pghost, "16", "waits-for-a-standby")
               == len(started))


# -- a transaction the large objects' copy waits for -------------------------------------------------------------

def test_a_transaction_open_across_the_large_objects_copy_stops_the_switchover_before_the_fence(
        pghost, servers, replicated, module):
    """The first round of the large objects waits, at most drain_timeout, until every transaction running at its
    WAL position has ended: one that holds its transaction id longer is named by its pid, the cutover stops
    before the fence, and the slot that round made is dropped (nothing keeps WAL on 16)."""
    sh(pghost, "nohup runuser -u postgres -- %s/16/bin/psql -h %s -p %d -d app -X -q -c \"BEGIN; INSERT INTO "
               "writes (who) VALUES ('holds its xid'); SELECT pg_sleep(60); COMMIT\" > /dev/null 2>&1 &"
               % (PREFIX, SOCK, PORTS["16"]))
    try:
        wait_until(lambda: psql(pghost, "16", "app", "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS "
                                                     "NOT NULL AND query LIKE '%holds its xid%'") == "1")
        holder = psql(pghost, "16", "app", "SELECT pid FROM pg_stat_activity WHERE query LIKE '%holds its xid%' "
                                           "AND pid <> pg_backend_pid()")
        refused = module("switchover", **dict(switchover_args(servers), drain_timeout=3, verify_row_counts=False))
        assert refused.get("failed"), refused
        assert "transactions of pids %s, running since before" % holder in refused["msg"], refused["msg"]
        assert "did not end within 3 s" in refused["msg"], refused["msg"]
        assert "fence" not in refused["phases"] and "large_objects_copy" in refused["phases"], refused["phases"]
        assert psql(pghost, "16", "app", "SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'physical'") \
            == "0"
        assert "BEGIN fleetdb.online_upgrade fence" not in sh(pghost, "cat %s/pg_hba.conf" % servers["16"]["data_dir"])
    finally:
        psql(pghost, "16", "app", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE "
                                  "'%holds its xid%' AND pid <> pg_backend_pid()")


# -- the fence ---------------------------------------------------------------------------------------------------

def start_writer(host, name, user, password, first_sql=""):
    """A client that keeps one session open and inserts every 10 ms, reconnecting whenever it is cut off."""
    inner = ("while [ ! -f /tmp/stop-writers ]; do echo \"INSERT INTO writes (who) VALUES ('%s');\"; sleep 0.01; "
             "done" % name)
    loop = ("while [ ! -f /tmp/stop-writers ]; do (%s%s) | PGPASSWORD='%s' %s/18/bin/psql -h 127.0.0.1 -p 5432 "
            "-U %s -d app -X -q -v ON_ERROR_STOP=1; sleep 0.01; done"
            % ("echo \"%s\"; " % first_sql if first_sql else "", inner, password, PREFIX, user))
    sh(host, "nohup bash -c '%s' >/tmp/writer-%s.log 2>&1 &" % (loop.replace("'", "'\\''"), name))


def count(host, major, who, port=None):
    return int(psql(host, major, "app", "SELECT count(*) FROM writes WHERE who = '%s'" % who, port=port))


def switchover_changed_after_the_comparison(pghost, servers, module, ddl):
    """The switchover, with ``ddl`` run on 16 while a failpoint holds the module for 8 s right after the full
    schema comparison before the fence; its result."""
    sh(pghost, "echo 'compared 8' > %s/failpoint" % WORK)
    result = {}
    runner = threading.Thread(target=lambda: result.update(module("switchover", **switchover_args(servers))))
    runner.start()
    try:
        state = "cat %s 2>/dev/null || true" % STATE_FILE
        wait_until(lambda: '"failpoint_reached": "compared"' in sh(pghost, state), timeout=120)
        psql(pghost, "16", "app", ddl)
    finally:
        runner.join(timeout=180)
        sh(pghost, "rm -f %s/failpoint" % WORK)
    return result


def wait_until(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_the_fence_cannot_be_bypassed_and_no_accepted_write_is_lost(pghost, servers, replicated, module):
    sh(pghost, "rm -f /tmp/stop-writers")
    start_writer(pghost, "other", "other", OTHER_PW)
    start_writer(pghost, "app-rw", "app", APP_PW, first_sql="SET default_transaction_read_only = off;")
    try:
        wait_until(lambda: count(pghost, "16", "other") > 20 and count(pghost, "16", "app-rw") > 20)
        # A catalog change that no description shows, between the full schema comparison and the window.
        switched = switchover_changed_after_the_comparison(
            pghost, servers, module, "ALTER TABLE writes SET (fillfactor = 90)")
        assert not switched.get("failed"), (switched.get("msg"), switched.get("aborted_because"))
        assert switched["changed"] and switched["window_seconds"] > 0, switched
        # Nothing that grows with the data runs in the window: the row counts ran before the fence.
        phases = switched["phase_order"]
        window = phases[phases.index("fence"):phases.index("start") + 1]
        assert phases.index("verify") < phases.index("fence"), phases
        assert set(window) <= set(CONSTANT_TIME_PHASES), window
        assert switched["databases"]["app"]["tables_verified"] >= 2, switched["databases"]
        assert switched["databases"]["app"]["commits_listed_by"] == "test_decoding", switched["databases"]
        # The window's schema check: pg_class moved (the token), the descriptions did not (their md5s).
        assert switched["schema_in_window"] == {"app": "md5"}, switched
        # The writers reconnect to the same port and now write to 18.
        on18 = (count(pghost, "18", "other", port=5432), count(pghost, "18", "app-rw", port=5432))
        wait_until(lambda: count(pghost, "18", "other", port=5432) > on18[0] + 5
                   and count(pghost, "18", "app-rw", port=5432) > on18[1] + 5)
    finally:
        sh(pghost, "touch /tmp/stop-writers; sleep 1")
    assert psql(pghost, "18", "app", "SHOW server_version_num", port=5432).startswith("18")

    # The old server, started again on its new port, still carries the fence.
    started = module("server", state="started", verbosity=0, **dict(servers["16"], port=OLD_PORT_AFTER))
    assert not started.get("failed") and started["port"] == OLD_PORT_AFTER, started
    try:
        for user, password in (("other", OTHER_PW), ("app", APP_PW)):
            for tcp in (True, False):
                refused = login(pghost, user, password, OLD_PORT_AFTER, tcp=tcp)
                assert refused.returncode != 0, (user, tcp, refused.stdout)
                assert "pg_hba.conf rejects connection" in refused.stderr, refused.stderr
        assert psql(pghost, "16", "app", "SELECT current_user", port=OLD_PORT_AFTER) == "postgres"

        # Every row the old server holds is on the new one: no write it accepted after the fence was lost.
        old_rows = set(psql(pghost, "16", "app", "SELECT id || ':' || who FROM writes",
                            port=OLD_PORT_AFTER).split())
        new_rows = set(psql(pghost, "18", "app", "SELECT id || ':' || who FROM writes", port=5432).split())
        assert old_rows, "no rows on the old server"
        assert {r.split(":")[1] for r in old_rows} >= {"other", "app-rw"}
        assert old_rows <= new_rows, "rows on 16 missing on 18: %s" % sorted(old_rows - new_rows)[:20]
        fenced_at = psql(pghost, "16", "app", "SELECT max(fenced_at) FROM fleetdb_switchover.drain_marker",
                         port=OLD_PORT_AFTER)
        assert fenced_at, "no drain marker on the old server"
        after_marker = psql(pghost, "16", "app", "SELECT count(*) FROM writes WHERE at > '%s'" % fenced_at,
                            port=OLD_PORT_AFTER)
        assert after_marker == "0", "%s rows written on 16 after the drain marker" % after_marker
    finally:
        module("server", state="stopped", verbosity=0, **servers["16"])


def test_a_rejected_login_never_crashes_the_client(pghost, servers, tmp_path):
    """The fence probe's situation, 300 times: a login the server rejects (here: a role that does not exist on
    the server serving port 5432) must give PgConnectError, never another exception."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import collections, sys\n"
        "sys.path.insert(0, '/tmp/fleetdb-pgwire')\n"
        "import pgwire\n"
        "seen = collections.Counter()\n"
        "for i in range(300):\n"
        "    try:\n"
        "        pgwire.Connection(host='%s', port=5432, user='fleetdb_fence_probe', dbname='app').close()\n"
        "    except pgwire.PgConnectError:\n"
        "        seen['rejected'] += 1\n"
        "    except Exception as exc:\n"
        "        seen[repr(exc)] += 1\n"
        "print(dict(seen))\n" % SOCK)
    sh(pghost, "mkdir -p /tmp/fleetdb-pgwire")
    for name in PGWIRE_FILES:
        pghost.copy_in(os.path.join(ROOT, "plugins", "module_utils", "postgres", name), "/tmp/fleetdb-pgwire/" + name)
    pghost.copy_in(str(script), "/tmp/fleetdb-pgwire/probe.py")
    seen = sh(pghost, "python3 /tmp/fleetdb-pgwire/probe.py").strip()
    assert seen == "{'rejected': 300}", seen


# -- secrets ----------------------------------------------------------------------------------------------------------

def test_no_password_in_results_verbose_output_logs_or_state(pghost, servers, replicated, module, outputs):
    assert {"preflight", "migrate", "replication", "switchover"} <= set(outputs), sorted(outputs)
    for name, texts in outputs.items():
        for text in texts:
            for secret in SECRETS:
                assert secret not in text, "%s output shows a password" % name
    logs = sh(pghost, "ls /var/lib/fleetdb/postgresql/*/main/log/*").split()
    assert len(logs) >= 2, logs
    for secret in SECRETS:
        found = pghost.run("grep -l -F -- '%s' /var/lib/fleetdb/postgresql/*/main/log/* %s" % (secret, STATE_FILE))
        assert found.returncode == 1 and not found.stdout, "%s found in %s" % (secret, found.stdout)
    assert sh(pghost, "test -s %s && echo yes" % STATE_FILE).strip() == "yes"
