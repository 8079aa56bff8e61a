# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cutover after the old server stopped (pg_switchover): the new server started on the production port, what
starts at boot, the cleanup; and the way back when it fails.

Failure before the stop: the fence is lifted, replication resumes, the old server keeps serving.  After it,
and until the new server was ever ready: the old server comes back unfenced on the production port and
replication resumes from its slot.  A new server that may have accepted writes is never stopped or killed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import process as pg_process, pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError, read_text
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.fence import FENCE, retired_lines
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance import PostgresInstance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.server_control import log_file, log_tail
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.service import manager as service_manager
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.slots import drop_subscription_keeping_slot
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.switchover_checks import MARKER_SCHEMA


class NewServerNeverReady(OperationError):
    """The new server exited before it ever accepted clients: it took no writes."""


class AfterStop:
    """The start of the new server, the cleanup and the failure paths of PostgresSwitchover (a part of it)."""

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
        self._jobs_given()
        self.state.set("switched", window_seconds=self.report["window_seconds"], phases=dict(self.timer.timings))
        with self.timer.phase("cleanup"):
            self._cleanup()
        self.state.set("done")
        self.report.update(changed=True, msg="the new server serves port %d" % self.production_port)
        self._archive_after()

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
        # A new server that once was an old one (a rollback) carries the fence it retired with.
        (self._new_hba or self._hba_of(self.new, self.state.data.get("new_hba_file"))).remove_block(FENCE)
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
                    "start the old server: the new one may hold writes it lacks" % log_file(self.new))
            time.sleep(0.002)

    def _never_ready(self, why):
        return NewServerNeverReady("the new server did not start on port %d: %s\nlast lines of %s:\n%s"
                                   % (self.production_port, why, log_file(self.new), log_tail(log_file(self.new), 10)),
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
        admin = self.old.login_user or self.old.owner
        (self._hba or self._hba_of(self.old, self.state.data.get("old_hba_file"))).put_block(
            FENCE, retired_lines(admin, self.replication_user, self.databases, peer=not self.old.login_password),
            first=True)
        for db in self.databases:
            session = connect(self.new, dbname=db, port=self.production_port, timeout=self.start_timeout,
                              retry_sqlstates=("53300",))  # clients reconnecting may fill the server for a moment
            try:
                sub = pgwire.quote_ident(self._sub(db))
                if session.scalar("SELECT 1 FROM pg_subscription WHERE subname = $1", [self._sub(db)]):
                    drop_subscription_keeping_slot(session, self._sub(db))
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

    # -- failure paths ------------------------------------------------------

    def _abort(self, exc):
        """Before the old server was told to stop: lift the fence, resume replication, leave the old server serving."""
        self.report["aborted_because"] = str(exc)
        try:
            self._lift_fence()
            self._give_jobs_back_to_old()
            for db in self.databases:
                try:
                    self._resume_replication(db, self._new(db))
                except (pgwire.PgError, OperationError) as failure:
                    # the old server serves either way; the report keeps the first cause
                    self.report.setdefault("abort_warnings", []).append(str(failure))
        finally:
            self.state.set("aborted", error=str(exc))

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
            (self._hba or self._hba_of(self.old, self.state.data.get("old_hba_file"))).remove_block(FENCE)
            old.start(port=self.production_port, timeout=self.start_timeout)
        except OperationError as failure:
            self.report["rescue"] += "; restarting the old server FAILED: %s" % failure.msg
            self.state.set("rescue_failed", error=str(exc), rescue_error=failure.msg)
            return
        self.report["rescue"] += "; the old server serves port %d again, unfenced" % self.production_port
        self.state.set("rescued", error=str(exc))
        self._give_jobs_back_to_old()
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


def _fsync_dir(path):
    if not os.path.isdir(path):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
