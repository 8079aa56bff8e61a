# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Steps 3 to 6 of the online upgrade in one call: the PostgreSQL cutover.

Before the window (clients still write to the old server):
  checks (subscriptions synced, schemas alike, no prepared transaction or extension worker the fence
  cannot stop), the sessions the window uses, the row counts of both servers compared at one point of
  replication (pg_row_check: it grows with the data, so never in the window), a checkpoint on both servers so
  their shutdowns are short, the drain marker table, the new server configured for the production port.
The client-visible window:
  fence       pg_hba.conf rejects every login but the replication role's on the socket (validated, then
              reloaded; a probe login must be rejected), then client backends are terminated;
  drain       a marker row per database on the old server, then wait until the new server has applied
              each (logical replication applies in commit order); then one check that no other
              transaction id was used meanwhile, else terminate and drain again;
  schema      the schema check again (a catalog read), and every table of the old server replicated;
  sequences   copy last_value/is_called of each sequence that moved since its copy before the fence;
  roles       password hashes changed since the migrate (never logged);
  detach      disable the subscriptions (their slots stay on the old server), create the rollback slot;
  stop        fast shutdown of both servers;
  proof       the old server's pg_control: cleanly shut down, next transaction id the one the drain saw;
  start       start the new server on the production port, wait until its postmaster.pid says ready.
Failure before the stop: the fence is lifted, replication resumes, the old server keeps serving.  After it,
and until the new server was ever ready: the old server comes back unfenced on the production port and
replication resumes from its slot.  A new server that may have accepted writes is never stopped or killed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import (
    cluster_objects as pg_cluster_objects, process as pg_process, sequences as pg_sequences, pgwire)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, PhaseTimer, read_text, write_file)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Switchover
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.cutover_logic import (
    PUBLISHED_TABLES_SQL, SUBSCRIBED_TABLES_SQL, XID_SQL, drain_is_clean, proof_problems)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade import phases
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.cutover_state import (
    FenceGuardian, Guardian, StateFile)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.fence import (
    blockers_fix, blockers_message, fence_block, fence_blockers, is_fenced, retired_block, without_fence)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance import PostgresInstance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.row_check import RowCountCheck
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.schema_check import SchemaCheck
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication import (  # noqa: F401
    reattach_subscription, subscription_name)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.service import manager as service_manager
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect, execute_unlogged

MARKER_SCHEMA = "fleetdb_switchover"
MARKER_TABLE = "fleetdb_switchover.drain_marker"
SCHEMAS_NOT_COMPARED = ("pg_catalog", "information_schema", "pg_toast", MARKER_SCHEMA, "fleetdb_upgrade_record")
APPLICATION_NAME = "fleetdb.online_upgrade switchover"
FENCE_PROBE_USER = "fleetdb_fence_probe"


class NewServerNeverReady(OperationError):
    """The new server exited before it ever accepted clients: it took no writes."""


class PostgresSwitchover(Switchover):
    """The cutover from ``old`` (serving on the production port) to ``new`` (on a temporary port)."""

    def __init__(self, module, old, new, databases, subscription, replication_user,
                 production_port, temporary_port, old_port_after, drain_timeout=60,
                 start_timeout=60, verify_row_counts=True, state_file=None, max_lag_bytes=64 * 1024 * 1024,
                 rollback_slot=True, pooler=None):
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
        self.pooler = pooler  # a PgBouncer in front of the old server (pgbouncer.PgBouncer), or None
        self._pooler_names = []
        self._paused = []
        self._pooler_guardian = None
        self.state = StateFile(module, state_file)
        self.timer = PhaseTimer()
        self.report = dict(databases=dict((db, {}) for db in self.databases), phases=self.timer.timings,
                           phase_order=self.timer.order, phase_started=self.timer.started)
        self._old_sessions = {}
        self._new_sessions = {}
        self._schema = SchemaCheck(SCHEMAS_NOT_COMPARED)
        self._hba_file = None
        self._new_hba_file = None
        self._probe_users = []
        self._guardian = None

    # -- entry point ------------------------------------------------------------
    def run(self):
        try:
            self._resume_stale_pause()
            if self._already_switched():
                self.report.update(changed=False, msg="the new server already serves the production port %d"
                                   % self.production_port, window_seconds=0.0)
                return self.report
            if self.state.phase in ("stop", "proof", "start", "new_not_ready"):
                self._wait_old_shutdown()
                if pg_process.postmaster(self.old.data_dir) is None:
                    return self._resume_after_old_stopped()
            with self.timer.phase("prepare"):
                self._prepare()
            if self.module.check_mode:
                self.report.update(changed=True, msg="checks passed; the cutover would run now", window_seconds=0.0)
                return self.report
            self._cutover()
        finally:
            self._close_sessions()
        return self.report

    def unfence(self):
        """Only lift the fence an interrupted cutover left on the running old server (the module died before the
        stop and its guardian could not lift it, or the host rebooted), without connecting: the fence would
        reject the connection.  Nothing else changes; a re-run of the cutover starts over."""
        hba_file = self.state.data.get("old_hba_file") or os.path.join(self.old.data_dir, "pg_hba.conf")
        resumed = []
        if self.state.data.get("pooler_paused") and self.pooler is not None:
            resumed = self.state.data["pooler_paused"]
            if not self.module.check_mode:
                self._resume_stale_pause()
        interrupted = self.state.phase in phases.FENCE_MAY_BE_UP
        if not interrupted or pg_process.postmaster(self.old.data_dir) is None or not is_fenced(read_text(hba_file)):
            if resumed:
                return dict(changed=True, msg="resumed PgBouncer's %s, paused by an interrupted cutover"
                            % ", ".join(resumed))
            return dict(changed=False, msg="no fence of an interrupted cutover on a running old server")
        self._hba_file = hba_file
        if not self.module.check_mode:
            self._lift_fence()
        return dict(changed=True, msg="lifted the fence the cutover interrupted at phase %s left in %s%s"
                    % (self.state.phase, hba_file, "; resumed PgBouncer's %s" % ", ".join(resumed) if resumed else ""))

    def _phase(self, name):
        """Record the phase (a re-run reads it), then time it."""
        self.state.set(name)
        return self.timer.phase(name)

    # -- before the window ------------------------------------------------------------
    def _prepare(self):
        if pg_process.postmaster(self.old.data_dir) is None:
            raise OperationError("the old server (%s) is not running" % self.old.data_dir,
                                 "start it on port %d, or if the cutover already ran, check the new server"
                                 % self.production_port)
        if pg_process.postmaster(self.new.data_dir) is None:
            raise OperationError("the new server (%s) is not running on its temporary port %d"
                                 % (self.new.data_dir, self.temporary_port),
                                 "start it with fleetdb.online_upgrade.server port=%d" % self.temporary_port)
        first = self.databases[0]
        self._hba_file = self._old(first).scalar("SHOW hba_file")
        self._new_hba_file = self._new(first).scalar("SHOW hba_file")
        self.state.data.update(old_hba_file=self._hba_file, new_hba_file=self._new_hba_file, databases=self.databases,
                               production_port=self.production_port)
        self._lift_stale_fence()
        self._resume_verified()
        self._check_pooler()
        new_psql = "runuser -u %s -- %s -h %s -p %d -d postgres" % (
            self.new.owner, os.path.join(self.new.bin_dir, "psql"), self.new.socket_dir, self.temporary_port)
        pg_cluster_objects.check(self._old(first), self._new(first), self.replication_user, new_psql)
        self._check_fence_blockers()
        for db in self.databases:
            old = self._old(db)  # every session the window uses is opened now: the fence lets no new one in
            new = self._new(db)
            self._resume_replication(db, new)
            self._check_subscription(db, new)
            self._ensure_marker(db, old, new)   # first: it joins the subscription, which the check reads
            self._schema.compare(db, old, new, self._sub(db))
            if self.rollback_slot and not self.module.check_mode:
                self._ensure_rollback_publication(db, new)
        self._probe_users = dict((user, self._probe(user)) for user in self._fence_probe_users())
        if self.module.check_mode:
            return
        self.state.reached("compared")   # a test changes the schema here, for the window's check to find
        with self.timer.phase("vacuum"):  # reported: on the production server, outside the window
            for db in self.databases:
                # Statistics for the new server's planner (an initial copy leaves none), and its visibility
                # map for the row counts' index-only scans.  ANALYZE on the old server too: an autovacuum ANALYZE
                # inside the window would take a transaction id, which the proof counts as a write past the fence.
                self._new(db).execute("VACUUM (ANALYZE)")
                self._old(db).execute("ANALYZE")
        if self.verify_row_counts:
            with self.timer.phase("verify"):  # before the window: counting grows with the data
                for db in self.databases:
                    self._compare_row_counts(db)
                for db in self.databases:
                    self._wait_caught_up(db)
        for db in self.databases:  # the window then sets only those that moved
            self.report["databases"][db]["sequences_copied_before_fence"] = self._copy_sequences(db)
        with self.timer.phase("checkpoint"):
            # Shutdown writes a checkpoint; doing one now keeps the one in the window small.
            self._old(first).execute("CHECKPOINT")
            self._new(first).execute("CHECKPOINT")
        # Configured now, used at the start in the window: the running server keeps its temporary port.
        PostgresInstance(self.module, self.new).set_port(self.production_port)
        # From here on nothing may hang the window: every statement and socket read has a limit.
        for session in list(self._old_sessions.values()) + list(self._new_sessions.values()):
            session.execute("SET statement_timeout = %d" % (self.drain_timeout * 1000))
            session.execute("SET lock_timeout = %d" % (self.drain_timeout * 1000))
            session.set_io_timeout(self.drain_timeout + 1)
        self.state.data.update(slots=dict((db, self.report["databases"][db]["slot"]) for db in self.databases),
                               rollback_slots=dict((db, self._rollback_name(db)) for db in self.databases)
                               if self.rollback_slot else {})

    def _login_roles(self, session):
        """{role: password hash} of every role that can log in (hashes never leave this module)."""
        return dict(session.query("SELECT rolname, coalesce(rolpassword, '') FROM pg_authid "
                                  "WHERE rolcanlogin AND rolname <> $1", [self.replication_user]).rows)

    def _check_fence_blockers(self):
        blockers = fence_blockers(self._old(self.databases[0]))
        if blockers:
            raise OperationError("the fence cannot hold these back: %s" % blockers_message(blockers),
                                 blockers_fix(blockers) + "; then run again (nothing was changed)",
                                 fence_blockers=blockers)

    def _fence_probe_users(self):
        """Logins the fence must reject before the drain starts: the admin (a superuser) and an application role
        (or, with none, a name no role has: the fence rejects in pg_hba.conf, before any role lookup)."""
        admin = self.old.login_user or self.old.owner
        app = self._old(self.databases[0]).scalar(
            "SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname <> ALL ($1::text[]) "
            "ORDER BY rolsuper, rolname LIMIT 1", [[admin, self.replication_user]])
        return [admin, app or FENCE_PROBE_USER]

    def _resume_replication(self, db, new):
        """A subscription an interrupted cutover detached (its slot stays on the old server) is attached again."""
        slot = (self.state.data.get("slots") or {}).get(db)
        if not slot or self.module.check_mode:
            return
        was = new.scalar("SELECT subenabled::text FROM pg_subscription WHERE subname = $1", [self._sub(db)])
        if reattach_subscription(new, self._old(db), self._sub(db), slot) and was != "true":
            self.report["databases"][db]["replication_resumed"] = True
        if self.rollback_slot:
            # A rollback slot of an interrupted cutover would replay the catch-up since: start it again.
            new.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                      "WHERE slot_name = $1 AND NOT active", [self._rollback_name(db)])

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
        self.report["databases"][db]["slot"] = sub["slot"]
        if sub["slot"] is None:
            raise OperationError("subscription %s in database %s has no slot: it was detached and its slot on the "
                                 "old server is gone" % (self._sub(db), db),
                                 "set replication up again: fleetdb.online_upgrade.replication state=absent, "
                                 "then state=synced (the old server kept serving throughout)")
        if sub["enabled"] != "true" and not self.module.check_mode:
            raise OperationError("subscription %s in database %s is paused" % (self._sub(db), db),
                                 "resume it (fleetdb.online_upgrade.replication state=started) and wait for sync")
        if int(sub["copying"]):
            raise OperationError("%s of %s tables of database %s are still in their initial copy"
                                 % (sub["copying"], sub["tables"], db),
                                 "wait for fleetdb.online_upgrade.replication state=synced before the cutover")
        lag = self._lag(db, sub["slot"])
        if lag is not None and lag > self.max_lag_bytes:
            raise OperationError("the new server is %s bytes behind in database %s" % (lag, db),
                                 "wait for replication to catch up (state=synced) or raise max_lag_bytes")

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
            tables = [r[0] for r in new.query(PUBLISHED_TABLES_SQL, [list(SCHEMAS_NOT_COMPARED)]).rows]
            new.execute("CREATE PUBLICATION %s%s WITH (publish_via_partition_root = true)"
                        % (pgwire.quote_ident(name), " FOR TABLE " + ", ".join(tables) if tables else ""))

    # -- the window ---------------------------------------------------------
    def _cutover(self):
        window = self.timer.mark()
        self.state.data.pop("error", None)
        try:
            if self._pooler_names:
                with self._phase("pause"):
                    self._pause()
            self._window(window)
        finally:
            self._resume_pooler()

    def _window(self, window):
        self._guardian = FenceGuardian(self._hba_file, self.old.data_dir)
        self._guardian.start()
        signalled = False
        try:
            with self._phase("fence"):
                self._fence()
            with self._phase("drain"):
                self._drain()
            with self._phase("schema"):
                # Again, now that no session can change it: has any catalog row changed since (pg_schema_check)?
                for db in self.databases:
                    self.report.setdefault("schema_in_window", {})[db] = self._schema.unchanged(
                        db, self._old(db), self._new(db), self._sub(db))
            with self._phase("sequences"):
                for db in self.databases:
                    self.report["databases"][db]["sequences_copied"] = self._copy_sequences(db)
            with self._phase("roles"):
                self._copy_role_passwords()
            with self._phase("detach"):
                for db in self.databases:
                    self._detach(db)
            self._close_sessions()
            with self._phase("stop"):
                self._guardian.disarm()  # here, not before the phase: a module killed at the phase is guarded
                signalled = True
                self._stop_both()
            with self._phase("proof"):
                self._prove_drain()
        except Exception as exc:
            try:
                if signalled:
                    self._rescue_old(exc)
                else:
                    self._abort(exc)
            finally:
                self._guardian.disarm()
            raise
        self._start_and_finish(window)

    def _fence(self):
        admin = self._old(self.databases[0])
        hba = without_fence(read_text(self._hba_file) or "")
        block = fence_block(self.replication_user, self.databases)
        write_file(self.module, self._hba_file, block + hba, owner=self.old.owner, mode=0o640)
        # pg_hba_file_rules reads the file on disk: an error there would make the reload keep the old rules.
        errors = ["line %s: %s" % tuple(r) for r in admin.query(
            "SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL").rows]
        if errors:
            raise OperationError("the fenced pg_hba.conf does not load: %s" % "; ".join(errors),
                                 "correct %s (the errors may be in its original rules)" % self._hba_file)
        if admin.scalar("SELECT pg_reload_conf()::text") != "true":
            raise OperationError("the old server refused to reload pg_hba.conf", "check its log")
        self._wait_fence_loaded()
        self._terminate_clients(admin)

    def _wait_fence_loaded(self):
        """pg_reload_conf() only signals the postmaster: probe until new logins, the admin's and an application
        role's included, meet the fence.  Unconfirmed, the cutover does not go on."""
        deadline = time.monotonic() + 5
        waiting = list(self._probe_users)
        while waiting:
            user = waiting[0]
            answer = self._probe(user)
            # The message is translated (lc_messages) but names the file; it differs from the one before the fence.
            if "pg_hba.conf" in answer and answer != self._probe_users[user]:
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                raise OperationError("the fence did not take effect within 5 s: a login as %s was not rejected "
                                     "by pg_hba.conf (%s)" % (user, answer),
                                     "check that %s is the file the old server reads (SHOW hba_file) and its log; "
                                     "the fence was lifted and the old server keeps serving" % self._hba_file)
            time.sleep(0.001)

    def _probe(self, user):
        """How the old server answers a login as ``user`` with no password, on the socket."""
        try:
            pgwire.Connection(host=self.old.socket_dir, port=self.production_port, user=user,
                              dbname=self.databases[0], connect_timeout=1, io_timeout=1,
                              application_name="fleetdb fence probe").close()
        except pgwire.PgError as exc:
            return str(exc)
        return "logged in"

    def _client_backends(self, admin):
        """Sessions that are not the cutover's, and autovacuum workers (their ANALYZE takes transaction ids)."""
        own = [s.backend_pid for s in self._old_sessions.values()]
        return [r[0] for r in admin.query(
            "SELECT pid FROM pg_stat_activity WHERE pid <> ALL ($1::int[]) "
            "AND (backend_type = 'autovacuum worker' OR (backend_type = 'client backend' "
            "     AND usename IS DISTINCT FROM $2))",
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

    def _drain(self):
        """Markers in every database, wait until the new server has them all, then check once that no other
        transaction took an id meanwhile (transaction ids are cluster-wide); else terminate and start over."""
        admin = self._old(self.databases[0])
        deadline = time.monotonic() + self.drain_timeout
        attempt = 0
        while True:
            attempt += 1
            before = int(admin.query(XID_SQL).rows[0][0])
            tokens, xids = {}, []
            for db in self.databases:
                tokens[db] = "%s-%d-%d" % (self.state.data.get("run_id") or os.getpid(), time.time_ns(), attempt)
                xids.append(int(self._old(db).scalar(
                    "INSERT INTO %s (token) VALUES ($1) RETURNING pg_current_xact_id()::text" % MARKER_TABLE,
                    [tokens[db]])))
            for db in self.databases:
                new = self._new(db)
                while new.scalar("SELECT 1 FROM %s WHERE token = $1" % MARKER_TABLE, [tokens[db]]) is None:
                    if time.monotonic() > deadline:
                        raise OperationError(
                            "the new server did not receive the final changes of database %s within %d s"
                            % (db, self.drain_timeout),
                            "check replication (state, lag) on the new server's log; the old server was "
                            "unfenced and keeps serving")
                    time.sleep(0.002)
            after, in_progress = (int(v) for v in admin.query(XID_SQL).rows[0])
            if drain_is_clean(before, xids, after, in_progress) and not self._client_backends(admin):
                self.state.data.update(drain_next_xid=after, drain_attempts=attempt)
                self.report["drain_attempts"] = attempt
                return
            self._check_fence_blockers()  # a prepared transaction holds its id: the drain could never end
            if time.monotonic() > deadline:
                raise OperationError("the drain could not prove within %d s that no other session writes "
                                     "(transaction ids %d to %d, %d in progress)" % (self.drain_timeout, before,
                                                                                     after, in_progress),
                                     "look for sessions or workers that write on the old server")
            self._terminate_clients(admin)

    def _copy_sequences(self, db):
        """Set on the new server every sequence that differs from the old one's; return how many."""
        count, copied = pg_sequences.copy(self._old(db), self._new(db), SCHEMAS_NOT_COMPARED)
        self.report["databases"][db]["sequences"] = count
        return copied

    def _copy_role_passwords(self):
        """Passwords changed on the old server since the migrate (role changes are not replicated)."""
        old_roles = self._login_roles(self._old(self.databases[0]))
        new = self._new(self.databases[0])
        new_roles = self._login_roles(new)
        changed = [name for name, secret in old_roles.items() if secret and new_roles.get(name) != secret]
        for name in changed:
            execute_unlogged(new, "ALTER ROLE %s PASSWORD %s"
                             % (pgwire.quote_ident(name), pgwire.quote_literal(old_roles[name])))
        self.report["role_passwords_copied"] = len(changed)

    def _compare_row_counts(self, db):
        """Row counts of both servers at one point of replication (pg_row_check), while clients write."""
        tables = [r[0] for r in self._new(db).query(SUBSCRIBED_TABLES_SQL, [self._sub(db)]).rows
                  if r[0] != MARKER_TABLE]  # the marker holds earlier cutovers' rows (a rollback's new side)
        self.state.data.setdefault("verifying", []).append(db)
        self.state.save()
        gap = connect(self.old, dbname=db, port=self.production_port, application_name=APPLICATION_NAME)
        try:
            checked = RowCountCheck(self._old(db), gap, self._new(db), self._sub(db),
                                    self.report["databases"][db]["slot"], tables, timeout=self.drain_timeout).run()
        finally:
            gap.close()
            self.state.data["verifying"].remove(db)
            self.state.save()
        self.report["databases"][db].update(checked)

    def _resume_verified(self):
        """A run that died while counting left the subscription disabled: enable it again."""
        for db in list(self.state.data.get("verifying") or []):
            if not self.module.check_mode:
                self._new(db).execute("ALTER SUBSCRIPTION %s ENABLE" % pgwire.quote_ident(self._sub(db)))
                self.state.data["verifying"].remove(db)
                self.state.save()

    def _lag(self, db, slot):
        lag = self._old(db).scalar(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
            "  FROM pg_replication_slots WHERE slot_name = $1", [slot])
        return None if lag is None else int(lag)

    def _wait_caught_up(self, db):
        """The counts paused replication: let the new server catch up before the fence."""
        slot = self.report["databases"][db]["slot"]
        deadline = time.monotonic() + max(60, 10 * self.drain_timeout)
        while (self._lag(db, slot) or 0) > self.max_lag_bytes:
            if time.monotonic() > deadline:
                raise OperationError("the new server is %s bytes behind in database %s after the row counts"
                                     % (self._lag(db, slot), db),
                                     "wait for replication to catch up (state=synced), then run again")
            time.sleep(0.1)

    def _detach(self, db):
        """Disable the subscription so the new server never connects to the port it is about to take.  Its slot
        stays on the old server: a cutover that fails from here on resumes replication from it."""
        new, old = self._new(db), self._old(db)
        sub = pgwire.quote_ident(self._sub(db))
        slot = self.report["databases"][db]["slot"]
        new.execute("ALTER SUBSCRIPTION %s DISABLE" % sub)
        deadline = time.monotonic() + 10
        while True:
            active = old.scalar("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", [slot])
            if active is None:
                break
            old.query("SELECT pg_terminate_backend($1::int)", [active])
            if time.monotonic() > deadline:
                raise OperationError("the replication connection of %s did not end" % slot,
                                     "check the old server's log")
            time.sleep(0.002)
        new.execute("ALTER SUBSCRIPTION %s SET (slot_name = NONE)" % sub)
        if self.rollback_slot:
            # Everything clients write to the new server from here on can be replayed to the old one.
            new.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput') "
                      " WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                      [self._rollback_name(db)])

    def _stop_both(self):
        """Fast shutdown of both servers at once."""
        pids = [pid for pid in (pg_process.fast_shutdown(self.old.data_dir),
                                pg_process.fast_shutdown(self.new.data_dir)) if pid]
        if not pg_process.wait_exit(pids, 60):
            raise OperationError("the servers did not stop within 60 s", "check their logs")

    def _prove_drain(self):
        """What the stopped old server's own files say: nothing took a transaction id after the drain."""
        old, new = self._controldata(self.old, self.new)
        problems = proof_problems(old, self.state.data["drain_next_xid"])
        self.report["proof"] = dict(old_next_xid=pg_process.controldata_xid(old),
                                    drain_next_xid=self.state.data["drain_next_xid"], problems=problems)
        if problems:
            raise OperationError("the proof failed: %s. The new server was not started on the production port"
                                 % "; ".join(problems),
                                 "find what wrote on the old server after the fence (its log), then run again: "
                                 "the old server was restarted unfenced with all its data and replication resumed")
        self.state.data["new_next_xid"] = pg_process.controldata_xid(new)

    def _controldata(self, *specs):
        """pg_controldata of each stopped server (run side by side: this is inside the window)."""
        try:
            return pg_process.controldata(specs)
        except pg_process.ControlDataError as exc:
            raise OperationError(str(exc), "check the data directory")

    # -- after the old server stopped ----------------------------------------------------
    def _start_and_finish(self, window):
        try:
            with self._phase("start"):
                self._start_new()
        except NewServerNeverReady as exc:
            self._rescue_old(exc)
            raise
        except Exception as exc:
            self.state.set("new_not_ready", error=str(exc))
            raise
        if self._paused:
            with self._phase("resume"):
                self._resume_pooler()
        self.report["window_seconds"] = self.timer.since(window) if window else None
        self.state.set("switched", window_seconds=self.report["window_seconds"], phases=dict(self.timer.timings))
        with self.timer.phase("cleanup"):
            self._cleanup()
        self.state.set("done")
        self.report.update(changed=True, msg="the new server serves port %d" % self.production_port)

    def _resume_after_old_stopped(self):
        """A previous run stopped the old server and was interrupted: prove, then start the new server."""
        if self.module.check_mode:
            self.report.update(changed=True, msg="a previous cutover stopped the old server; the new server would "
                               "be started on port %d" % self.production_port)
            return self.report
        self.report["resumed"] = True
        if self.state.phase in ("stop", "proof"):
            try:
                with self._phase("proof"):
                    self._prove_drain()
            except Exception as exc:
                self._rescue_old(exc)
                raise
        self._start_and_finish(None)
        return self.report

    def _wait_old_shutdown(self):
        """A run interrupted while the old server shut down: let it finish (it then counts as stopped)."""
        info = pg_process.postmaster(self.old.data_dir)
        if info and info["status"] == pg_process.STATUS_STOPPING:
            pg_process.wait_exit([info["pid"]], 60)

    def _start_new(self):
        """Start the new server on the production port; return once its postmaster.pid says ready."""
        hba_file = (self._new_hba_file or self.state.data.get("new_hba_file")
                    or os.path.join(self.new.data_dir, "pg_hba.conf"))
        hba = read_text(hba_file)
        if is_fenced(hba):  # a new server that once was an old one (a rollback) carries the fence it retired with
            write_file(self.module, hba_file, without_fence(hba), owner=self.new.owner, mode=0o640)
        info = pg_process.postmaster(self.new.data_dir)
        if info is not None and info["port"] != self.production_port:
            raise OperationError("the new server runs on port %s, not on the production port %d, with the old server "
                                 "stopped" % (info["port"], self.production_port),
                                 "stop it (pg_ctl stop -D %s) and run again" % self.new.data_dir)
        if info is None:
            try:
                # Under its service manager (systemd, postgresql-common), on the port it is configured for: the
                # manager returns at once, this polls postmaster.pid, which is faster than any manager's own wait.
                service_manager(self.module, self.new).start()
            except OperationError as exc:
                raise self._never_ready(exc.msg)
        deadline = time.monotonic() + self.start_timeout
        seen = False
        while True:
            info = pg_process.parse_postmaster_pid(read_text(os.path.join(self.new.data_dir, "postmaster.pid")))
            alive = info is not None and pg_process.process_alive(info["pid"])
            if alive and info["status"] == pg_process.STATUS_READY and info["port"] == self.production_port:
                return
            seen = seen or alive
            if seen and not alive:
                raise self._never_ready("the new server exited while starting")
            if time.monotonic() > deadline:
                if not seen:
                    raise self._never_ready("no postmaster of the new server appeared within %d s"
                                            % self.start_timeout)
                raise OperationError(
                    "the new server is still starting after %d s (postmaster.pid status: %s); it was left running, "
                    "because it may accept writes any moment" % (self.start_timeout, info and info["status"]),
                    "watch its log (%s); once it accepts connections run again, which finishes the cutover. Do not "
                    "start the old server: the new one may hold writes it lacks"
                    % (self.new.log_file or self.new.data_dir + "/log/server.log"))
            time.sleep(0.002)

    def _never_ready(self, why):
        log_file = self.new.log_file or os.path.join(self.new.data_dir, "log", "server.log")
        tail = "\n".join((read_text(log_file) or "").rstrip("\n").splitlines()[-10:])
        return NewServerNeverReady("the new server did not start on port %d: %s\nlast lines of %s:\n%s"
                                   % (self.production_port, why, log_file, tail),
                                   "correct the cause named in the log, then run again")

    def _cleanup(self):
        """After the switch: what starts at boot (the new server, not the old one), the old server's port, the
        upgrade's subscriptions on the new server, and its slots in the stopped old server's files (they would
        hold WAL if it were ever started)."""
        new_service, old_service = service_manager(self.module, self.new), service_manager(self.module, self.old)
        new_service.set_enabled(True)
        new_service.wait_started(self.start_timeout)
        old_service.set_enabled(False)
        old_service.settle_stopped()
        self.report["services"] = dict(new=new_service.describe(), old=old_service.describe())
        PostgresInstance(self.module, self.old).set_port(self.old_port_after)
        hba_file = (self._hba_file or self.state.data.get("old_hba_file")
                    or os.path.join(self.old.data_dir, "pg_hba.conf"))
        admin = self.old.login_user or self.old.owner
        write_file(self.module, hba_file, retired_block(admin, self.replication_user, self.databases,
                                                        peer=not self.old.login_password)
                   + without_fence(read_text(hba_file) or ""), owner=self.old.owner, mode=0o640)
        for db in self.databases:
            session = connect(self.new, dbname=db, port=self.production_port, timeout=self.start_timeout,
                              retry_sqlstates=("53300",))  # clients reconnecting may fill the server for a moment
            try:
                sub = pgwire.quote_ident(self._sub(db))
                if session.scalar("SELECT 1 FROM pg_subscription WHERE subname = $1", [self._sub(db)]):
                    session.execute("ALTER SUBSCRIPTION %s DISABLE" % sub)
                    session.execute("ALTER SUBSCRIPTION %s SET (slot_name = NONE)" % sub)
                    session.execute("DROP SUBSCRIPTION %s" % sub)
                # A re-run's schema dump of the old server carries the upgrade's own publication over: not wanted.
                session.execute("DROP PUBLICATION IF EXISTS %s" % sub)
                session.execute("DROP SCHEMA IF EXISTS %s CASCADE" % MARKER_SCHEMA)
            finally:
                session.close()
        if pg_process.postmaster(self.old.data_dir) is None:
            for slot in (self.state.data.get("slots") or {}).values():
                path = os.path.join(self.old.data_dir, "pg_replslot", slot or "")
                if slot and os.path.isdir(path):
                    shutil.rmtree(path)
            _fsync_dir(os.path.join(self.old.data_dir, "pg_replslot"))

    # -- the pooler -----------------------------------------------------------
    def _check_pooler(self):
        if self.pooler is None:
            return
        problems = self.pooler.problems(self.production_port, self.databases)
        if problems:
            raise OperationError("PgBouncer cannot hold clients through the cutover: %s"
                                 % "; ".join(problem for problem, _fix in problems),
                                 "; ".join(fix for _problem, fix in problems if fix) + " (nothing was changed)")
        self._pooler_names = [row["name"] for row in self.pooler.entries(self.production_port, self.databases)]
        self.report["pooler"] = dict(version=self.pooler.version(), databases=self._pooler_names)

    def _pause(self):
        """PAUSE PgBouncer's databases: from here clients wait in PgBouncer instead of seeing errors.  A guardian
        RESUMEs them if this process dies, whatever the phase."""
        pooler, names = self.pooler, list(self._pooler_names)
        self._pooler_guardian = Guardian(lambda: pooler.resume(names))
        self._pooler_guardian.start()
        self._paused = names
        self.state.set("pause", pooler_paused=names)
        self.report["pooler"]["pause_seconds"] = round(self.pooler.pause(names), 4)

    def _resume_pooler(self):
        if not self._paused:
            return
        names, self._paused = self._paused, []
        try:
            self.pooler.resume(names)
        finally:
            self.state.data.pop("pooler_paused", None)
            self.state.save()
            self._pooler_guardian.disarm()

    def _resume_stale_pause(self):
        """A run that died with PgBouncer paused (its guardian too: a reboot) left clients waiting: let them go."""
        names = self.state.data.get("pooler_paused")
        if names and self.pooler is not None and not self.module.check_mode:
            self.pooler.resume(names)
            self.state.data.pop("pooler_paused", None)
            self.state.save()
            self.report["stale_pause_resumed"] = names

    # -- failure paths ------------------------------------------------------
    def _abort(self, exc):
        """Before the old server was told to stop: lift the fence, resume replication, leave the old server serving."""
        self.report["aborted_because"] = str(exc)
        try:
            self._lift_fence()
            for db in self.databases:
                try:
                    self._resume_replication(db, self._new(db))
                except (pgwire.PgError, OperationError) as failure:
                    # the old server serves either way; the report keeps the first cause
                    self.report.setdefault("abort_warnings", []).append(str(failure))
        finally:
            self.state.set("aborted", error=str(exc))

    def _lift_fence(self):
        if self._hba_file is None:
            return
        text = read_text(self._hba_file) or ""
        if is_fenced(text):
            write_file(self.module, self._hba_file, without_fence(text), owner=self.old.owner, mode=0o640)
        pg_process.reload(self.old.data_dir)

    def _lift_stale_fence(self):
        """A fence left by an interrupted run is lifted before checks start over."""
        if is_fenced(read_text(self._hba_file)):
            if not self.module.check_mode:
                self._lift_fence()
            self.report["stale_fence_lifted"] = True

    def _rescue_old(self, exc):
        """The old server was told to stop and the new one never served: bring the old one back on the
        production port, unfenced, and resume replication into the new one on its temporary port."""
        self.report["rescue"] = "the cutover failed after the old server was stopped (%s)" % exc
        self.state.set("rescuing", error=str(exc))
        problem = self._new_took_writes()
        if problem:
            self.report["rescue"] += "; the old server was NOT restarted: %s" % problem
            self.state.set("new_not_ready", error=str(exc), rescue_refused=problem)
            return
        if not pg_process.wait_exit([p for p in [pg_process.postmaster_pid(self.old.data_dir)] if p], 60):
            self.report["rescue"] += "; the old server did not finish its shutdown: start it by hand"
            self.state.set("rescue_failed", error=str(exc))
            return
        old = PostgresInstance(self.module, self.old)
        try:
            hba_file = (self._hba_file or self.state.data.get("old_hba_file")
                        or os.path.join(self.old.data_dir, "pg_hba.conf"))
            write_file(self.module, hba_file, without_fence(read_text(hba_file) or ""), owner=self.old.owner,
                       mode=0o640)
            old.start(port=self.production_port, timeout=self.start_timeout)
        except OperationError as failure:
            self.report["rescue"] += "; restarting the old server FAILED: %s" % failure.msg
            self.state.set("rescue_failed", error=str(exc), rescue_error=failure.msg)
            return
        self.report["rescue"] += "; the old server serves port %d again, unfenced" % self.production_port
        self.state.set("rescued", error=str(exc))
        try:
            PostgresInstance(self.module, self.new).start(port=self.temporary_port, timeout=self.start_timeout)
            for db in self.databases:
                self._resume_replication(db, self._new(db))
        except (OperationError, pgwire.PgError) as failure:
            self.report["rescue"] += "; replication did not resume (%s): a re-run resumes it" % failure

    def _new_took_writes(self):
        """None when the new server provably accepted no transaction since it was stopped in the window."""
        if pg_process.postmaster(self.new.data_dir) is not None:
            return "the new server runs (pid file: %s)" % pg_process.postmaster(self.new.data_dir)["status"]
        baseline = self.state.data.get("new_next_xid")
        if baseline is None:
            return None  # it was never stopped by this cutover's proof: it never left its temporary port
        control = self._controldata(self.new)[0]
        if not pg_process.cleanly_shut_down(control) or pg_process.controldata_xid(control) != baseline:
            return ("the new server's pg_control (state %s, next xid %s, %s at the stop) does not prove it took "
                    "no writes; start it (pg_ctl start) and run the upgrade again"
                    % (control.get("Database cluster state"), pg_process.controldata_xid(control), baseline))
        return None

    # -- state and sessions -------------------------------------------------------
    def _already_switched(self):
        """Done when the new server runs on the production port and the old server is down."""
        if self.state.phase not in ("switched", "done", "start", "new_not_ready", None):
            return False
        if pg_process.postmaster(self.old.data_dir) is not None:
            return False
        info = pg_process.postmaster(self.new.data_dir)
        if not info or info["port"] != self.production_port or info["status"] != pg_process.STATUS_READY:
            return False
        if self.state.phase != "done" and not self.module.check_mode:
            self.state.set("switched")
            self._cleanup()
            self.state.set("done")
        return True

    def _sub(self, db):
        return subscription_name(self.subscription, db, self.databases)

    def _rollback_name(self, db):
        return subscription_name("fleetdb_rollback", db, self.databases)

    def _old(self, db):
        if db not in self._old_sessions or self._old_sessions[db].closed:  # closed: a timeout ended it
            self._old_sessions[db] = connect(self.old, dbname=db, port=self.production_port,
                                             application_name=APPLICATION_NAME)
        return self._old_sessions[db]

    def _new(self, db):
        if db not in self._new_sessions or self._new_sessions[db].closed:
            self._new_sessions[db] = connect(self.new, dbname=db, port=self.temporary_port,
                                             application_name=APPLICATION_NAME)
        return self._new_sessions[db]

    def _close_sessions(self):
        for sessions in (self._old_sessions, self._new_sessions):
            for session in sessions.values():
                session.close()
            sessions.clear()


def _fsync_dir(path):
    if not os.path.isdir(path):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
