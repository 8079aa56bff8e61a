# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Steps 3 to 6 of the online upgrade in one call: the PostgreSQL cutover.

Before the window (clients still write to the old server):
  checks, a checkpoint on both servers so that their shutdowns are short,
  the drain marker table, the list of sequences.
The client-visible window:
  fence       pg_hba.conf rejects every role but the replication role, reload,
              terminate client backends;
  drain       insert a marker row on the old server and wait until the new
              server has applied it (logical replication applies in commit
              order, so every earlier commit is there too); a write that
              slipped past the fence shows as a foreign transaction id and
              makes the drain start over;
  sequences   copy last_value/is_called of every sequence;
  verify      compare row counts of the replicated tables;
  detach      disable the subscription, drop its slot on the old server;
  stop        stop old and new servers together;
  start       start the new server on the production port, wait until it
              accepts connections.
If anything fails before the old server is stopped, the fence is lifted and
the old server keeps serving.  After that point, a new server that cannot
start makes the old one come back on the production port.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import re
import signal
import threading
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.common import (
    OperationError, PhaseTimer, read_text, run_as, write_file)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engine import Switchover
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.pg_session import connect

FENCE_BEGIN = "# BEGIN fleetdb.online_upgrade fence"
FENCE_END = "# END fleetdb.online_upgrade fence"
MARKER_SCHEMA = "fleetdb_switchover"
MARKER_TABLE = "fleetdb_switchover.drain_marker"
SCHEMAS_NOT_COMPARED = ("pg_catalog", "information_schema", "pg_toast", MARKER_SCHEMA, "fleetdb_upgrade_record")

SCHEMA_FINGERPRINT_SQL = """
SELECT n.nspname || '.' || c.relname AS relation,
       c.relkind::text AS kind,
       coalesce(string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                           ', ' ORDER BY a.attnum), '') AS columns
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p', 'S')
   AND n.nspname <> ALL ($1::text[])
   AND n.nspname NOT LIKE 'pg_temp%'
 GROUP BY 1, 2
 ORDER BY 1
"""

SEQUENCES_SQL = """
SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences
 WHERE schemaname <> ALL ($1::text[]) ORDER BY 1
"""


ROLLBACK_TABLES_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND NOT c.relispartition
   AND n.nspname <> ALL ($1::text[]) AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1
"""


def fence_block(replication_user, admin_user, databases):
    """pg_hba.conf lines put in front of the existing rules while the fence is up."""
    dbs = ",".join(databases)
    lines = [FENCE_BEGIN,
             "local   %s   %s   scram-sha-256" % (dbs, replication_user),
             "host    %s   %s   all   scram-sha-256" % (dbs, replication_user),
             "local   all   %s   peer" % admin_user,
             "local   all   all   reject",
             "host    all   all   all   reject",
             FENCE_END]
    return "\n".join(lines) + "\n"


def without_fence(hba_text):
    """The pg_hba.conf text with any fence block removed (idempotent)."""
    if FENCE_BEGIN not in hba_text:
        return hba_text
    head, rest = hba_text.split(FENCE_BEGIN, 1)
    _fence, tail = rest.split(FENCE_END, 1)
    return head + tail.lstrip("\n")


def schema_differences(old_rows, new_rows):
    """Human-readable differences between two SCHEMA_FINGERPRINT_SQL results."""
    old = dict((r[0], (r[1], r[2])) for r in old_rows)
    new = dict((r[0], (r[1], r[2])) for r in new_rows)
    problems = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            problems.append("%s exists only on the old server" % name)
        elif name not in old:
            problems.append("%s exists only on the new server" % name)
        elif old[name] != new[name]:
            problems.append("%s differs: old (%s) new (%s)" % (name, old[name][1], new[name][1]))
    return problems


def subscription_name(base, dbname, databases):
    """One subscription (and slot: slot names are cluster-wide) per database."""
    if len(databases) == 1:
        return base
    return "%s_%s" % (base, re.sub(r"[^a-z0-9_]", "_", dbname.lower()))


def read_postmaster_pid(data_dir):
    """PID of the postmaster that owns ``data_dir``, or None when it is not running."""
    text = read_text(os.path.join(data_dir, "postmaster.pid"))
    if not text:
        return None
    try:
        pid = int(text.splitlines()[0])
        os.kill(pid, 0)
        return pid
    except (ValueError, IndexError, OSError):
        return None


class StateFile:
    """Which phase the cutover reached, kept on the host so that a re-run knows."""

    def __init__(self, module, path, owner):
        self.module = module
        self.path = path
        self.owner = owner
        self.data = json.loads(read_text(path) or "{}") if path else {}

    @property
    def phase(self):
        return self.data.get("phase")

    def set(self, phase, **extra):
        self.data["phase"] = phase
        self.data["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.data.update(extra)
        if self.path and not self.module.check_mode:
            if not os.path.isdir(os.path.dirname(self.path)):
                os.makedirs(os.path.dirname(self.path), 0o755)
            write_file(self.module, self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n",
                       owner=None, mode=0o644)


class PostgresSwitchover(Switchover):
    """The cutover from ``old`` (serving on the production port) to ``new`` (on a temporary port)."""

    def __init__(self, module, old, new, databases, subscription, replication_user,
                 production_port, temporary_port, old_port_after, drain_timeout=60,
                 start_timeout=60, verify_row_counts=True, state_file=None, max_lag_bytes=64 * 1024 * 1024,
                 rollback_slot=True):
        self.module = module
        self.old = old
        self.new = new
        self.databases = list(databases)
        self.subscription = subscription
        self.replication_user = replication_user
        self.production_port = production_port
        self.temporary_port = temporary_port
        self.old_port_after = old_port_after
        self.drain_timeout = drain_timeout
        self.start_timeout = start_timeout
        self.verify_row_counts = verify_row_counts
        self.max_lag_bytes = max_lag_bytes
        self.rollback_slot = rollback_slot
        self.state = StateFile(module, state_file, old.owner)
        self._signalled = set()  # servers sent the shutdown signal in this run
        self.timer = PhaseTimer()
        self.report = dict(databases={}, phases=self.timer.timings)
        self._old_sessions = {}
        self._new_sessions = {}
        self._hba_file = None
        self._hba_original = None
        self._new_hba_file = None

    # -- entry point ------------------------------------------------------------
    def run(self):
        if self._already_switched():
            self.report.update(changed=False, msg="the new server already serves the production port %d"
                               % self.production_port, window_seconds=0.0)
            return self.report
        try:
            if self.state.phase in ("old_stopped", "new_starting"):
                return self._resume_after_old_stopped()
            with self.timer.phase("prepare"):
                self._prepare()
            if self.module.check_mode:
                self.report.update(changed=True, msg="checks passed; the cutover would run now",
                                   window_seconds=0.0)
                return self.report
            self._cutover()
        finally:
            self._close_sessions()
        return self.report

    # -- before the window ------------------------------------------------------------
    def _prepare(self):
        if read_postmaster_pid(self.old.data_dir) is None:
            raise OperationError("the old server (%s) is not running" % self.old.data_dir,
                                 "start it on port %d, or if the cutover already ran, check the new server"
                                 % self.production_port)
        if read_postmaster_pid(self.new.data_dir) is None:
            raise OperationError("the new server (%s) is not running on its temporary port %d"
                                 % (self.new.data_dir, self.temporary_port),
                                 "start it with fleetdb.online_upgrade.server port=%d" % self.temporary_port)
        self._lift_stale_fence()
        self._check_login_roles()
        for db in self.databases:
            old = self._old(db)
            new = self._new(db)
            self._check_subscription(db, new)
            self._check_schema(db, old, new)
            self._ensure_marker(db, old, new)
            self.report["databases"][db]["sequences"] = [r[0] for r in old.query(
                SEQUENCES_SQL, [list(SCHEMAS_NOT_COMPARED)]).rows]
            if self.rollback_slot and not self.module.check_mode:
                self._ensure_rollback_publication(db, new)
        if not self.module.check_mode:
            for db in self.databases:
                # Statistics for the new server's planner (an initial copy leaves none), and visibility maps
                # on both sides so that the row counts inside the window can use index-only scans.
                self._new(db).execute("VACUUM (ANALYZE)")
                if self.verify_row_counts:
                    self._old(db).execute("VACUUM")
            # Shutdown writes a checkpoint; doing one now keeps the one in the window small.
            self._old(self.databases[0]).execute("CHECKPOINT")
            self._new(self.databases[0]).execute("CHECKPOINT")
        self._hba_file = self._old(self.databases[0]).scalar("SHOW hba_file")
        self._hba_original = read_text(self._hba_file)
        self._new_hba_file = self._new(self.databases[0]).scalar("SHOW hba_file")

    def _login_roles(self, session):
        """{role: password hash} of every role that can log in (hashes never leave this module)."""
        return dict(session.query("SELECT rolname, coalesce(rolpassword, '') FROM pg_authid "
                                  "WHERE rolcanlogin AND rolname <> $1", [self.replication_user]).rows)

    def _check_login_roles(self):
        """Roles are not replicated: a login role missing on the new server would lock its clients out."""
        old_roles = self._login_roles(self._old(self.databases[0]))
        new_roles = self._login_roles(self._new(self.databases[0]))
        missing = sorted(set(old_roles) - set(new_roles))
        if missing:
            raise OperationError("login roles of the old server are missing on the new one: %s" % ", ".join(missing),
                                 "create them on the new server (or run fleetdb.online_upgrade.migrate mode=create "
                                 "and mode=restore again, which carries roles), then run again")

    def _copy_role_passwords(self):
        """Passwords changed on the old server since the migrate (role changes are not replicated)."""
        old_roles = self._login_roles(self._old(self.databases[0]))
        new = self._new(self.databases[0])
        new_roles = self._login_roles(new)
        changed = [name for name, secret in old_roles.items() if secret and new_roles.get(name) != secret]
        for name in changed:
            new.execute("ALTER ROLE %s PASSWORD %s" % (pgwire.quote_ident(name), pgwire.quote_literal(old_roles[name])))
        self.report["role_passwords_copied"] = len(changed)

    def _check_subscription(self, db, new):
        rows = new.rows(
            "SELECT s.subenabled::text AS enabled, s.subslotname AS slot, "
            "       count(r.srrelid) AS tables, "
            "       count(r.srrelid) FILTER (WHERE r.srsubstate NOT IN ('r', 's')) AS copying "
            "  FROM pg_subscription s LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid "
            " WHERE s.subname = $1 GROUP BY s.subenabled, s.subslotname", [self._sub(db)])
        if not rows:
            raise OperationError("database %s on the new server has no subscription %s" % (db, self._sub(db)),
                                 "set up replication first (fleetdb.online_upgrade.replication state=synced)")
        sub = rows[0]
        self.report["databases"].setdefault(db, {})["slot"] = sub["slot"]
        if sub["slot"] is None:
            raise OperationError("subscription %s in database %s has no slot: an interrupted cutover detached it"
                                 % (self._sub(db), db),
                                 "set replication up again: fleetdb.online_upgrade.replication state=absent, "
                                 "then state=synced (the old server kept serving throughout)")
        if sub["enabled"] != "true":
            raise OperationError("subscription %s in database %s is paused" % (self._sub(db), db),
                                 "resume it (fleetdb.online_upgrade.replication state=started) and wait for sync")
        if int(sub["copying"]):
            raise OperationError("%s of %s tables of database %s are still in their initial copy"
                                 % (sub["copying"], sub["tables"], db),
                                 "wait for fleetdb.online_upgrade.replication state=synced before the cutover")
        lag = self._old(db).scalar(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
            "  FROM pg_replication_slots WHERE slot_name = $1", [sub["slot"]])
        if lag is not None and int(lag) > self.max_lag_bytes:
            raise OperationError("the new server is %s bytes behind in database %s" % (lag, db),
                                 "wait for replication to catch up (state=synced) or raise max_lag_bytes")

    def _check_schema(self, db, old, new):
        params = [list(SCHEMAS_NOT_COMPARED)]
        problems = schema_differences(old.query(SCHEMA_FINGERPRINT_SQL, params).rows,
                                      new.query(SCHEMA_FINGERPRINT_SQL, params).rows)
        if problems:
            raise OperationError(
                "the schemas of database %s differ between the old and the new server (DDL is not replicated): %s"
                % (db, "; ".join(problems[:20])),
                "apply the same DDL on the new server (or revert it on the old one), then run again",
                schema_differences=problems)

    def _ensure_marker(self, db, old, new):
        """A one-row-per-cutover table replicated like user tables: its row proves the drain."""
        ddl = ("CREATE SCHEMA IF NOT EXISTS %s; CREATE TABLE IF NOT EXISTS %s "
               "(token text PRIMARY KEY, fenced_at timestamptz NOT NULL DEFAULT clock_timestamp())"
               % (MARKER_SCHEMA, MARKER_TABLE))
        subscribed = new.scalar(
            "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid "
            " WHERE s.subname = $1 AND r.srrelid = to_regclass($2)", [self._sub(db), MARKER_TABLE])
        if subscribed not in (None, "0"):
            return
        if self.module.check_mode:
            return
        old.execute(ddl)
        new.execute(ddl)
        publications = new.scalar("SELECT array_to_string(subpublications, ',') FROM pg_subscription "
                                  "WHERE subname = $1", [self._sub(db)]).split(",")
        for pub in publications:
            all_tables = old.scalar("SELECT puballtables::text FROM pg_publication WHERE pubname = $1", [pub])
            if all_tables == "false":
                in_pub = old.scalar("SELECT count(*) FROM pg_publication_tables WHERE pubname = $1 "
                                    "AND schemaname = $2", [pub, MARKER_SCHEMA])
                if in_pub == "0":
                    old.execute("ALTER PUBLICATION %s ADD TABLE %s" % (pgwire.quote_ident(pub), MARKER_TABLE))
        new.execute("ALTER SUBSCRIPTION %s REFRESH PUBLICATION WITH (copy_data = false)"
                    % pgwire.quote_ident(self._sub(db)))
        deadline = time.monotonic() + 30
        while new.scalar("SELECT srsubstate::text FROM pg_subscription_rel WHERE srrelid = to_regclass($1)",
                         [MARKER_TABLE]) not in ("r", "s"):
            if time.monotonic() > deadline:
                raise OperationError("the drain marker table did not join the subscription within 30 s",
                                     "check the new server's log for replication errors")
            time.sleep(0.05)

    def _ensure_rollback_publication(self, db, new):
        """Created before its slot so that the slot can decode with it (see rollback in docs/procedure.md)."""
        name = self._rollback_name(db)
        if new.scalar("SELECT 1 FROM pg_publication WHERE pubname = $1", [name]) is None:
            # The tables the old server has too: not FOR ALL TABLES, which would take in the Record of Upgrades
            # (only on the new server) and make the old server's subscription fail.
            tables = [r[0] for r in new.query(ROLLBACK_TABLES_SQL, [list(SCHEMAS_NOT_COMPARED)]).rows]
            new.execute("CREATE PUBLICATION %s%s" % (pgwire.quote_ident(name),
                                                     " FOR TABLE " + ", ".join(tables) if tables else ""))

    # -- the window ---------------------------------------------------------
    def _cutover(self):
        window = self.timer.mark()
        old_stopped = False
        try:
            self.state.set("fencing", databases=self.databases, production_port=self.production_port)
            with self.timer.phase("fence"):
                self._fence()
            self.state.set("fenced")
            with self.timer.phase("drain"):
                for db in self.databases:
                    self._drain(db)
            with self.timer.phase("sequences"):
                for db in self.databases:
                    self._copy_sequences(db)
            with self.timer.phase("roles"):
                self._copy_role_passwords()
            if self.verify_row_counts:
                with self.timer.phase("verify"):
                    for db in self.databases:
                        self._compare_row_counts(db)
            with self.timer.phase("detach"):
                for db in self.databases:
                    self._detach(db)
            self._close_sessions()
            with self.timer.phase("stop"):
                old_stopped = self._stop_both()
            self.state.set("old_stopped")
        except Exception as exc:
            if "old" in self._signalled:
                self._rescue_old(exc)  # the old server is going down: bring it back, unfenced
            elif not old_stopped:
                self._abort(exc)
            raise
        self._after_old_stopped(window)

    def _after_old_stopped(self, window):
        with self.timer.phase("configure_old_port"):
            self._configure_old_port()
        self.state.set("new_starting")
        try:
            with self.timer.phase("start"):
                self._start_new()
        except Exception as exc:
            self._rescue_old(exc)
            raise
        self.report["window_seconds"] = self.timer.since(window) if window else None
        self.state.set("switched", window_seconds=self.report["window_seconds"], phases=dict(self.timer.timings))
        with self.timer.phase("cleanup"):
            self._drop_subscriptions()
        self.state.set("done")
        self.report.update(changed=True, msg="the new server serves port %d" % self.production_port)

    def _resume_after_old_stopped(self):
        if self.module.check_mode:
            self.report.update(changed=True, msg="a previous cutover stopped the old server; "
                               "the new server would be started on port %d" % self.production_port)
            return self.report
        self._after_old_stopped(None)
        self.report["resumed"] = True
        return self.report

    def _fence(self):
        admin = self._old(self.databases[0])
        hba = without_fence(self._hba_original)
        block = fence_block(self.replication_user, self.old.login_user or self.old.owner, self.databases)
        write_file(self.module, self._hba_file, block + hba, owner=self.old.owner, mode=0o640)
        if admin.scalar("SELECT pg_reload_conf()::text") != "true":
            raise OperationError("the old server refused to reload pg_hba.conf", "check its log")
        self._wait_fence_loaded()
        self._terminate_clients(admin)

    def _wait_fence_loaded(self):
        """pg_reload_conf() only signals the postmaster: probe until a new login meets the fence."""
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                pgwire.Connection(host=self.old.socket_dir, port=self.production_port, user="fleetdb_fence_probe",
                                  dbname=self.databases[0], connect_timeout=1).close()
            except pgwire.PgConnectError as exc:
                if "rejects connection" in str(exc):
                    return
            time.sleep(0.001)
        self.report["fence_probe"] = "not confirmed within 2 s; relying on the backend sweep"

    def _client_backends(self, admin):
        own = [s.backend_pid for s in self._old_sessions.values()]
        return [r[0] for r in admin.query(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> ALL ($1::int[]) AND usename IS DISTINCT FROM $2",
            [own, self.replication_user]).rows]

    def _terminate_clients(self, admin):
        """Terminate client backends until none is left (a backend may have slipped in before the reload)."""
        deadline = time.monotonic() + 10
        while True:
            pids = self._client_backends(admin)
            if not pids:
                return
            admin.query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", [pids])
            if time.monotonic() > deadline:
                raise OperationError("client backends %s did not end within 10 s" % ", ".join(pids),
                                     "look for sessions stuck in uninterruptible I/O on the old server")
            time.sleep(0.002)

    def _drain(self, db):
        """Insert a marker on the old server and wait until the new one has it."""
        old, new = self._old(db), self._new(db)
        deadline = time.monotonic() + self.drain_timeout
        attempt = 0
        while True:
            attempt += 1
            token = "%s-%d-%d" % (self.state.data.get("run_id") or os.getpid(), time.time_ns(), attempt)
            before = int(old.scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"))
            marker_xid = int(old.scalar("INSERT INTO %s (token) VALUES ($1) RETURNING pg_current_xact_id()::text"
                                        % MARKER_TABLE, [token]))
            while new.scalar("SELECT 1 FROM %s WHERE token = $1" % MARKER_TABLE, [token]) is None:
                if time.monotonic() > deadline:
                    raise OperationError("the new server did not receive the final changes of database %s within %d s"
                                         % (db, self.drain_timeout),
                                         "check replication (state, lag) on the new server's log; the old "
                                         "server was unfenced and keeps serving")
                time.sleep(0.002)
            after = int(old.scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"))
            # Our marker used exactly one transaction id; any other means a writer got past the fence.
            if marker_xid == before and after == before + 1 and not self._client_backends(old):
                return
            self._terminate_clients(self._old(self.databases[0]))

    def _copy_sequences(self, db):
        names = self.report["databases"][db]["sequences"]
        if not names:
            return
        old, new = self._old(db), self._new(db)
        union = " UNION ALL ".join(
            "SELECT %s, last_value, is_called FROM %s" % (pgwire.quote_literal(n), n) for n in names)
        rows = old.execute(union).rows
        new.query(
            "SELECT count(pg_catalog.setval(name::regclass, value, called)) "
            "  FROM unnest($1::text[], $2::bigint[], $3::bool[]) AS s(name, value, called)",
            [[r[0] for r in rows], [r[1] for r in rows], [r[2] == "t" for r in rows]])
        self.report["databases"][db]["sequences_copied"] = len(rows)

    def _compare_row_counts(self, db):
        tables = [r[0] for r in self._new(db).query(
            "SELECT r.srrelid::regclass::text FROM pg_subscription_rel r JOIN pg_subscription s "
            "  ON s.oid = r.srsubid WHERE s.subname = $1 AND r.srrelid <> to_regclass($2) ORDER BY 1",
            [self._sub(db), MARKER_TABLE]).rows]  # the marker holds rows of earlier cutovers (a rollback's new side)
        counts = {}

        def count(side, session):
            sql = " UNION ALL ".join("SELECT %s, count(*) FROM %s" % (pgwire.quote_literal(t), t) for t in tables)
            counts[side] = dict(session.execute(sql).rows) if tables else {}

        worker = threading.Thread(target=count, args=("old", self._old(db)))
        worker.start()
        count("new", self._new(db))
        worker.join()
        if "old" not in counts:
            raise OperationError("counting rows on the old server failed", "see the old server's log")
        mismatched = ["%s (old %s, new %s)" % (t, counts["old"][t], counts["new"][t])
                      for t in tables if counts["old"][t] != counts["new"][t]]
        if mismatched:
            raise OperationError("row counts differ after the drain in database %s: %s" % (db, ", ".join(mismatched)),
                                 "do not switch: investigate replication conflicts in the new server's log")
        self.report["databases"][db]["tables_verified"] = len(tables)
        self.report["databases"][db]["rows"] = sum(int(v) for v in counts["new"].values())

    def _detach(self, db):
        """Stop replication so the new server never connects to the port it is about to take."""
        new, old = self._new(db), self._old(db)
        sub = pgwire.quote_ident(self._sub(db))
        slot = self.report["databases"][db]["slot"]
        new.execute("ALTER SUBSCRIPTION %s DISABLE" % sub)
        deadline = time.monotonic() + 10
        while True:
            active = old.scalar("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                                [slot])
            if active is None:
                break
            old.query("SELECT pg_terminate_backend($1::int)", [active])
            if time.monotonic() > deadline:
                raise OperationError("the replication connection of %s did not end" % slot,
                                     "check the old server's log")
            time.sleep(0.002)
        old.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                  [slot])
        new.execute("ALTER SUBSCRIPTION %s SET (slot_name = NONE)" % sub)
        if self.rollback_slot:
            # Everything clients write to the new server from here on can be replayed to the old one.
            new.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput') "
                      " WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                      [self._rollback_name(db)])

    def _stop_both(self):
        """Fast shutdown of both servers at once; returns True once the old one is down."""
        pids = {}
        for name, spec in (("old", self.old), ("new", self.new)):
            pid = read_postmaster_pid(spec.data_dir)
            if pid:
                self._signalled.add(name)
                try:
                    os.kill(pid, signal.SIGINT)  # SIGINT = fast shutdown
                except OSError as exc:
                    if exc.errno != errno.ESRCH:
                        raise
                    continue  # it exited between the check and the signal: stopped all the same
                pids[name] = pid
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in pids.values()):
            if time.monotonic() > deadline:
                raise OperationError("the servers did not stop within 60 s", "check their logs")
            time.sleep(0.002)
        return True

    def _start_new(self):
        # A new server that once was an old one (a rollback) may still carry a fence.
        hba_file = self._new_hba_file or os.path.join(self.new.data_dir, "pg_hba.conf")
        hba = read_text(hba_file) or ""
        if FENCE_BEGIN in hba:
            write_file(self.module, hba_file, without_fence(hba), owner=self.new.owner, mode=0o640)
        self._set_configured_port(self.new, self.production_port)
        log_file = self.new.log_file or os.path.join(self.new.data_dir, "log", "server.log")
        rc, _out, err = run_as(self.module, self.new.owner,
                               [os.path.join(self.new.bin_dir, "pg_ctl"), "start", "--no-wait",
                                "-D", self.new.data_dir, "-l", log_file,
                                "-o", "-p %d" % self.production_port])
        if rc != 0:
            raise OperationError("the new server did not start on port %d: %s" % (self.production_port, err.strip()),
                                 "read %s" % log_file)
        session = connect(self.new, port=self.production_port, timeout=self.start_timeout)
        session.close()

    def _configure_old_port(self):
        """The old server, if ever started again, must not take the production port."""
        self._set_configured_port(self.old, self.old_port_after)

    def _set_configured_port(self, spec, port):
        conf = os.path.join(spec.data_dir, "fleetdb.conf")
        lines = [line for line in (read_text(conf) or "").splitlines() if not line.strip().startswith("port")]
        write_file(self.module, conf, "\n".join(lines + ["port = %d" % port]) + "\n", owner=spec.owner, mode=0o600)
        main_conf = os.path.join(spec.data_dir, "postgresql.conf")
        if "include_if_exists = 'fleetdb.conf'" not in (read_text(main_conf) or ""):
            with open(main_conf, "a") as handle:
                handle.write("\ninclude_if_exists = 'fleetdb.conf'\n")

    def _drop_subscriptions(self):
        for db in self.databases:
            session = connect(self.new, dbname=db, port=self.production_port)
            try:
                session.execute("DROP SUBSCRIPTION IF EXISTS %s" % pgwire.quote_ident(self._sub(db)))
                # A re-run's schema dump of the old server carries the upgrade's own publication over: not wanted here.
                session.execute("DROP PUBLICATION IF EXISTS %s" % pgwire.quote_ident(self._sub(db)))
                session.execute("DROP SCHEMA IF EXISTS %s CASCADE" % MARKER_SCHEMA)
            finally:
                session.close()

    # -- failure paths ------------------------------------------------------
    def _abort(self, exc):
        """Before the old server stopped: lift the fence, resume replication, leave the old server serving."""
        self.report["aborted_because"] = str(exc)
        try:
            self._lift_fence()
            for db in self.databases:
                try:
                    self._new(db).execute("ALTER SUBSCRIPTION %s ENABLE" % pgwire.quote_ident(self._sub(db)))
                except (pgwire.PgError, OperationError) as failure:
                    # the old server serves either way; the report keeps the first cause
                    self.report.setdefault("abort_warnings", []).append(str(failure))
        finally:
            self.state.set("aborted", error=str(exc))

    def _lift_fence(self):
        if self._hba_file is None:
            return
        write_file(self.module, self._hba_file, without_fence(read_text(self._hba_file) or ""),
                   owner=self.old.owner, mode=0o640)
        self._reload_old()

    def _lift_stale_fence(self):
        """A fence left by an interrupted run is lifted before checks start over."""
        hba_file = self._old(self.databases[0]).scalar("SHOW hba_file")
        if FENCE_BEGIN in (read_text(hba_file) or ""):
            self._hba_file = hba_file
            if not self.module.check_mode:
                self._lift_fence()
            self.report["stale_fence_lifted"] = True

    def _reload_old(self):
        pid = read_postmaster_pid(self.old.data_dir)
        if pid:
            os.kill(pid, signal.SIGHUP)

    def _rescue_old(self, exc):
        """The cutover failed once the old server was told to stop: bring it back on the production port, unfenced."""
        self.report["rescue"] = "the cutover failed after the old server was stopped (%s); restarting it" % exc
        pid = read_postmaster_pid(self.new.data_dir)
        if pid:
            os.kill(pid, signal.SIGQUIT)  # immediate: it may hold the production port
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        pid = read_postmaster_pid(self.old.data_dir)
        deadline = time.monotonic() + 60
        while pid and _alive(pid) and time.monotonic() < deadline:  # still finishing its shutdown
            time.sleep(0.01)
        self._set_configured_port(self.old, self.production_port)
        hba_file = self._hba_file or os.path.join(self.old.data_dir, "pg_hba.conf")
        write_file(self.module, hba_file, without_fence(read_text(hba_file) or ""), owner=self.old.owner, mode=0o640)
        log_file = self.old.log_file or os.path.join(self.old.data_dir, "log", "server.log")
        run_as(self.module, self.old.owner, [os.path.join(self.old.bin_dir, "pg_ctl"), "start", "-w",
                                             "-D", self.old.data_dir, "-l", log_file])
        self.state.set("rescued", error=str(exc))

    # -- state and sessions -------------------------------------------------------
    def _already_switched(self):
        """Done when the new server runs on the production port and the old server is down."""
        if self.state.phase not in ("switched", "done", None):
            return False
        if read_postmaster_pid(self.old.data_dir) is not None:
            return False
        pid_file = read_text(os.path.join(self.new.data_dir, "postmaster.pid"))
        if not pid_file or read_postmaster_pid(self.new.data_dir) is None:
            return False
        lines = pid_file.splitlines()
        if len(lines) < 4 or lines[3].strip() != str(self.production_port):
            return False
        if self.state.phase == "switched" and not self.module.check_mode:
            self._drop_subscriptions()
            self.state.set("done")
        return True

    def _sub(self, db):
        return subscription_name(self.subscription, db, self.databases)

    def _rollback_name(self, db):
        return subscription_name("fleetdb_rollback", db, self.databases)

    def _old(self, db):
        if db not in self._old_sessions:
            self._old_sessions[db] = connect(self.old, dbname=db, port=self.production_port,
                                             application_name="fleetdb.online_upgrade switchover")
        return self._old_sessions[db]

    def _new(self, db):
        if db not in self._new_sessions:
            self._new_sessions[db] = connect(self.new, dbname=db, port=self.temporary_port,
                                             application_name="fleetdb.online_upgrade switchover")
        return self._new_sessions[db]

    def _close_sessions(self):
        for sessions in (self._old_sessions, self._new_sessions):
            for session in sessions.values():
                session.close()
            sessions.clear()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie child is gone for our purpose.
    status = read_text("/proc/%d/stat" % pid) or ""
    return ") Z " not in status
