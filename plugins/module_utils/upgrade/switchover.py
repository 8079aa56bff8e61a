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
  detach      pg_cron's jobs (paused on the old server just before the fence) made active on the new one,
              disable the subscriptions (their slots stay on the old server), create the rollback slot;
  stop        fast shutdown of both servers;
  proof       the old server's pg_control: cleanly shut down, next transaction id the one the drain saw;
  start       start the new server on the production port, wait until its postmaster.pid says ready.
Around the window (switchover_archiving): the old server's archive backlog pushed before the fence; after it,
the new server's archiving (and its pgBackRest stanza) set up and verified; its full backup (back_up) in a
module call of its own afterwards.
Failure before the stop: the fence is lifted, replication resumes, the old server keeps serving.  After it,
and until the new server was ever ready: the old server comes back unfenced on the production port and
replication resumes from its slot.  A new server that may have accepted writes is never stopped or killed.

PostgresSwitchover is this file (the entry points, the order of the window, the pooler, the sessions) and its
parts: before the window (switchover_checks), fence to proof (switchover_window), the start of the new
server, the cleanup and the failure paths (switchover_finish).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import process as pg_process
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import PhaseTimer
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Switchover
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade import phases
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.cutover_state import (
    FenceGuardian, Guardian, StateFile)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.fence import is_fenced
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.hba import HbaFile, hba_path
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.schema_check import SchemaCheck
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication import (
    reattach_subscription, subscription_name)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.slots import drop_unused_slot
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.switchover_checks import (
    APPLICATION_NAME, SCHEMAS_NOT_COMPARED, BeforeWindow)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.switchover_window import Window
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.switchover_finish import AfterStop
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.switchover_jobs import CronJobs
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.switchover_archiving import Archiving


class PostgresSwitchover(BeforeWindow, Window, AfterStop, CronJobs, Archiving, Switchover):
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
        self._hba = None       # the old server's pg_hba.conf (pg_hba.HbaFile), the new one's
        self._new_hba = None
        self._probe_users = []
        self._guardian = None
        self._cron_db = None   # the database of the old server's pg_cron jobs (switchover_jobs)
        self._large_objects = None   # large_object_sync.LargeObjectSync, from the prepare on

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
            self._drop_large_objects_slot()
            self._close_sessions()
        return self.report

    def unfence(self):
        """Only lift the fence an interrupted cutover left on the running old server (the module died before the
        stop and its guardian could not lift it, or the host rebooted), without connecting: the fence would
        reject the connection.  Nothing else changes; a re-run of the cutover starts over."""
        hba = self._hba_of(self.old, self.state.data.get("old_hba_file"))
        resumed = []
        if self.state.data.get("pooler_paused") and self.pooler is not None:
            resumed = self.state.data["pooler_paused"]
            if not self.module.check_mode:
                self._resume_stale_pause()
        interrupted = self.state.phase in phases.FENCE_MAY_BE_UP
        if not interrupted or pg_process.postmaster(self.old.data_dir) is None or not is_fenced(hba.read()):
            if resumed:
                return dict(changed=True, msg="resumed PgBouncer's %s, paused by an interrupted cutover"
                            % ", ".join(resumed))
            return dict(changed=False, msg="no fence of an interrupted cutover on a running old server")
        self._hba = hba
        if not self.module.check_mode:
            self._lift_fence()
        return dict(changed=True, msg="lifted the fence the cutover interrupted at phase %s left in %s%s"
                    % (self.state.phase, hba.path, "; resumed PgBouncer's %s" % ", ".join(resumed) if resumed else ""))

    def _phase(self, name):
        """Record the phase (a re-run reads it), then time it."""
        self.state.set(name)
        return self.timer.phase(name)

    def _cutover(self):
        self.state.data.pop("error", None)
        self._drain_archive()   # clients still write: not in the window
        self._give_receivers_slots()
        if self._cron_db:
            with self.timer.phase("pg_cron_pause"):   # clients still write: not in the window
                self._pause_cron_jobs()
        window = self.timer.mark()
        try:
            if self._pooler_names:
                with self._phase("pause"):
                    try:
                        self._pause()
                    except Exception:
                        self._give_jobs_back_to_old()
                        raise
            self._window(window)
        finally:
            self._resume_pooler()

    def _window(self, window):
        self._guardian = FenceGuardian(self._hba)
        self._guardian.start()
        signalled = False
        try:
            with self._phase("fence"):
                self._fence()
            with self._phase("drain"):
                self._drain()
            with self._phase("large_objects"):
                self._carry_large_objects()
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
                self._give_jobs_to_new()
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
            drop_unused_slot(new, self._rollback_name(db))

    # -- the pooler -----------------------------------------------------------

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

    # -- state and sessions -------------------------------------------------------

    def _hba_of(self, spec, path):
        """The pg_hba.conf of ``spec`` at ``path`` (what its server said, kept in the state file), else where its
        configuration says."""
        return HbaFile(self.module, path or hba_path(self.module, spec), spec.owner, spec.data_dir)

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
