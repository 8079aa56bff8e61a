# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cutover before its window (pg_switchover): what must hold before clients are fenced out, and what is
done while they still write, so that the window stays short.

Subscriptions synced, schemas alike, no prepared transaction or extension worker the fence cannot stop, the
drain marker table, the rollback publication, the row counts of both servers compared at one point of
replication (pg_row_check: it grows with the data, so never in the window), sequences copied once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import (
    cluster_objects as pg_cluster_objects, process as pg_process, sequences as pg_sequences, pgwire, waldump)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.cutover_logic import (
    PUBLISHED_TABLES_SQL, SUBSCRIBED_TABLES_SQL)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.fence import (
    blockers_fix, blockers_message, fence_blockers, is_fenced)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.hba import hba_path
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance import PostgresInstance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.large_object_sync import LargeObjectSync
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.row_check import RowCountCheck
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect


MARKER_SCHEMA = "fleetdb_switchover"
MARKER_TABLE = "fleetdb_switchover.drain_marker"
SCHEMAS_NOT_COMPARED = ("pg_catalog", "information_schema", "pg_toast", MARKER_SCHEMA, "fleetdb_upgrade_record")
APPLICATION_NAME = "fleetdb.online_upgrade switchover"
FENCE_PROBE_USER = "fleetdb_fence_probe"


class BeforeWindow:
    """The checks and preparations of PostgresSwitchover before its window (a part of it)."""

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
        self._hba = self._hba_of(self.old, hba_path(self.module, self.old, self._old(first)))
        self._new_hba = self._hba_of(self.new, hba_path(self.module, self.new, self._new(first)))
        self.state.data.update(old_hba_file=self._hba.path, new_hba_file=self._new_hba.path, databases=self.databases,
                               production_port=self.production_port)
        self._lift_stale_fence()
        self._resume_verified()
        self._check_pooler()
        new_psql = "runuser -u %s -- %s -h %s -p %d -d postgres" % (
            self.new.owner, os.path.join(self.new.bin_dir, "psql"), self.new.socket_dir, self.temporary_port)
        pg_cluster_objects.check(self._old(first), self._new(first), self.replication_user, new_psql)
        self._check_fence_blockers()
        self._find_cron_jobs(SCHEMAS_NOT_COMPARED)
        statistics = []
        for db in self.databases:
            old = self._old(db)  # every session the window uses is opened now: the fence lets no new one in
            new = self._new(db)
            statistics.append(waldump.statistics_relations(old))   # for the proof, should autovacuum ANALYZE
            self._resume_replication(db, new)
            self._check_subscription(db, new)
            self._ensure_marker(db, old, new)   # first: it joins the subscription, which the check reads
            self._schema.compare(db, old, new, self._sub(db))
            if self.rollback_slot and not self.module.check_mode:
                self._ensure_rollback_publication(db, new)
        self.state.data["statistics_relations"] = statistics
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
        # After the counts: their copy of a slot and this one's slot share the headroom preflight asks for.
        with self.timer.phase("large_objects_copy"):   # the window carries only what changed since
            self._large_objects = LargeObjectSync(self.module, self.old, self.databases, self._old, self._new,
                                                  self.drain_timeout)
            self._large_objects.full()
        for db in self.databases:  # the window then sets only those that moved
            self.report["databases"][db]["sequences_copied_before_fence"] = self._copy_sequences(db)
        with self.timer.phase("checkpoint"):
            # Shutdown writes a checkpoint; doing one now keeps the one in the window small.
            self._old(first).execute("CHECKPOINT")
            self._new(first).execute("CHECKPOINT")
        # Configured now, used at the start in the window: the running server keeps its temporary port.
        PostgresInstance(self.module, self.new).set_port(self.production_port)
        with self.timer.phase("large_objects_rounds"):   # until the WAL left for the window's round is short
            for _round in range(5):
                if self._large_objects.round()["carried"] <= 100:
                    break
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

    def _probe(self, user):
        """How the old server answers a login as ``user`` with no password, on the socket."""
        try:
            pgwire.Connection(host=self.old.socket_dir, port=self.production_port, user=user,
                              dbname=self.databases[0], connect_timeout=1, io_timeout=1,
                              application_name="fleetdb fence probe").close()
        except pgwire.PgError as exc:
            return str(exc)
        return "logged in"

    def _lift_stale_fence(self):
        """A fence left by an interrupted run is lifted before checks start over."""
        if is_fenced(self._hba.read()):
            if not self.module.check_mode:
                self._lift_fence()
            self.report["stale_fence_lifted"] = True

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

    def _copy_sequences(self, db):
        """Set on the new server every sequence that differs from the old one's; return how many."""
        count, copied = pg_sequences.copy(self._old(db), self._new(db), SCHEMAS_NOT_COMPARED)
        self.report["databases"][db]["sequences"] = count
        return copied

    def _compare_row_counts(self, db):
        """Row counts of both servers at one point of replication (pg_row_check), while clients write."""
        tables = [r[0] for r in self._new(db).query(SUBSCRIBED_TABLES_SQL, [self._sub(db)]).rows
                  if r[0] != MARKER_TABLE]  # the marker holds earlier cutovers' rows (a rollback's new side)
        self.state.data.setdefault("verifying", []).append(db)
        self.state.save()
        self.state.reached("verifying")   # a test makes a commit wait for a synchronous standby here
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
