# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A standby host's own switch to the new major, once its primary's cutover is done: the new standby (made by
``standby.NewStandby``, running on its temporary port) follows the new primary on the production port, replays at
least the primary's position taken after its cutover, then the old standby stops and the new one takes the
production port.

Why that position: the old standby never showed more than the old primary had, the new primary holds all of that
once its cutover is done, so a new standby that replayed the new primary's position of a moment after the cutover
shows everything a reader saw on the old one: no value read on this host goes backwards.  The new standby is then
restarted by a clean (fast) shutdown, and PostgreSQL does not open a standby cleanly shut down for reads at a
point before the one it had replayed (minRecoveryPoint, CreateRestartPoint).

Each step looks at what the host shows (which server runs on which port, the old one's configured port), so a run
killed anywhere is finished by the next one."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, PhaseTimer, read_text, write_file)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import StandbySwitch
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance import PostgresInstance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import system_identifier
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication_access import (
    conninfo, default_passfile, with_passfile_line)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication_role import forget_password
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect, identify_system

RECEIVER_SQL = "SELECT status, sender_host, sender_port FROM pg_stat_wal_receiver"
# The primary's end of WAL as its WAL sender last reported it to this standby.
SENDER_END_SQL = "SELECT latest_end_lsn::text FROM pg_stat_wal_receiver WHERE status = 'streaming'"


def switch_steps(new_port, new_running_port, old_running, old_configured_port, old_port_after):
    """The steps left, in order, from what the host shows.  The old standby is configured for another port only
    after it was stopped, and that only once the new one had caught up: a stopped old standby configured so means
    the new one needs nothing but its start on the production port."""
    past_old_stop = not old_running and old_configured_port == old_port_after
    switched = new_running_port == new_port
    steps = []
    if not switched and not past_old_stop:
        if new_running_port is None:
            steps.append("start_temporary")
        steps += ["follow", "catch_up"]
    if old_running:
        steps.append("stop_old")
    if not switched:
        steps.append("start_new")
    if old_configured_port != old_port_after:
        steps.append("retire_old")
    return steps


class PostgresStandbySwitch(StandbySwitch):
    def __init__(self, module, old, new, primary_host, user, password, application_name, temporary_port,
                 old_port_after, primary_port=None, timeout=60, position_from="primary", settings_at_least=None):
        self.module = module
        self.old = old                      # the old standby, on the production port until the switch
        self.new = new                      # its port: the production port
        self.primary_host = primary_host
        self.primary_port = primary_port or new.port   # the new primary, after its cutover
        self.user = user
        self.password = password
        self.application_name = application_name
        self.temporary_port = temporary_port
        self.old_port_after = old_port_after
        self.timeout = timeout
        self.position_from = position_from
        self.settings_at_least = settings_at_least or {}
        self.timer = PhaseTimer()
        self.old_server = PostgresInstance(module, old)
        self.new_server = PostgresInstance(module, new)
        self._stop_began = None   # the old standby's stop to the new one's first read: the pause readers see
        self._first_read = None
        self._primary_lsn = None

    def describe(self, step):
        return {
            "start_temporary": "start the new standby on its temporary port %d" % self.temporary_port,
            "follow": "give the new standby the old one's primary_conninfo (the new primary, %s port %d, is there "
                      "now) and wait until it streams from there" % (self.primary_host, self.primary_port),
            "catch_up": "wait until the new standby has replayed the new primary's current position",
            "stop_old": "stop the old standby (%s)" % self.old.data_dir,
            "retire_old": "configure the old standby for port %d" % self.old_port_after,
            "start_new": "restart the new standby on the production port %d" % self.new.port,
        }[step]

    def run(self):
        if not os.path.exists(os.path.join(self.new.data_dir, "standby.signal")):
            raise OperationError("%s holds no standby (no standby.signal): there is no new standby to switch to"
                                 % self.new.data_dir, "make it first (fleetdb.online_upgrade.standby)")
        new_info, old_info = self.new_server.postmaster(), self.old_server.postmaster()
        steps = switch_steps(self.new.port, new_info and new_info["port"], old_info is not None,
                             self.old_server.configured_port(), self.old_port_after)
        # Once the new standby streams with the old one's conninfo, the upgrade's password has no use on this host.
        forget = self.old_server.show_configured("primary_conninfo") and forget_password(
            self.module, default_passfile(self.new), self.user, self.new.owner)
        result = dict(changed=bool(steps or forget), read_pause_seconds=None,
                      actions=[self.describe(step) for step in steps] + ([forget[0]] if forget else []))
        if self.module.check_mode:
            return result
        for step in steps:
            with self.timer.phase(step):
                getattr(self, "_" + step)()
        if self._stop_began is not None and self._first_read is not None:
            result["read_pause_seconds"] = round(self._first_read - self._stop_began, 3)
        with self.timer.phase("streaming"):
            result["receiver"] = self._streaming(self.new.port)
        if forget:
            forget[1]()
        result["changed"] = self.new_server.service.set_enabled(True) or result["changed"]
        result["changed"] = self.old_server.service.set_enabled(False) or result["changed"]
        result.update(phases=self.timer.timings, phase_order=self.timer.order, primary_lsn=self._primary_lsn)
        return result

    # -- the steps --------------------------------------------------------------------------------------

    def _start_temporary(self):
        self.new_server.start(port=self.temporary_port, timeout=self.timeout)

    def _follow(self):
        if self.position_from == "primary":
            self._primary_lsn = self._primary_position()
        self.new_server.alter_system(dict(primary_conninfo=self._conninfo()))
        # A hot standby pauses its replay at a primary's larger max_worker_processes until restarted with as many.
        if self.settings_at_least and self.new_server.alter_system(self.settings_at_least, at_least=True)["pending_restart"]:
            self.new_server.restart(port=self.temporary_port, timeout=self.timeout)
        self._streaming(self.temporary_port)

    def _conninfo(self):
        """The old standby's own primary_conninfo, which reaches the primary's production port as its DBA set it up
        (their replication role, TLS, application_name): the new primary has that role and those pg_hba.conf lines
        (copied with the rest), and they outlive the upgrade's replication role, which finalize drops.  The
        upgrade's role only for an old standby that names no primary of its own."""
        own = self.old_server.show_configured("primary_conninfo")
        if own:
            return own
        text = read_text(default_passfile(self.new)) or ""
        write_file(self.module, default_passfile(self.new),
                   with_passfile_line(text, self.primary_port, self.user, self.password), owner=self.new.owner)
        return conninfo(self.primary_host, self.primary_port, "postgres", self.user, default_passfile(self.new),
                        self.application_name)

    def _catch_up(self):
        """Replayed at least the new primary's position; then a restartpoint, so that the restart's own is short."""
        self._primary_lsn = self._primary_position() if self.position_from == "primary" else self._sender_end()
        deadline = time.monotonic() + self.timeout
        session = connect(self.new, port=self.temporary_port, timeout=10)
        try:
            while session.scalar("SELECT (pg_last_wal_replay_lsn() >= $1::pg_lsn)::text", [self._primary_lsn]) != "true":
                if time.monotonic() > deadline:
                    raise OperationError(
                        "the new standby has not replayed the new primary's position %s within %d s (it has "
                        "replayed %s); the old standby still serves" % (self._primary_lsn, self.timeout, session.scalar(
                            "SELECT pg_last_wal_replay_lsn()::text")),
                        "look at the new standby's log (%s) for replay errors, or raise timeout, and run again"
                        % self.new_server.log_file)
                time.sleep(0.05)
            session.execute("CHECKPOINT")
        finally:
            session.close()

    def _stop_old(self):
        # Its shutdown writes a restartpoint inside the read pause (0.6 s of a 1 s pause in make bench): one now,
        # while it still serves reads, leaves that one little to write.
        session = connect(self.old, timeout=10)
        try:
            session.execute("CHECKPOINT")
        finally:
            session.close()
        self._stop_began = self.timer.mark()
        self.old_server.stop("fast", self.timeout)

    def _retire_old(self):
        self.old_server.set_port(self.old_port_after)

    def _start_new(self):
        if self.new_server.configured_port() != self.new.port:   # a switch back: the old standby, configured aside
            self.new_server.set_port(self.new.port)
        self.new_server.start(timeout=self.timeout)
        session = connect(self.new, port=self.new.port, timeout=self.timeout)
        try:
            session.scalar("SELECT pg_is_in_recovery()::text")
            self._first_read = self.timer.mark()
        finally:
            session.close()

    # -- what the primary and the new standby say ---------------------------------------------------------

    def _primary_position(self):
        """The new primary's WAL position (IDENTIFY_SYSTEM, as the replication role), once it is known to be the
        cluster this standby was copied from."""
        systemid, _timeline, lsn = identify_system(
            self.primary_host, self.primary_port, self.user, self.password, self.timeout,
            "the primary (%s port %d)" % (self.primary_host, self.primary_port),
            "check that the primary's cutover is done (the new server serves port %d) and that its pg_hba.conf "
            "lets %s replicate from this host" % (self.primary_port, self.user))
        ours = system_identifier(self.new.data_dir)
        if str(ours) != systemid:
            raise OperationError(
                "%s port %d serves the cluster %s, not the one the new standby was copied from (%s): the primary's "
                "cutover is not done; nothing was changed here" % (self.primary_host, self.primary_port, systemid, ours),
                "run the primary's cutover first (playbooks/upgrade.yml), then this switch again")
        return lsn

    def _sender_end(self):
        """The primary's end of WAL as its WAL sender reported it to the new standby, once that streams from the
        primary's production port, which served another cluster until the primary's cutover: the stream began
        after it, and the sender reports its flushed end (a keepalive reports what it sent, so a stream that went
        30 s without a reply while catching up could report less).  For a primary that does not let
        ``replication_user`` in from here (the old primary after a rollback)."""
        self._streaming(self.temporary_port)
        session = connect(self.new, port=self.temporary_port, timeout=10)
        try:
            deadline = time.monotonic() + self.timeout
            while True:
                lsn = session.scalar(SENDER_END_SQL)
                if lsn or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            session.close()
        if not lsn:
            raise OperationError("the primary's WAL sender reported no position to the new standby within %d s; "
                                 "the old standby still serves" % self.timeout,
                                 "look at the new standby's log (%s), then run again" % self.new_server.log_file)
        return lsn

    def _streaming(self, port):
        """pg_stat_wal_receiver once the standby on ``port`` streams from the primary's production port."""
        deadline = time.monotonic() + self.timeout
        session = connect(self.new, port=port, timeout=self.timeout)
        try:
            while True:
                rows = session.query(RECEIVER_SQL).rows
                status = dict(zip(("status", "sender_host", "sender_port"), rows[0])) if rows else dict(status="none")
                status["sender_port"] = int(status["sender_port"]) if status.get("sender_port") else None
                if status["status"] == "streaming" and status["sender_port"] == self.primary_port:
                    return status
                if time.monotonic() > deadline:
                    raise OperationError(
                        "the new standby does not stream from %s port %d after %d s (its walreceiver: %s)"
                        % (self.primary_host, self.primary_port, self.timeout, status),
                        "look at its log (%s): the primary's pg_hba.conf must let %s replicate from this host; "
                        "then run again" % (self.new_server.log_file, self.user))
                time.sleep(0.1)
        finally:
            session.close()
