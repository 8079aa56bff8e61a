# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical replication from the old server (source) to the new one (target) for one database.

Names: publication and slot on the source and subscription on the target are all
``subscription_name(name, dbname, databases)`` (the switchover module uses the same function).
The publication lists the tables explicitly (not FOR ALL TABLES) so that a table created
later without a key never makes UPDATE or DELETE fail on the source.  It publishes
partitions as their root table (publish_via_partition_root): one copy of each partitioned
table, read with the SELECT granted on its root, routed to the target's own partitions.
The replication role gets LOGIN REPLICATION BYPASSRLS (row-level security would filter the copy), CONNECT,
USAGE and SELECT only.  Its
password goes to the server as a SCRAM verifier computed here and, for the target's
walreceiver, into a passfile only the target's owner reads; the subscription's conninfo
names the passfile, never the password.

The class is composed of one part per job: the publication (publication.py), the replication role
(replication_role.py), the initial copy's progress (copy_progress.py) and the comparison of the rows (compare.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Replication
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.compare import Comparison
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.copy_progress import CopyProgress
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.publication import Publication
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication_access import (
    HBA_BEGIN, HBA_END, conninfo, default_passfile)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication_role import ReplicationRole
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect, login
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.slots import (
    LARGE_OBJECTS_SLOT, drop_slot_in_use, drop_subscription_keeping_slot, reattach_subscription, slot_exists, slot_names)


def subscription_name(base, dbname, databases):
    """One subscription (and slot: slot names are cluster-wide) per database."""
    if len(databases) == 1:
        return base
    return "%s_%s" % (base, re.sub(r"[^a-z0-9_]", "_", dbname.lower()))


# The oldest major an online upgrade copies from, and what each older one lacks of what the procedure uses on it.
OLDEST_SOURCE_MAJOR = 14
SOURCE_FEATURES = (
    (13, "publish_via_partition_root (the publication sends each partitioned table through its root)"),
    (13, "pg_current_xact_id() (the drain marker's transaction) and pg_current_snapshot() (the catalog token)"),
    (14, "pg_stat_progress_copy (read on the old server while a rollback replays the new server's writes)"),
)


def source_lacks(major):
    """What an old server of ``major`` lacks of what the online method uses on it (empty: nothing)."""
    return [what for since, what in SOURCE_FEATURES if major < since]


def source_version_problem(major):
    """The refusal of an old server too old for the online method, or None."""
    lacks = source_lacks(major)
    if not lacks:
        return None
    return ("PostgreSQL %d, older than %d, the oldest major this online upgrade copies from: it lacks %s"
            % (major, OLDEST_SOURCE_MAJOR, "; ".join(lacks)))


SOURCE_VERSION_FIX = ("upgrade it offline with online_upgrade_method=dump_restore (pg_dump of the new release reads "
                      "it), or first to %d or later that way, then online from there" % OLDEST_SOURCE_MAJOR)


def capacity_problems(settings, used, needed):
    """[message] for every setting whose free capacity is below ``needed``.  settings/used/needed: name -> int."""
    problems = []
    for name in sorted(needed):
        if name not in settings:
            continue
        free = settings[name] - used.get(name, 0)
        if free < needed[name]:
            problems.append("%s = %d with %d in use, %d more needed (set it to at least %d)"
                            % (name, settings[name], used.get(name, 0), needed[name], used.get(name, 0) + needed[name]))
    return problems


class PostgresReplication(Publication, ReplicationRole, CopyProgress, Comparison, Replication):
    def __init__(self, module, source, target, dbname, name="fleetdb_upgrade", databases=None,
                 replication_user="fleetdb_replicator", replication_password=None, tables_without_key="fail",
                 copy_data=True, existing_slot=False, timeout=3600, max_lag_bytes=None, passfile=None, poll=0,
                 start_lsn=None):
        self.module = module
        self.source = source
        self.target = target
        self.dbname = dbname
        self.name = subscription_name(name, dbname, databases or [dbname])
        self.user = replication_user
        self.password = replication_password
        self.tables_without_key = tables_without_key
        self.copy_data = copy_data
        self.existing_slot = existing_slot
        self.start_lsn = start_lsn
        self.timeout = timeout
        self.max_lag_bytes = max_lag_bytes
        self.poll = poll
        self.passfile = passfile or default_passfile(target)
        self.result = dict(changed=False, name=self.name, dbname=dbname, actions=[])
        self._src = None
        self._tgt = None
        self._identity_full = []

    # -- sessions ---------------------------------------------------------------
    def src(self):
        if self._src is None or self._src.closed:  # closed: the server went away; a new session tells
            self._src = connect(self.source, dbname=self.dbname)
        return self._src

    def tgt(self):
        if self._tgt is None or self._tgt.closed:
            self._tgt = connect(self.target, dbname=self.dbname)
        return self._tgt

    def close(self):
        for session in (self._src, self._tgt):
            if session is not None:
                session.close()
        self._src = self._tgt = None

    def _act(self, what, func=None):
        """Record an action (text without secrets) and run it unless in check mode."""
        self.result["changed"] = True
        self.result["actions"].append(what)
        if func is not None and not self.module.check_mode:
            func()

    # -- states -----------------------------------------------------------------
    def ensure(self, state):
        try:
            if state == "absent":
                self.absent()
            elif state == "role_absent":
                self.role_absent()
            elif state in ("paused", "started"):
                self.enable(state == "started")
            elif state == "published":
                self.publish()
            else:
                self.present()
                if state == "synced":
                    if self.subscription() is not None:
                        self.enable(True)  # a wait that gave up on errors disabled it
                    if not self.module.check_mode:
                        self.wait_synced()
            if state not in ("absent", "role_absent", "published"):
                self.result.update(self.status())
            self.result["state"] = state
            return self.result
        finally:
            self.close()

    def subscription(self):
        rows = self.tgt().rows("SELECT oid::text AS oid, subenabled AS enabled, subslotname AS slot "
                               "FROM pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database "
                               "WHERE datname = current_database())", [self.name])
        return rows[0] if rows else None

    def present(self):
        self._refuse_a_source_too_old()
        sub = self.subscription()
        if sub is not None:
            if not sub["slot"] and not self.module.check_mode:
                # A cutover detached it (slot_name = NONE) and did not finish; its slot stays on the source.
                reattach_subscription(self.tgt(), self.src(), self.name, self.name)
                sub = self.subscription()
            if not sub["slot"]:
                raise OperationError(
                    "the subscription %s on the target has no slot (detached by a cutover that was rescued or "
                    "interrupted): it replicates nothing" % self.name,
                    "the target holds a partial copy: drop the subscription (state=absent) and recreate the new "
                    "instance (or empty its tables), then run again")
            self._recopy_tables_without_sync_slot(sub)
            self._ensure_tables_published()
            self._align_replica_identity()
            return
        self._preflight()
        tables = self._prepare_tables()
        self._align_replica_identity()
        self._ensure_role(tables)
        self._ensure_hba()
        self._ensure_passfile()
        if self.module.check_mode:
            self._act("create publication %s, slot %s and subscription %s (%d tables)"
                      % (self.name, self.name, self.name, len(tables)))
            return
        try:
            self._check_login()
            self._create(tables)
        except Exception:
            # Never leave a slot behind: it would keep WAL on the source forever.  A slot (and publication)
            # that existed before (existing_slot, e.g. the rollback slot) is not ours to drop.
            self.result["cleanup_after_failure"] = True
            self.absent(keep_source=self.existing_slot)
            raise

    def publish(self):
        """The replication role and the publication alone, on the source only: a physical copy comes next, and a
        slot created after the publication can decode with it."""
        self._refuse_a_source_too_old()
        tables = self._prepare_tables()
        self._ensure_role(tables)
        self._ensure_hba(physical=True)
        self._ensure_passfile()
        src = self.src()
        if src.scalar("SELECT 1 FROM pg_publication WHERE pubname = $1", [self.name]) is None:
            self._create_publication(tables)

    def _refuse_a_source_too_old(self):
        too_old = source_version_problem(self.src().server_version_num() // 10000)
        if too_old:
            raise OperationError("replication cannot start: the source runs " + too_old,
                                 SOURCE_VERSION_FIX + ". Nothing was changed")

    def _preflight(self):
        src, tgt = self.src(), self.tgt()
        problems = []
        if src.scalar("SHOW wal_level") != "logical":
            problems.append("wal_level on the source is %s, logical is needed" % src.scalar("SHOW wal_level"))
        has_slot = slot_exists(src, self.name)
        if has_slot and not self.existing_slot and self._orphan_slot():
            # CREATE SUBSCRIPTION makes the slot on the source before it commits on the target: a target that
            # died in between (or a module killed there) leaves it behind, unused, holding WAL.
            self._act("drop slot %s on the source (left by an interrupted CREATE SUBSCRIPTION)" % self.name,
                      lambda: drop_slot_in_use(self.src(), self.name))
            self.result["orphan_slot_dropped"] = self.name
            has_slot = self.module.check_mode
        if has_slot and not self.existing_slot:
            raise OperationError("the source already has a replication slot %s" % self.name,
                                 "drop it with state=absent, or set existing_slot: true to subscribe to it")
        if self.existing_slot and not has_slot:
            raise OperationError("existing_slot is set but the source has no slot %s" % self.name,
                                 "create the slot, or unset existing_slot")
        # Each table sync of the initial copy holds a slot and a sender on the source while it copies.
        syncs = int(tgt.scalar("SELECT setting FROM pg_settings WHERE name = 'max_sync_workers_per_subscription'"))
        settings = dict((r[0], int(r[1])) for r in src.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('max_replication_slots', 'max_wal_senders')").rows)
        used = dict(max_replication_slots=int(src.scalar("SELECT count(*) FROM pg_replication_slots")),
                    max_wal_senders=int(src.scalar("SELECT count(*) FROM pg_stat_replication")))
        needed = dict(max_replication_slots=(0 if has_slot else 1) + syncs, max_wal_senders=1 + syncs)
        problems += ["source: " + p for p in capacity_problems(settings, used, needed)]
        settings = dict((r[0], int(r[1])) for r in tgt.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('max_logical_replication_workers', "
            "'max_worker_processes', 'max_replication_slots', 'max_active_replication_origins')").rows)
        workers = int(tgt.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'logical replication%'"
                                 " AND backend_type <> 'logical replication launcher'"))
        origins = int(tgt.scalar("SELECT count(*) FROM pg_replication_origin"))
        origin_setting = ("max_active_replication_origins" if "max_active_replication_origins" in settings
                          else "max_replication_slots")
        used = {"max_logical_replication_workers": workers, "max_worker_processes": workers + 1, origin_setting: origins}
        needed = {"max_logical_replication_workers": 2, "max_worker_processes": 2, origin_setting: 1}
        problems += ["target: " + p for p in capacity_problems(settings, used, needed)]
        if problems:
            raise OperationError("replication cannot start: " + "; ".join(problems),
                                 "set these with fleetdb.online_upgrade.instance settings={...} on the server named, "
                                 "then restart it (fleetdb.online_upgrade.server state=restarted): they only take "
                                 "effect at server start. Nothing was changed", problems=problems)

    def _orphan_slot(self):
        """The upgrade's own slot with no subscription on the target: logical, pgoutput, this database, unused."""
        return self.src().scalar(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND slot_type = 'logical' AND plugin = 'pgoutput' "
            "AND database = current_database() AND NOT active", [self.name]) is not None and self.subscription() is None

    def _check_login(self):
        """Log in as the replication role the way the target will, so a refusal shows here, clearly."""
        try:
            login(self.source.socket_dir, self.source.port, self.user, self.dbname, password=self.password).close()
        except pgwire.PgError as exc:
            raise OperationError("the replication role %s cannot log in to the source: %s" % (self.user, exc),
                                 "check pg_hba.conf of the source (the lines between '%s' and '%s' must come "
                                 "before any rule that matches %s)" % (HBA_BEGIN, HBA_END, self.user))

    def _create(self, tables):
        src, tgt = self.src(), self.tgt()
        pub = pgwire.quote_ident(self.name)
        if src.scalar("SELECT 1 FROM pg_publication WHERE pubname = $1", [self.name]) is None:
            self._create_publication(tables)
        else:
            self._ensure_tables_published(tables, refresh=False)
        info = conninfo(self.source.socket_dir, self.source.port, self.dbname, self.user, self.passfile, self.name)
        options = "copy_data = %s, create_slot = %s, slot_name = %s%s" % (
            str(self.copy_data).lower(), str(not self.existing_slot).lower(), pgwire.quote_literal(self.name),
            ", enabled = false" if self.start_lsn else "")
        self._act("CREATE SUBSCRIPTION %s CONNECTION <passfile %s> PUBLICATION %s WITH (%s)"
                  % (pub, self.passfile, pub, options),
                  lambda: tgt.execute("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (%s)"
                                      % (pub, pgwire.quote_literal(info), pub, options)))
        if self.start_lsn:
            # Replication starts where a physical copy ends (its recovery point), not at the slot's own point.
            self._act("advance the origin of %s to %s, then enable it" % (pub, self.start_lsn), lambda: (
                tgt.query("SELECT pg_replication_origin_advance('pg_' || oid, $2::pg_lsn) FROM pg_subscription "
                          "WHERE subname = $1", [self.name, self.start_lsn]),
                tgt.execute("ALTER SUBSCRIPTION %s ENABLE" % pub)))

    def enable(self, enabled):
        sub = self.subscription()
        if sub is None:
            raise OperationError("database %s on the target has no subscription %s" % (self.dbname, self.name),
                                 "create it first with state=present or state=synced")
        if (sub["enabled"] == "t") != enabled:
            sql = "ALTER SUBSCRIPTION %s %s" % (pgwire.quote_ident(self.name), "ENABLE" if enabled else "DISABLE")
            self._act(sql, lambda: self.tgt().execute(sql))

    def absent(self, keep_source=False):
        sub = None
        try:
            sub = self.subscription()
        except (OperationError, pgwire.PgError) as exc:
            self.module.warn("target unreachable, no subscription dropped there: %s" % exc)
        sync_slots = None
        if sub is not None:
            tgt = self.tgt()
            sync_slots = "pg_%s_sync_%%" % sub["oid"]
            # Detached from its slot first, the drop never needs the source.
            self._act("DROP SUBSCRIPTION %s" % pgwire.quote_ident(self.name),
                      lambda: drop_subscription_keeping_slot(tgt, self.name))
        if keep_source:
            return
        try:
            src = self.src()
        except OperationError as exc:
            self.result["slot_left_on_source"] = self.name
            self.module.warn("the source is unreachable: drop slot %s there when it is back "
                             "(SELECT pg_drop_replication_slot('%s')): %s" % (self.name, self.name, exc))
            return
        for slot in slot_names(src, self.name, sync_slots) + slot_names(src, LARGE_OBJECTS_SLOT):
            self._act("drop slot %s on the source" % slot, lambda slot=slot: drop_slot_in_use(self.src(), slot))
        if src.scalar("SELECT 1 FROM pg_publication WHERE pubname = $1", [self.name]) is not None:
            sql = "DROP PUBLICATION %s" % pgwire.quote_ident(self.name)
            self._act(sql, lambda: src.execute(sql))
