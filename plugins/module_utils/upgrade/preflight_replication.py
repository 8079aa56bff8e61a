# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight checks of what the online method needs: replication settings, other consumers of the old server's
WAL, what the fence and PgBouncer must hold, what replication or the physical copy cannot carry."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.cluster_locale import cluster_locale
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import cron as pg_cron
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.fence import fence_blockers
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.pgwire import quote_ident, quote_literal
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import system_identifier
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.sizing import copy_parallelism, host_resources
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.physical_copy import COPY_APPLICATION_NAME, max_rate_problem
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_server import PREPARE_FIX
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_standbys import senders as standby_senders


UNLOGGED_TABLES_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'u' ORDER BY 1
"""

TABLES_WITHOUT_KEY_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) AS table_name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
   AND c.relreplident IN ('d', 'n')
   AND (c.relreplident = 'n' OR NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
 ORDER BY 1
"""


def without_password(conninfo):
    """A subscription's conninfo as the fix may print it: its password, if it has one, left for the user to give."""
    return re.sub(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", "password=<its password>", conninfo)


class ReplicationChecks:
    """The online method's part of PostgresPreflight."""

    def _pooler(self):
        """PgBouncer's admin console answers, its pool mode lets PAUSE finish, its client limits outlast the pause."""
        if self.pooler is None:
            return
        problems = self.pooler.problems(self.old.port, self.databases)
        for msg, fix in problems:
            self.findings.problem("pooler", msg, fix)
        if not problems:
            self.facts["pooler"] = dict(version=self.pooler.version(), databases=[
                row["name"] for row in self.pooler.entries(self.old.port, self.databases)])

    def _physical_copy(self, session):
        """What fleetdb.online_upgrade.physical_copy cannot carry (its room is the disk check's second copy)."""
        spaces = [r[0] for r in session.query(
            "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1").rows]
        if max_rate_problem(self.physical_copy_max_rate):
            self.findings.problem("copy_method", max_rate_problem(self.physical_copy_max_rate),
                                  "set online_upgrade_physical_copy_max_rate to e.g. 200M, or empty for no limit")
        if spaces:
            self.findings.problem("copy_method", "the physical copy does not carry tablespaces yet: %s"
                                  % ", ".join(spaces), "use online_upgrade_copy_method: logical")
        provider = cluster_locale(session)["provider"]
        if provider != "libc":
            self.findings.problem("copy_method", "template0 uses the locale provider %s; the physical copy "
                                  "handles libc only" % provider, "use online_upgrade_copy_method: logical")

    def _other_replication(self, session):
        """Standbys and other consumers of the old server's WAL do not follow it to the new server."""
        senders = standby_senders(session)
        leftover_copy = [s for s in senders if s["application_name"] == COPY_APPLICATION_NAME and s["client_addr"] == "local"]
        receivers = self._wal_receivers(senders)
        standby_slots = self._standbys([s for s in senders if s not in leftover_copy and s not in receivers])
        standby_slots |= self._logical_replicas(session) | set(r["slot"] for r in receivers)
        if leftover_copy:
            self.findings.warning("standbys", "the physical copy of an interrupted run still streams from the old "
                                  "server: the copy step stops it and starts over")
        for slot, plugin, database in self._foreign_slots(session):
            if slot in standby_slots:
                continue
            self.findings.problem(
                "replication_slots", "the replication slot %s (%s%s) belongs to another consumer: it does not move "
                "to the new server, and its consumer would miss every change after the cutover"
                % (slot, plugin or "physical", ", database " + database if database else ""),
                "drop it (SELECT pg_drop_replication_slot('%s')) once its consumer can start again from the new "
                "server, or upgrade with that consumer's own procedure" % slot)

    def _ours(self, slot_name):
        """The upgrade's own slots: fleetdb_*, and the table-sync slots (pg_<subscription>_sync_<table>_<system
        id>) that the new server's subscriptions left when it stopped in the middle of the copy."""
        if slot_name.startswith("fleetdb"):
            return True
        sync = re.match(r"^pg_\d+_sync_\d+_(\d+)$", slot_name)
        return bool(sync) and self.new_data_dir is not None and \
            int(sync.group(1)) == system_identifier(self.new_data_dir)

    def _foreign_slots(self, session):
        return [row for row in session.query(
            "SELECT slot_name, coalesce(plugin, ''), coalesce(database, '') FROM pg_replication_slots ORDER BY 1").rows
            if not self._ours(row[0])]

    def _subscriptions(self, session):
        """The old server's own subscriptions would keep applying their publishers' changes past the fence: the
        drain would never come out clean.  pg_subscription is shared: one query names them all."""
        for name, db, slot, publications, conninfo in session.query(
                "SELECT s.subname, d.datname, coalesce(s.subslotname, ''), array_to_string(s.subpublications, ', '), "
                "       s.subconninfo FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                "ORDER BY 2, 1").rows:
            sub, literal = quote_ident(name), quote_literal(name)
            self.findings.problem(
                "subscriptions", "the old server subscribes: subscription %s in database %s (publication %s, slot %s "
                "on the publisher) would keep applying its publisher's changes past the fence, and the cutover's "
                "drain would never end" % (name, db, publications, slot or "none"),
                "move it to the new server, keeping its slot on the publisher (the slot keeps every change meanwhile) "
                "and what it applied (its origin), in database %s of the old server: ALTER SUBSCRIPTION %s DISABLE; "
                "once SELECT pid FROM pg_stat_subscription WHERE subname = %s gives no pid, note what it applied: "
                "SELECT remote_lsn FROM pg_replication_origin_status WHERE external_id = 'pg_' || (SELECT oid FROM "
                "pg_subscription WHERE subname = %s); then ALTER SUBSCRIPTION %s SET (slot_name = NONE); "
                "DROP SUBSCRIPTION %s; upgrade, then in database %s of the new server: CREATE SUBSCRIPTION %s "
                "CONNECTION %s PUBLICATION %s WITH (create_slot = false, slot_name = %s, copy_data = false, "
                "enabled = false); SELECT pg_replication_origin_advance('pg_' || oid, '<the remote_lsn noted>') "
                "FROM pg_subscription WHERE subname = %s; ALTER SUBSCRIPTION %s ENABLE"
                % (db, sub, literal, literal, sub, sub, db, sub, quote_literal(without_password(conninfo)),
                   ", ".join(quote_ident(p) for p in publications.split(", ")), quote_literal(slot or name),
                   literal, sub))

    def _fence_blockers(self, session):
        """What the cutover's fence cannot stop (the cutover checks again, inside the window)."""
        for blocker in fence_blockers(session):
            if blocker["kind"] == "subscription":
                continue   # named with the statements that move it by _subscriptions
            self.findings.problem("fence", "the cutover cannot fence this %s: %s" % (blocker["kind"], blocker["name"]),
                                  blocker["fix"])

    def _pg_cron_jobs(self, session):
        """pg_cron's jobs come across with their database (the cutover pauses them before the fence and gives them
        to the new server), which must then be one of those upgraded."""
        database = pg_cron.database(session)
        if database is None:
            return
        self.facts["pg_cron_database"] = database
        if database not in self.databases:
            self.findings.problem("pg_cron", "pg_cron's jobs live in database %s, which is not upgraded" % database,
                                  "add %s to online_upgrade_databases (or leave the list empty: every database)"
                                  % database)
        if self.copy_method == "physical":
            # The copy is promoted by the old release, whose pg_cron may not hold its jobs back there.
            self.findings.problem("pg_cron", "the physical initial copy does not hold pg_cron's jobs back on the "
                                  "promoted copy", "use online_upgrade_copy_method=logical (the default)")

    def _replication_settings(self, session):
        settings = dict(session.query(
            "SELECT name, setting FROM pg_settings WHERE name IN ('wal_level', 'max_replication_slots', "
            "'max_wal_senders', 'max_worker_processes')").rows)
        if settings.get("wal_level") != "logical":
            self._old_server_needs("wal_level", "logical")
            self.findings.problem(
                "wal_level", "wal_level is %s on the old server; logical replication needs logical"
                % settings.get("wal_level"), PREPARE_FIX % "wal_level = logical")
        used_slots = len(self._foreign_slots(session))
        senders = len([name for name, in session.query("SELECT application_name FROM pg_stat_replication").rows
                       if not self._ours(name)])
        # A slot and a sender per database, and one more of each for the table syncs of the database being copied
        # (the databases are copied one after another).
        needed = len(self.databases) + 1
        for name, used in (("max_replication_slots", used_slots), ("max_wal_senders", senders)):
            if int(settings.get(name, 0)) < used + needed:
                self._old_server_needs(name, used + needed)
                self.findings.problem(name, "%s is %s, %d in use, %d more needed" % (name, settings.get(name), used, needed),
                                      PREPARE_FIX % ("%s = %d" % (name, used + needed)))
        cores, memory = host_resources()
        self.facts["copy_parallelism"] = copy_parallelism(
            cores, memory, len(self.databases), int(settings.get("max_replication_slots", 0)) - used_slots,
            int(settings.get("max_wal_senders", 0)) - senders, new_major=(self.new_major or (18,))[0],
            standbys=len(self.standbys),
            old_settings=dict(session.query("SELECT name, setting FROM pg_settings WHERE name IN "
                                            "('max_logical_replication_workers', 'max_worker_processes', "
                                            "'max_replication_slots', 'max_wal_senders')").rows))

    def _what_replication_carries(self, db, session):
        """Tables it cannot publish, and data it does not carry: each named, with the ways out."""
        self._tables_without_key(db, [r[0] for r in session.query(TABLES_WITHOUT_KEY_SQL).rows])
        self._unlogged_tables(db, [r[0] for r in session.query(UNLOGGED_TABLES_SQL).rows])

    def _tables_without_key(self, db, tables):
        if not tables:
            return
        if self.tables_without_key == "replica_identity_full":
            self.findings.warning("tables_without_key", "database %s: %s will replicate with REPLICA IDENTITY FULL "
                                  "(slower apply of updates and deletes)" % (db, ", ".join(tables)))
            return
        self.findings.problem(
            "tables_without_key",
            "database %s has tables without a primary key or replica identity: %s; publishing them would make "
            "UPDATE and DELETE fail on the old server" % (db, ", ".join(tables)),
            "add a primary key to each, or opt in with online_upgrade_tables_without_key=replica_identity_full "
            "(every column is sent for updates and deletes), or use online_upgrade_method=dump_restore")

    def _unlogged_tables(self, db, tables):
        if not tables:
            return
        if self.unlogged_tables == "empty":
            self.findings.warning("unlogged_tables", "database %s: %s will be empty on the new server (unlogged "
                                  "tables are not replicated; online_upgrade_unlogged_tables=empty)"
                                  % (db, ", ".join(tables)))
            return
        self.findings.problem(
            "unlogged_tables",
            "database %s has unlogged tables, which logical replication does not carry: %s; their rows would be "
            "missing on the new server" % (db, ", ".join(tables)),
            "make them logged for the upgrade (ALTER TABLE ... SET LOGGED; SET UNLOGGED again afterwards), or opt in "
            "with online_upgrade_unlogged_tables=empty if they may start empty (caches, staging), or use "
            "online_upgrade_method=dump_restore")
