"""Bad input against a real PostgreSQL 16 server: every mistake is refused with a message that names the
problem and the fix, before anything on the host changes.

One test host: PostgreSQL 16 from its archive, running on 5432 (the "old" server of an upgrade to 18); the last
test makes it a logical subscriber of another 16 on 5441 and, once refused, upgrades it to 18 with the fix. A second
host, Debian 11 with Debian's postgresql-13, is refused for its version.
Each failure case snapshots the release and data directories (and the work directory) before and after:
equal snapshots, untouched host.  The server's own moving parts (WAL, statistics, its log) are left out.

What "wrong password" means here: the collection never asks the user for the password of an existing
role it does not own, except ``login_password`` of the administrative login (``login_user``).  A wrong
one there must be named as such, with the option to correct, and never echoed.  The replication role's
password is owned by the collection: a mismatch between ``replication_password`` and the role is not an
error, the role is set to the given password (tested in test_security.py); a missing one is refused.
"""
import hashlib
import os
import re
import subprocess
import threading

import pytest

import conftest
from conftest import ROOT, ansible_env
from test_upgrade_flows import dist, sha256

PREFIX = "/opt/fleetdb/postgresql"
SOCK = "/var/run/postgresql"
ARCHIVE = "/var/cache/fleetdb/postgresql-16.tar.gz"
OLD = dict(data_dir="/var/lib/fleetdb/postgresql/16/main", bin_dir=PREFIX + "/16/bin", port=5432)
NEW_DATA_DIR = "/var/lib/fleetdb/postgresql/18/main"
WORK = "/var/lib/fleetdb/online_upgrade"
WATCHED = ("/opt/fleetdb", "/var/lib/fleetdb", "/var/cache/fleetdb")


def sh(host, cmd):
    proc = host.run(cmd)
    assert proc.returncode == 0, "%s: %s" % (cmd, proc.stderr)
    return proc.stdout


def snapshot(host, *paths):
    """Files (name, size, mtime) and directories (name) under ``paths``, the server's moving parts left out."""
    moving = " -o ".join("-name '%s'" % n for n in ("base", "global", "log", "pg_*"))
    return sh(host, "find %s \\( -type d \\( %s \\) \\) -prune -o \\( -type f -printf '%%p %%s %%T@\\n' \\) "
                    "-o -printf '%%p\\n' 2>/dev/null | sort; true" % (" ".join(paths or WATCHED), moving))


def failed_with(result, *phrases):
    assert result.get("failed"), result
    for phrase in phrases:
        assert phrase in result["msg"], result["msg"]
    assert "Fix:" in result["msg"] or result.get("fix"), result


def wait_listening(host, port):
    sh(host, "for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/%d) 2>/dev/null && break; sleep 0.1; done" % port)


@pytest.fixture(scope="module")
def module(pghost, run_module):
    def call(name, check=False, verbosity=0, **args):
        return run_module(pghost, "fleetdb.online_upgrade." + name, args, check=check, verbosity=verbosity)
    return call


@pytest.fixture(scope="module")
def old(pghost, pg_dists, module):
    """PostgreSQL 16 installed from its archive and serving on 5432 with wal_level=logical."""
    sh(pghost, "mkdir -p /var/cache/fleetdb %s" % WORK)
    pghost.copy_in(pg_dists["16"], ARCHIVE)
    with open(pg_dists["16"], "rb") as handle:
        checksum = "sha256:" + hashlib.sha256(handle.read()).hexdigest()
    installed = module("install", version="16", archive=ARCHIVE, checksum=checksum)
    assert not installed.get("failed"), installed
    for name, args in (("instance", dict(settings=dict(wal_level="logical"))), ("server", dict(state="started"))):
        result = module(name, **dict(OLD, **args))
        assert not result.get("failed"), result
    sh(pghost, "chown postgres %s" % WORK)
    sh(pghost, "runuser -u postgres -- %s/psql -h %s -XAtq -c \"CREATE ROLE admin LOGIN SUPERUSER PASSWORD "
               "'right-pw-123'\"" % (OLD["bin_dir"], SOCK))
    return OLD


def preflight(module, **overrides):
    args = dict(old=dict(OLD), new_version="18", new_data_dir=NEW_DATA_DIR, temporary_port=15432,
                old_port_after=5433)
    args.update(overrides)
    return module("preflight", **args)


def problem_of(result, check):
    """The problems of kind ``check`` a preflight found (none: an empty list)."""
    return [p for p in result.get("problems", []) if p["check"] == check]


def problem(result, check):
    """The one problem of kind ``check`` in a failed preflight (its msg and fix)."""
    found = [p for p in result.get("problems", []) if p["check"] == check]
    assert found, result
    return found[0]


# -- sanity: the well-formed call passes, so the failures below are caused by the one bad input -------------------

def test_a_correct_preflight_passes(pghost, old, module):
    before = snapshot(pghost)
    result = preflight(module)
    assert result.get("failed") is not True and result["ok"], result
    assert result["old_version"].startswith("16.") and result["free_bytes"] > 0
    assert snapshot(pghost) == before


# -- versions ------------------------------------------------------------------------------------------------------

def test_preflight_refuses_a_new_version_that_is_no_version(pghost, old, module):
    before = snapshot(pghost)
    result = preflight(module, new_version="abc")
    failed_with(result, "versions", "'abc' is not a version number", "online_upgrade_new_version")
    assert "e.g. 18" in problem(result, "versions")["fix"]
    assert snapshot(pghost) == before


def test_preflight_refuses_a_missing_new_version(pghost, old, module):
    before = snapshot(pghost)
    args = dict(old=dict(OLD), new_data_dir=NEW_DATA_DIR, temporary_port=15432, old_port_after=5433)
    result = module("preflight", **args)
    assert result.get("failed") and "missing required arguments: new_version" in result["msg"], result
    empty = preflight(module, new_version="")
    failed_with(empty, "versions", "online_upgrade_new_version")
    assert snapshot(pghost) == before


def test_preflight_refuses_a_downgrade(pghost, old, module):
    before = snapshot(pghost)
    for version in ("15", "16"):
        result = preflight(module, new_version=version)
        failed_with(result, "the new version %s is not newer than the running 16." % version, "downgrades")
    assert snapshot(pghost) == before


def test_install_refuses_a_version_that_is_no_version(pghost, old, module):
    before = snapshot(pghost)
    result = module("install", version="abc", archive=ARCHIVE)
    failed_with(result, "'abc' is not a PostgreSQL version")
    assert snapshot(pghost) == before


# -- archives --------------------------------------------------------------------------------------------------------

def test_install_without_an_archive_or_with_a_missing_one(pghost, old, module):
    before = snapshot(pghost)
    none = module("install", version="17")
    failed_with(none, "PostgreSQL 17 is not installed in %s/17 and no archive was given" % PREFIX, "archive")
    missing = module("install", version="17", archive="/var/cache/fleetdb/postgresql-17.tar.gz")
    failed_with(missing, "/var/cache/fleetdb/postgresql-17.tar.gz does not exist on the host", "copy it")
    assert snapshot(pghost) == before


def test_install_refuses_a_release_without_icu_for_databases_that_use_it(pghost, old, pg_dists, module):
    """Databases with ICU collations (a Debian cluster made --locale-provider=icu: Debian's postgres links ICU) and a
    release built without ICU (these archives): refused by name before any instance of it exists."""
    with open(pg_dists["16"], "rb") as handle:
        checksum = "sha256:" + hashlib.sha256(handle.read()).hexdigest()
    must = dict(extensions={}, shared_preload_libraries=[], update_paths=False, icu_databases=["template0", "app"])
    result = module("install", version="16", archive=ARCHIVE, checksum=checksum, release_must_provide=must)
    failed_with(result, "ICU: template0, app use the ICU locale provider, and this release was built without ICU")
    assert "--with-icu" in result["msg"] + result.get("fix", ""), result
    assert not problem_of(preflight(module), "extensions"), "the old server's own databases use no ICU"


def test_install_refuses_a_truncated_archive_and_leaves_no_trace(pghost, old, module):
    """The right name, the wrong bytes (an interrupted copy): no checksum given, so unpacking finds it."""
    truncated = "/var/cache/fleetdb/postgresql-17.tar.gz"
    sh(pghost, "head -c 3000000 %s > %s" % (ARCHIVE, truncated))
    try:
        before = snapshot(pghost)
        result = module("install", version="17", archive=truncated)
        failed_with(result, "%s is not a readable tar archive" % truncated, "truncated or corrupt",
                    "copy it again")
        assert snapshot(pghost) == before
        assert sh(pghost, "ls -A %s" % PREFIX).split() == ["16"]     # no staging directory left
        garbage = "/var/cache/fleetdb/postgresql-17.tar"
        sh(pghost, "head -c 100000 /dev/urandom > %s" % garbage)
        before = snapshot(pghost)
        result = module("install", version="17", archive=garbage)
        failed_with(result, "%s is not a readable tar archive" % garbage)
        assert snapshot(pghost) == before
    finally:
        sh(pghost, "rm -f /var/cache/fleetdb/postgresql-17.tar.gz /var/cache/fleetdb/postgresql-17.tar")


# -- ports ------------------------------------------------------------------------------------------------------------

def test_a_temporary_port_held_by_a_foreign_process_is_refused(pghost, old, module):
    pid = sh(pghost, "nohup python3 -m http.server 15432 >/dev/null 2>&1 & echo $!").strip()
    second = dict(data_dir="/var/lib/fleetdb/postgresql/16/second", bin_dir=OLD["bin_dir"], port=5440)
    try:
        wait_listening(pghost, 15432)
        created = module("instance", settings=dict(wal_level="logical"), **second)
        assert not created.get("failed"), created
        before = snapshot(pghost)
        result = preflight(module)
        failed_with(result, "the temporary port 15432 is held by pid %s" % pid, "http.server",
                    "online_upgrade_temporary_port")
        started = module("server", state="started", **dict(second, port=15432))
        failed_with(started, "port 15432 is held by pid %s" % pid, "http.server", "nothing was changed")
        assert os.path.basename(second["data_dir"]) not in sh(pghost, "ps -o args= -C postgres")
        assert snapshot(pghost) == before
    finally:
        sh(pghost, "kill %s; rm -rf %s" % (pid, second["data_dir"]))


def test_a_long_transaction_is_named_and_the_statement_given_ends_it(pghost, old, module):
    sh(pghost, "nohup runuser -u postgres -- %s/psql -h %s -XAtq -d postgres -c 'BEGIN; SELECT txid_current(); "
               "SELECT pg_sleep(600)' >/dev/null 2>&1 &" % (OLD["bin_dir"], SOCK))
    psql = "runuser -u postgres -- %s/psql -h %s -XAtq -d postgres -c " % (OLD["bin_dir"], SOCK)
    sh(pghost, "for i in $(seq 100); do %s\"SELECT 1 FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(600)%%' "
               "AND xact_start < now() - interval '1 s' AND pid <> pg_backend_pid()\" | grep -q 1 && break; "
               "sleep 0.1; done" % psql)
    before = snapshot(pghost)
    found = problem(preflight(module, max_transaction_age=1), "long_transactions")
    assert "transactions open for more than 1 s: pid " in found["msg"], found
    statement = found["fix"].split("as a superuser on the old server: ")[1].rstrip(")") + ")"
    assert statement.startswith("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN ("), found
    assert snapshot(pghost) == before
    sh(pghost, psql + "\"%s\"" % statement)
    assert not problem_of(preflight(module, max_transaction_age=1), "long_transactions")


def test_a_cluster_manager_on_the_host_is_named(pghost, old, module):
    """Patroni (or repmgrd, pg_autoctl) would restart the server the cutover stops: named, with the way out."""
    sh(pghost, "cp /bin/sleep /usr/local/bin/patroni")
    pid = sh(pghost, "nohup /usr/local/bin/patroni 600 >/dev/null 2>&1 & echo $!").strip()
    try:
        found = problem(preflight(module), "ha_manager")
        assert "patroni manages PostgreSQL on this host (pid %s" % pid in found["msg"], found
        assert "take the node out of Patroni first" in found["fix"], found
    finally:
        sh(pghost, "kill %s; rm -f /usr/local/bin/patroni" % pid)
    assert not problem_of(preflight(module), "ha_manager")


def test_a_replication_slot_of_another_consumer_is_named_and_the_statement_given_drops_it(pghost, old, module):
    psql = "runuser -u postgres -- %s/psql -h %s -XAtq -d postgres -c " % (OLD["bin_dir"], SOCK)
    sh(pghost, psql + "\"SELECT pg_create_logical_replication_slot('their_cdc', 'pgoutput')\"")
    found = problem(preflight(module), "replication_slots")
    assert "the replication slot their_cdc (pgoutput, database postgres) belongs to another consumer" in found["msg"]
    statement = found["fix"].split("drop it (")[1].split(") once")[0]
    assert statement == "SELECT pg_drop_replication_slot('their_cdc')", found
    sh(pghost, psql + "\"%s\"" % statement)
    assert not problem_of(preflight(module), "replication_slots")


# -- the old instance ----------------------------------------------------------------------------------------------

def test_preflight_refuses_a_database_list_that_leaves_one_out(pghost, old, module):
    """The new server would take the production port without it."""
    sh(pghost, "runuser -u postgres -- %s/psql -h %s -XAtq -c 'CREATE DATABASE left_out'" % (OLD["bin_dir"], SOCK))
    try:
        refused = preflight(module, databases=["postgres"])
        assert re.search(r"online_upgrade_databases leaves out (\S+, )*left_out\b", problem(refused, "databases")["msg"]), \
            refused
        assert "add them to online_upgrade_databases" in problem(refused, "databases")["fix"], refused
    finally:
        sh(pghost, "runuser -u postgres -- %s/psql -h %s -XAtq -c 'DROP DATABASE left_out'" % (OLD["bin_dir"], SOCK))


def test_preflight_names_a_data_directory_that_does_not_exist(pghost, old, module):
    before = snapshot(pghost)
    missing = "/var/lib/fleetdb/postgresql/16/mian"
    result = preflight(module, old=dict(OLD, data_dir=missing))
    failed_with(result, "old_data_dir", "%s does not exist" % missing, "online_upgrade_old_data_dir")
    not_pg = preflight(module, old=dict(OLD, data_dir=WORK))
    failed_with(not_pg, "%s is not a PostgreSQL data directory (no PG_VERSION)" % WORK)
    assert snapshot(pghost) == before


def test_a_wrong_login_password_is_named_and_never_echoed(pghost, old, module):
    """login_user/login_password of the old server: over TCP (scram-sha-256 by initdb) with a wrong password."""
    hba = OLD["data_dir"] + "/pg_hba.conf"
    original = sh(pghost, "cat " + hba)
    sh(pghost, "sed -i '1i local all admin scram-sha-256' %s && runuser -u postgres -- %s/pg_ctl -D %s reload"
       % (hba, OLD["bin_dir"], OLD["data_dir"]))
    try:
        sh(pghost, "sleep 0.3")
        before = snapshot(pghost)
        wrong = "wrong-pw-987"
        result = preflight(module, old=dict(OLD, login_user="admin", login_password=wrong), verbosity=3)
        failed_with(result, "old_server", 'password authentication failed for user "admin"',
                    "login_password")
        assert wrong not in result["_output"]
        none = preflight(module, old=dict(OLD, login_user="admin"))
        failed_with(none, "asks for a password for role admin", "login_password")
        right = preflight(module, old=dict(OLD, login_user="admin", login_password="right-pw-123"))
        assert right["ok"], right
        assert snapshot(pghost) == before
    finally:
        sh(pghost, "cat > %s <<'EOF'\n%sEOF\nrunuser -u postgres -- %s/pg_ctl -D %s reload"
           % (hba, original, OLD["bin_dir"], OLD["data_dir"]))


def test_replication_without_a_password_changes_nothing(pghost, old, module):
    """Refused before any role, publication or pg_hba.conf line is created on the source."""
    sh(pghost, "runuser -u postgres -- %s/psql -h %s -XAtq -c 'CREATE DATABASE shop' && "
               "runuser -u postgres -- %s/psql -h %s -XAtq -d shop -c 'CREATE TABLE t (id int PRIMARY KEY)'"
       % (OLD["bin_dir"], SOCK, OLD["bin_dir"], SOCK))
    target = dict(data_dir="/var/lib/fleetdb/postgresql/16/target", bin_dir=OLD["bin_dir"], port=5441)
    created = module("instance", settings=dict(wal_level="logical"), **target)
    started = module("server", state="started", **target)
    assert not created.get("failed") and not started.get("failed"), (created, started)
    sh(pghost, "runuser -u postgres -- %s/psql -h %s -p 5441 -XAtq -c 'CREATE DATABASE shop' && "
               "runuser -u postgres -- %s/psql -h %s -p 5441 -XAtq -d shop -c 'CREATE TABLE t (id int PRIMARY KEY)'"
       % (OLD["bin_dir"], SOCK, OLD["bin_dir"], SOCK))
    try:
        before = snapshot(pghost)
        result = module("replication", state="present", source=dict(OLD), target=dict(target), dbname="shop")
        failed_with(result, "replication_password is required")
        assert snapshot(pghost) == before
        roles = sh(pghost, "runuser -u postgres -- %s/psql -h %s -XAtq -c \"SELECT count(*) FROM pg_roles "
                           "WHERE rolname = 'fleetdb_replicator'\"" % (OLD["bin_dir"], SOCK)).strip()
        assert roles == "0"
    finally:
        module("server", state="stopped", **target)
        sh(pghost, "rm -rf %s" % target["data_dir"])


# -- disk -------------------------------------------------------------------------------------------------------------

def test_preflight_refuses_a_disk_too_small_naming_free_and_needed_bytes(pghost, old, module):
    before = snapshot(pghost)
    result = preflight(module, min_free_disk_ratio=1000000)
    found = problem(result, "disk")
    free, size = result["free_bytes"], result["old_size_bytes"]
    needed = int(size * 1000000)
    failed_with(result, "disk")
    assert "%d bytes free" % free in found["msg"] and "needs %d bytes" % needed in found["msg"], found
    assert "online_upgrade_new_data_dir" in found["fix"] and "online_upgrade_min_free_disk_ratio" in found["fix"]
    assert snapshot(pghost) == before


def test_preflight_counts_each_tablespace_where_it_lives(pghost, old, module):
    sh(pghost, "mkdir -p /srv/ts_big && chown postgres /srv/ts_big")
    psql = "runuser -u postgres -- %s/psql -h /var/run/postgresql -p %d -XAtq -d postgres -c " % (OLD["bin_dir"], OLD["port"])
    sh(pghost, psql + "\"CREATE TABLESPACE ts_big LOCATION '/srv/ts_big'\"")
    sh(pghost, psql + "'CREATE TABLE in_ts TABLESPACE ts_big AS SELECT g, repeat($$x$$, 200) FROM generate_series(1, 20000) g'")
    try:
        result = preflight(module, min_free_disk_ratio=1000000)
        spaces = dict((t["name"], t) for t in result["tablespaces"])
        assert spaces["ts_big"]["location"] == "/srv/ts_big" and spaces["ts_big"]["size_bytes"] > 4000000, spaces
        found = problem(result, "disk")
        # Same file system here: the message adds the tablespace to what the new data directory's holds.
        assert "the new data directory and tablespace ts_big" in found["msg"], found
        assert "needs %d bytes" % int(result["old_size_bytes"] * 1000000) in found["msg"], found
    finally:
        sh(pghost, psql + "'DROP TABLE in_ts'")
        sh(pghost, psql + "'DROP TABLESPACE ts_big'")


def test_preflight_refuses_more_tables_than_pg_dump_can_lock(pghost, old, module, tmp_path):
    """6,300 tables: pg_dump would take more locks than 80 % of the lock table (64 per server process, about
    7,800 here), and 128 would give them room half as large again."""
    batches = ["DO $$BEGIN FOR i IN %d..%d LOOP EXECUTE format('%%s TABLE lots.t%%s%%s', $1, i, $2); END LOOP; "
               "END$$;" % (b * 700, b * 700 + 699) for b in range(9)]   # each its own transaction: 700 locks
    script = tmp_path / "lots.sql"
    create = [b.replace("$1", "'CREATE'").replace("$2", "' ()'") for b in batches]
    script.write_text("CREATE SCHEMA lots;\n" + "\n".join(create) + "\n")
    pghost.copy_in(str(script), "/tmp/lots.sql")
    psql = "runuser -u postgres -- %s/psql -h %s -p %d -XAtq -v ON_ERROR_STOP=1 -d postgres " % (
        OLD["bin_dir"], SOCK, OLD["port"])
    sh(pghost, psql + "-f /tmp/lots.sql")
    try:
        before = snapshot(pghost)
        result = preflight(module)
        found = problem(result, "lock_table")
        failed_with(result, "lock_table", "'out of shared memory'")
        counted = re.search(r"pg_dump would lock the (\d+) tables and sequences of database postgres at once; .* "
                            r"\(max_locks_per_transaction 64 x (\d+) server processes", found["msg"])
        assert counted and int(counted.group(1)) >= 6300, found
        assert "fleetdb.online_upgrade.prepare" in found["fix"], found
        assert "max_locks_per_transaction = 128 (the new server inherits it)" in found["fix"], found
        assert result["old_server_needs"] == {"max_locks_per_transaction": 128}, result.get("old_server_needs")
        assert snapshot(pghost) == before
    finally:
        drop = "\n".join(b.replace("$1", "'DROP'").replace("$2", "''") for b in batches) + "\nDROP SCHEMA lots;\n"
        script.write_text(drop)
        pghost.copy_in(str(script), "/tmp/lots.sql")
        sh(pghost, psql + "-f /tmp/lots.sql")


PGBOUNCER_INI = """[databases]
postgres = host=127.0.0.1 port=5432 dbname=postgres
elsewhere = host=127.0.0.1 port=6543 dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6432
unix_socket_dir =
auth_type = scram-sha-256
auth_file = /etc/pgbouncer/userlist.txt
admin_users = fleetdb_admin
pool_mode = %s
query_wait_timeout = %d
pidfile = /var/run/postgresql/pgbouncer.pid
logfile = /var/log/postgresql/pgbouncer.log
"""

# A client that logs in through PgBouncer and asks a question every 20 ms, 300 times; "failed" when it could not.
THROUGH_PGBOUNCER = """for i in $(seq 300); do
  PGPASSWORD=right-pw-123 %s/psql -h 127.0.0.1 -p 6432 -U admin -d postgres -XAtqc 'SELECT 1' || echo failed
  sleep 0.02
done > /tmp/through-pgbouncer.log 2>&1
"""


def test_preflight_names_what_keeps_pgbouncer_from_holding_clients(pghost, old, module):
    """Debian's PgBouncer in front of the server: a wrong admin password (never echoed), session pooling and a
    query_wait_timeout shorter than the pause are each named with the fix; corrected, preflight passes."""
    def configure(mode, wait):
        pghost.write_file("/etc/pgbouncer/pgbouncer.ini", PGBOUNCER_INI % (mode, wait))
        sh(pghost, "kill -HUP $(cat /var/run/postgresql/pgbouncer.pid) 2>/dev/null || "
                   "runuser -u postgres -- pgbouncer -d /etc/pgbouncer/pgbouncer.ini; sleep 0.3")

    pghost.write_file("/etc/pgbouncer/userlist.txt", '"fleetdb_admin" "pgb-admin-pw-1"\n')
    sh(pghost, "chown postgres /etc/pgbouncer/userlist.txt /etc/pgbouncer/pgbouncer.ini")
    configure("session", 20)
    pooler = dict(port=6432, admin_user="fleetdb_admin", admin_password="pgb-admin-pw-1", pause_timeout=5)
    try:
        before = snapshot(pghost)
        wrong = preflight(module, pooler=dict(pooler, admin_password="wrong-pgb-pw"))
        found = problem(wrong, "pooler")
        assert "cannot reach the admin console of PgBouncer 127.0.0.1:6432" in found["msg"], found
        assert "admin_users" in found["fix"] and "wrong-pgb-pw" not in str(wrong), wrong

        result = preflight(module, pooler=pooler)
        messages = [p["msg"] for p in result["problems"] if p["check"] == "pooler"]
        assert len(messages) == 2, result["problems"]
        assert "PgBouncer database postgres uses session pooling" in messages[0], messages
        assert "query_wait_timeout is 20 s" in messages[1] and "pause_timeout 5 s" in messages[1], messages
        assert "at least 36" in problem(result, "pooler")["fix"] or "at least 36" in result["msg"], result

        configure("transaction", 120)
        passed = preflight(module, pooler=pooler)
        assert passed["ok"], passed["problems"]
        # Only the entry that leads to this server's port is paused: "elsewhere" goes to another server.
        assert passed["pooler"]["databases"] == ["postgres"], passed["pooler"]
        assert passed["pooler"]["version"].startswith("PgBouncer 1."), passed["pooler"]

        named = preflight(module, pooler=dict(pooler, databases=["postgres", "nosuch"]))
        assert "has no database nosuch" in problem(named, "pooler")["msg"], named
        assert snapshot(pghost) == before

        # prepare.yml's restart of the old server through PgBouncer: its clients wait in a PAUSE, none fails.
        pghost.write_file("/etc/pgbouncer/userlist.txt", '"fleetdb_admin" "pgb-admin-pw-1"\n"admin" "right-pw-123"\n')
        configure("transaction", 120)
        pghost.write_file("/tmp/through-pgbouncer.sh", THROUGH_PGBOUNCER % OLD["bin_dir"])
        client = sh(pghost, "rm -f /tmp/through-pgbouncer.log; nohup bash /tmp/through-pgbouncer.sh >/dev/null 2>&1 & "
                            "echo $!").strip()
        pid = sh(pghost, "head -1 %s/postmaster.pid" % OLD["data_dir"]).strip()
        wanted = int(sh(pghost, "runuser -u postgres -- %s/psql -h %s -XAtqc 'SHOW max_wal_senders'"
                        % (OLD["bin_dir"], SOCK))) + 1
        restarted = module("settings", settings=dict(max_wal_senders=wanted), restart=True,
                           pooler=dict(pooler, pause_timeout=10), **OLD)
        assert restarted["restarted"] and restarted["statements"] == [
            "ALTER SYSTEM SET max_wal_senders = '%d'" % wanted], restarted
        assert sh(pghost, "head -1 %s/postmaster.pid" % OLD["data_dir"]).strip() != pid
        sh(pghost, "while kill -0 %s 2>/dev/null; do sleep 0.2; done" % client)
        answers = sh(pghost, "cat /tmp/through-pgbouncer.log").split()
        assert answers.count("1") == 300 and "failed" not in answers, answers[-20:]
        again = module("settings", settings=dict(max_wal_senders=wanted), restart=True, pooler=pooler, **OLD)
        assert not again["changed"] and not again["restarted"], again
    finally:
        sh(pghost, "kill $(cat /var/run/postgresql/pgbouncer.pid) 2>/dev/null; true")


# -- the role: argument validation -----------------------------------------------------------------------------------

def run_playbook(host, tmp_path, *extra_vars):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("%s ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3\n"
                         % host.name)
    env = ansible_env()
    env.update(ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    argv = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", str(inventory),
            os.path.join(ROOT, "playbooks", "upgrade.yml")]
    for assignment in extra_vars:
        argv += ["-e", assignment]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_the_role_refuses_a_missing_version_in_argument_validation(pghost, old, tmp_path):
    """Before any task: the first task is the argument validation, and its message names the variable
    (not a derived default such as online_upgrade_new_data_dir that uses it)."""
    before = snapshot(pghost)
    for given, missing in (("online_upgrade_old_version=16", "online_upgrade_new_version"),
                           ("online_upgrade_new_version=18", "online_upgrade_old_version")):
        rc, output = run_playbook(pghost, tmp_path, given, "online_upgrade_replication_password=pw-not-used")
        assert rc != 0, output
        assert "Validating arguments against arg spec 'main'" in output, output
        assert "missing required arguments: %s" % missing in output, output
        assert "is undefined" not in output, output
        assert "ok=0" in output and "failed=1" in output, output
    assert snapshot(pghost) == before


# -- an old server that subscribes, and a server older than 14 (last: the subscriber's test upgrades this host) -----

BULLSEYE_IMAGE = os.environ.get("FLEETDB_BULLSEYE_IMAGE", "fleetdb-test/pghost-bullseye:latest")
DEBIAN_13 = dict(data_dir="/var/lib/postgresql/13/main", bin_dir="/usr/lib/postgresql/13/bin",
                 config_file="/etc/postgresql/13/main/postgresql.conf", port=5432)


@pytest.fixture(scope="module")
def debian11(request):
    """Debian 11 with Debian's postgresql-13, a cluster 13/main serving 5432 (wal_level = logical)."""
    name = "fleetdb-it-bullseye-%s" % os.urandom(3).hex()
    proc = subprocess.run(["docker", "run", "-d", "--name", name, "--label", "fleetdb-test=1", BULLSEYE_IMAGE],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail("cannot start %s (make setup builds it): %s" % (BULLSEYE_IMAGE, proc.stderr))
    host = conftest.Host(name)
    try:
        sh(host, "pg_createcluster 13 main -- --auth-local=peer >/dev/null && "
                 "echo 'wal_level = logical' >> /etc/postgresql/13/main/postgresql.conf && pg_ctlcluster 13 main start")
        yield host
    finally:
        conftest.remove_host(host)


def test_preflight_and_replication_refuse_postgresql_13_by_name_and_change_nothing(debian11, run_module):
    """Also the oldest target Python README states: Debian 11's 3.9 runs discover and preflight."""
    assert sh(debian11, "python3 -c 'import sys; print(sys.version_info[:2])'").strip() == "(3, 9)"
    watched = ("/etc/postgresql", "/var/lib/postgresql", "/opt", "/var/lib/fleetdb", "/var/cache/fleetdb")
    before = snapshot(debian11, *watched)
    found = run_module(debian11, "fleetdb.online_upgrade.discover", dict(
        port=5432, old_version="13", new_version="18", record=False))
    assert not found.get("failed"), found
    assert found["old"]["data_dir"] == DEBIAN_13["data_dir"] and found["old"]["bin_dir"] == DEBIAN_13["bin_dir"], found
    assert found["new"]["data_dir"] == "/var/lib/postgresql/18/main", found
    result = run_module(debian11, "fleetdb.online_upgrade.preflight", dict(
        old=dict(DEBIAN_13), new_version="18", new_data_dir="/var/lib/postgresql/18/main", temporary_port=15432,
        old_port_after=5433))
    found = problem(result, "versions")
    assert result["old_version"].startswith("13."), result
    assert "the old server runs PostgreSQL 13, older than 14" in found["msg"], found
    assert "pg_stat_progress_copy" in found["msg"] and "publish_via_partition_root" not in found["msg"], found
    assert "online_upgrade_method=dump_restore" in found["fix"], found
    # Preflight skipped: the replication module refuses it before it touches either server.
    refused = run_module(debian11, "fleetdb.online_upgrade.replication", dict(
        state="present", source=dict(DEBIAN_13), target=dict(DEBIAN_13, port=15432), dbname="postgres",
        replication_password="pw-not-used"))
    failed_with(refused, "replication cannot start: the source runs PostgreSQL 13, older than 14", "Nothing was changed")
    assert snapshot(debian11, *watched) == before
    assert sh(debian11, "runuser -u postgres -- psql -XAtqc 'SELECT (SELECT count(*) FROM pg_replication_slots) + "
                        "(SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_roles WHERE rolname "
                        "LIKE $$fleetdb%$$)'").strip() == "0"


PUBLISHER = dict(data_dir="/var/lib/fleetdb/postgresql/16/publisher", bin_dir=OLD["bin_dir"], port=5441)


def sql(host, statement, port=5432, dbname="postgres", bin_dir=OLD["bin_dir"]):
    return host.psql(statement, port=port, dbname=dbname, bin_dir=bin_dir)


def test_an_old_server_that_subscribes_is_refused_by_name_and_the_fix_carries_its_subscription_to_18(
        pghost, old, module, tmp_path):
    """A publisher (another 16 on 5441 of this host) and a subscription on the old server: preflight names it with
    its database and changes nothing; the fix as written detaches it, keeping its slot on the publisher; the upgrade
    runs; the subscription made on 18 as the fix says gets the rows the publisher took meanwhile."""
    for name, args in (("instance", dict(settings=dict(wal_level="logical"))), ("server", dict(state="started"))):
        result = module(name, **dict(PUBLISHER, **args))
        assert not result.get("failed"), result
    sql(pghost, "CREATE DATABASE feed", port=5441)
    sql(pghost, "CREATE TABLE prices (id int PRIMARY KEY, v text); CREATE PUBLICATION prices_pub FOR TABLE prices; "
                "INSERT INTO prices VALUES (1, 'before')", port=5441, dbname="feed")
    sql(pghost, "CREATE DATABASE market")
    sql(pghost, "CREATE TABLE prices (id int PRIMARY KEY, v text); CREATE SUBSCRIPTION prices_sub CONNECTION "
                "'host=%s port=5441 dbname=feed user=postgres' PUBLICATION prices_pub" % SOCK, dbname="market")
    sh(pghost, "for i in $(seq 100); do [ \"$(runuser -u postgres -- %s/psql -h %s -d market -XAtqc "
               "'SELECT count(*) FROM prices')\" = 1 ] && break; sleep 0.1; done" % (OLD["bin_dir"], SOCK))
    before = snapshot(pghost)
    found = problem(preflight(module), "subscriptions")
    assert "the old server subscribes: subscription prices_sub in database market (publication prices_pub, slot " \
           "prices_sub on the publisher)" in found["msg"], found
    assert snapshot(pghost) == before
    assert sql(pghost, "SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication)",
               dbname="market") == "0"
    assert pghost.run("test -e %s" % NEW_DATA_DIR).returncode != 0

    # The fix as written, right after the publisher took a row: the slot has not confirmed it yet (it confirms on
    # the subscriber's next status report), so a subscription made on 18 from that slot without the origin's
    # position would apply it again, a duplicate key.
    sql(pghost, "INSERT INTO prices VALUES (10, 'just before the detach')", port=5441, dbname="feed")
    sh(pghost, "for i in $(seq 100); do [ \"$(runuser -u postgres -- %s/psql -h %s -d market -XAtqc "
               "'SELECT count(*) FROM prices')\" = 2 ] && break; sleep 0.05; done" % (OLD["bin_dir"], SOCK))
    fix = found["fix"]
    disable = fix.split("of the old server: ")[1].split("; once")[0] + ";"
    applied = fix.split("note what it applied: ")[1].split("; then")[0]
    detach = fix.split("; then ")[1].split("; upgrade, then")[0] + ";"
    create, advance, enable = (part.strip() for part in fix.split("of the new server: ")[1].split(";"))
    assert disable == 'ALTER SUBSCRIPTION "prices_sub" DISABLE;' and "dbname=feed" in create, found
    sql(pghost, disable, dbname="market")
    sh(pghost, "for i in $(seq 100); do [ -z \"$(runuser -u postgres -- %s/psql -h %s -d market -XAtqc "
               "\"SELECT pid FROM pg_stat_subscription WHERE subname = 'prices_sub'\")\" ] && break; sleep 0.1; done"
               % (OLD["bin_dir"], SOCK))
    remote_lsn = sql(pghost, applied, dbname="market")
    sql(pghost, detach, dbname="market")
    sql(pghost, "INSERT INTO prices VALUES (2, 'detached')", port=5441, dbname="feed")
    new = dist("18")
    during = threading.Timer(8, sql, (pghost, "INSERT INTO prices VALUES (3, 'during the upgrade')"),
                             dict(port=5441, dbname="feed"))
    during.start()
    rc, output = run_playbook(pghost, tmp_path, "online_upgrade_old_version=16", "online_upgrade_new_version=18",
                              "online_upgrade_archive_src=" + new, "online_upgrade_archive_checksum=sha256:" + sha256(new),
                              "online_upgrade_replication_password=repl-bad-input-pw")
    during.join()
    assert rc == 0, output[-5000:]
    sql(pghost, "INSERT INTO prices VALUES (4, 'upgraded')", port=5441, dbname="feed")
    pg18 = PREFIX + "/18/bin"
    assert sql(pghost, "SHOW server_version", bin_dir=pg18).startswith("18.")
    for statement in (create, advance.replace("<the remote_lsn noted>", remote_lsn), enable):
        sql(pghost, statement, dbname="market", bin_dir=pg18)
    sh(pghost, "for i in $(seq 100); do [ \"$(runuser -u postgres -- %s/psql -h %s -d market -XAtqc "
               "'SELECT count(*) FROM prices')\" = 5 ] && break; sleep 0.1; done" % (pg18, SOCK))
    assert sql(pghost, "SELECT string_agg(id || ' ' || v, ', ' ORDER BY id) FROM prices", dbname="market",
               bin_dir=pg18) == "1 before, 2 detached, 3 during the upgrade, 4 upgraded, 10 just before the detach"
