# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cutover's client-visible window (pg_switchover), up to the proof:

  fence       pg_hba.conf rejects every login but the replication role's on the socket (validated, then
              reloaded; a probe login must be rejected), then client backends are terminated;
  drain       a marker row per database on the old server, then wait until the new server has applied
              each (logical replication applies in commit order); then one check that no other
              transaction id was used meanwhile, else terminate and drain again;
  large_objects  those changed since the last round before the fence, read from the WAL up to the drain
              (upgrade/large_object_sync.py);
  roles       password hashes changed since the migrate (never logged);
  detach      disable the subscriptions (their slots stay on the old server), create the rollback slot;
  stop        fast shutdown of both servers;
  proof       the old server's pg_control: cleanly shut down, next transaction id the one the drain saw.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import process as pg_process, pgwire, waldump
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.cutover_logic import (
    XID_SQL, drain_is_clean, proof_problems, writes_after_the_drain)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.fence import FENCE, fence_lines
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import execute_unlogged
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.slots import end_walsender
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.switchover_checks import MARKER_TABLE


class Window:
    """The fence, the drain and the proof of PostgresSwitchover (a part of it)."""

    def _fence(self):
        admin = self._old(self.databases[0])
        fenced = FENCE.put(self._hba.read(), fence_lines(self.replication_user, self.databases), first=True)
        # Checked before the reload: a file with errors would make the server keep the rules it has.
        self._hba.write_checked(fenced, admin, "correct %s (the errors may be in its original rules)" % self._hba.path)
        if not self._hba.reload():
            raise OperationError("the old server could not be told to reload pg_hba.conf: it no longer runs",
                                 "check its log")
        self._wait_fence_loaded()
        self._terminate_clients(admin)

    def _wait_fence_loaded(self):
        """A reload only signals the postmaster: probe until new logins, the admin's and an application
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
                                     "the fence was lifted and the old server keeps serving" % self._hba.path)
            time.sleep(0.001)

    def _lift_fence(self):
        if self._hba is None:
            return
        self._hba.remove_block(FENCE)
        self._hba.reload()

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
            # Read before the last xid: every record of a transaction id past the drain lies after this point.
            lsn = admin.scalar("SELECT pg_current_wal_insert_lsn()::text")
            after, in_progress = (int(v) for v in admin.query(XID_SQL).rows[0])
            if drain_is_clean(before, xids, after, in_progress) and not self._client_backends(admin):
                self.state.data.update(drain_next_xid=after, drain_attempts=attempt, drain_lsn=lsn)
                self.report["drain_attempts"] = attempt
                return
            self._check_fence_blockers()  # a prepared transaction holds its id: the drain could never end
            if time.monotonic() > deadline:
                raise OperationError("the drain could not prove within %d s that no other session writes "
                                     "(transaction ids %d to %d, %d in progress)" % (self.drain_timeout, before,
                                                                                     after, in_progress),
                                     "look for sessions or workers that write on the old server")
            self._terminate_clients(admin)

    def _carry_large_objects(self):
        """The large objects changed since the last round before the fence, up to the drain (nothing writes after
        it); then the WAL is no longer needed."""
        window = self._large_objects.round(self.state.data["drain_lsn"], in_window=True)
        self.report["large_objects"] = dict(window, databases=self._large_objects.report)
        self.state.data["large_objects_window"] = window
        self._large_objects.drop_slot(self._old(self.databases[0]))

    def _large_objects_window(self):
        """For the proof: how many large objects the window carried, and the WAL it read (none on a resumed run)."""
        carried = self.report.get("large_objects") or {}
        return dict(carried=carried.get("carried"), wal=carried.get("wal"))

    def _drop_large_objects_slot(self):
        """When the cutover failed before its window dropped the slot (the old server serves)."""
        if self._large_objects is None or self._large_objects.slot_dropped or not pg_process.postmaster(
                self.old.data_dir):
            return
        try:
            self._large_objects.drop_slot(self._old(self.databases[0]))
        except (OperationError, pgwire.PgError) as exc:
            self.module.warn("the replication slot of the large objects' copy could not be dropped (%s): drop it on "
                             "the old server, SELECT pg_drop_replication_slot('fleetdb_large_objects')" % exc)

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

    def _detach(self, db):
        """Disable the subscription so the new server never connects to the port it is about to take.  Its slot
        stays on the old server: a cutover that fails from here on resumes replication from it."""
        new, old = self._new(db), self._old(db)
        sub = pgwire.quote_ident(self._sub(db))
        slot = self.report["databases"][db]["slot"]
        new.execute("ALTER SUBSCRIPTION %s DISABLE" % sub)
        end_walsender(old, slot, timeout=10, interval=0.002)
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
        drain_next_xid = self.state.data["drain_next_xid"]
        problems = proof_problems(old, drain_next_xid)
        statistics_xids = 0
        if problems and pg_process.cleanly_shut_down(old) and self.state.data.get("drain_lsn"):
            # Its WAL tells what the ids past the drain wrote: an autovacuum ANALYZE (no fence stops autovacuum)
            # writes only the planner's statistics, which the new server has of its own.
            try:
                writes = writes_after_the_drain(
                    waldump.records(self.module, self.old.bin_dir, self.old.data_dir, self.old.owner,
                                    self.state.data["drain_lsn"]),
                    drain_next_xid, pg_process.controldata_xid(old), self.state.data.get("statistics_relations", []))
            except waldump.WalDumpError as exc:
                writes = ["its WAL could not be read to tell what they wrote (%s)" % exc]
            if writes:
                problems = ["%s: %s" % (problems[0], "; ".join(writes[:5]))]
            else:
                statistics_xids, problems = pg_process.controldata_xid(old) - drain_next_xid, []
                self.state.data["statistics_xids"] = statistics_xids
        self.report["proof"] = dict(old_next_xid=pg_process.controldata_xid(old), drain_next_xid=drain_next_xid,
                                    statistics_xids=statistics_xids, problems=problems,
                                    large_objects=self._large_objects_window())
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
