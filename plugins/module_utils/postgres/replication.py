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
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, human_bytes, read_text, user_ids, write_file)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Replication
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication_access import (
    HBA_BEGIN, HBA_END, conninfo, default_passfile, scram_verifier, verifier_matches, with_hba_lines,
    with_passfile_line, without_hba_lines, without_passfile_lines)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.hba import HbaFile, hba_path
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import server_log
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replica_identity import (
    alignment as replica_identity_alignment, leaves_without_identity, qualified)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import (
    connect, execute_unlogged, side_by_side)

# Failed copy or apply attempts (the workers retry every wal_retrieve_retry_interval, 5 s by default) after which
# the wait gives up: an error that repeats does not heal by itself.
ERRORS_THAT_DO_NOT_HEAL = 3

TABLES_SQL = """
SELECT n.nspname AS schema, c.relname AS name, c.relreplident::text AS identity, c.relkind::text AS kind,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) AS has_ri_index
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%'
 ORDER BY 1, 2
"""


def tables_without_key(tables):
    """Tables whose UPDATE/DELETE would fail once published: no usable replica identity."""
    bad = []
    for t in tables:
        usable = (t["identity"] == "f" or (t["identity"] == "d" and t["has_pk"] in ("t", True))
                  or (t["identity"] == "i" and t["has_ri_index"] in ("t", True)))
        if not usable:
            bad.append("%s.%s" % (t["schema"], t["name"]))
    return bad


def subscription_name(base, dbname, databases):
    """One subscription (and slot: slot names are cluster-wide) per database."""
    if len(databases) == 1:
        return base
    return "%s_%s" % (base, re.sub(r"[^a-z0-9_]", "_", dbname.lower()))


def reattach_subscription(target, source, subscription, slot):
    """Give a subscription that a cutover detached (slot_name = NONE, disabled) its slot back, if the source still
    has it, and enable it: replication continues where it stopped.  True when it did."""
    row = target.rows("SELECT subenabled::text AS enabled, subslotname AS slot FROM pg_subscription "
                      "WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                      [subscription])
    if not row:
        return False
    name = pgwire.quote_ident(subscription)
    if row[0]["slot"] is None:
        if source.scalar("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [slot]) is None:
            return False
        target.execute("ALTER SUBSCRIPTION %s SET (slot_name = %s)" % (name, pgwire.quote_literal(slot)))
    elif row[0]["slot"] != slot:
        return False
    if row[0]["enabled"] != "true":
        target.execute("ALTER SUBSCRIPTION %s ENABLE" % name)
    return True


def hash_sql(table):
    """Row count and an order-independent hash of every row (no sort, no 1 GB string limit):
    md5 over the count and the sums of both halves of each row's md5."""
    return ("SELECT count(*)::text, md5(count(*)::text || ':' || "
            "coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint), 0)::text || ':' || "
            "coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint), 0)::text) "
            "FROM (SELECT md5(t::text) AS h FROM %s AS t) AS rows" % table)


def log_errors(path, offset, limit=3):
    """The last ``limit`` distinct ERROR messages written to the server log ``path`` after ``offset``."""
    if not path:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read(4 * 1024 * 1024).decode("utf-8", "replace")
    except (IOError, OSError):
        return []
    found = []
    for line in text.splitlines():
        match = re.search(r"\b(ERROR|FATAL):\s+(.*)$", line)
        if match and match.group(2) not in found:
            found.append(match.group(2).strip())
    return found[-limit:]


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


OWNED_SQL = """
SELECT pg_describe_object(classid, objid, objsubid) FROM pg_shdepend
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND refclassid = 'pg_authid'::regclass AND refobjid = $1::oid AND deptype = 'o' ORDER BY 1
"""


def _owned_by(session, oid):
    """What the role ``oid`` owns in the session's database."""
    return [r[0] for r in session.query(OWNED_SQL, [oid]).rows]


def _revoke_all(session, oid, role):
    """DROP OWNED BY ``role`` to revoke its privileges, in the transaction that checks it owns nothing it would drop
    (on a refusal the caller closes the session, which rolls the transaction back)."""
    session.execute("BEGIN")
    owned = _owned_by(session, oid)
    if owned:
        raise OperationError("%s came to own %s: it is not dropped" % (role, ", ".join(owned)),
                             "give them another owner or drop them, then run again")
    session.execute("DROP OWNED BY %s" % role)
    session.execute("COMMIT")


class PostgresReplication(Replication):
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
        tables = self._prepare_tables()
        self._ensure_role(tables)
        self._ensure_hba(physical=True)
        self._ensure_passfile()
        src = self.src()
        if src.scalar("SELECT 1 FROM pg_publication WHERE pubname = $1", [self.name]) is None:
            self._create_publication(tables)

    def _create_publication(self, tables):
        pub = pgwire.quote_ident(self.name)
        listed = ", ".join(qualified(s, t) for s, t in tables)
        sql = "CREATE PUBLICATION %s%s WITH (publish_via_partition_root = true)" % (
            pub, " FOR TABLE " + listed if tables else "")
        self._act("CREATE PUBLICATION %s (%d tables)" % (pub, len(tables)), lambda: self.src().execute(sql))

    def _preflight(self):
        src, tgt = self.src(), self.tgt()
        problems = []
        if src.scalar("SHOW wal_level") != "logical":
            problems.append("wal_level on the source is %s, logical is needed" % src.scalar("SHOW wal_level"))
        slot_exists = src.scalar("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [self.name]) is not None
        if slot_exists and not self.existing_slot and self._orphan_slot():
            # CREATE SUBSCRIPTION makes the slot on the source before it commits on the target: a target that
            # died in between (or a module killed there) leaves it behind, unused, holding WAL.
            self._act("drop slot %s on the source (left by an interrupted CREATE SUBSCRIPTION)" % self.name,
                      lambda: self._drop_slot(self.name))
            self.result["orphan_slot_dropped"] = self.name
            slot_exists = self.module.check_mode
        if slot_exists and not self.existing_slot:
            raise OperationError("the source already has a replication slot %s" % self.name,
                                 "drop it with state=absent, or set existing_slot: true to subscribe to it")
        if self.existing_slot and not slot_exists:
            raise OperationError("existing_slot is set but the source has no slot %s" % self.name,
                                 "create the slot, or unset existing_slot")
        # Each table sync of the initial copy holds a slot and a sender on the source while it copies.
        syncs = int(tgt.scalar("SELECT setting FROM pg_settings WHERE name = 'max_sync_workers_per_subscription'"))
        settings = dict((r[0], int(r[1])) for r in src.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('max_replication_slots', 'max_wal_senders')").rows)
        used = dict(max_replication_slots=int(src.scalar("SELECT count(*) FROM pg_replication_slots")),
                    max_wal_senders=int(src.scalar("SELECT count(*) FROM pg_stat_replication")))
        needed = dict(max_replication_slots=(0 if slot_exists else 1) + syncs, max_wal_senders=1 + syncs)
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

    def _prepare_tables(self):
        tables = self.src().rows(TABLES_SQL)
        bad = tables_without_key(tables)
        if bad and self.tables_without_key != "replica_identity_full":
            raise OperationError(
                "tables without a primary key or replica identity cannot be published (UPDATE and DELETE on them "
                "would fail on the source): %s" % ", ".join(bad),
                "add a primary key to each, or set tables_without_key: replica_identity_full (ALTER TABLE ... "
                "REPLICA IDENTITY FULL: every update then logs the whole old row, and the target finds rows by a "
                "full scan)", tables_without_key=bad)
        bad_tables = [t for t in tables if "%s.%s" % (t["schema"], t["name"]) in bad]
        full = [(t["schema"], t["name"]) for t in bad_tables] + leaves_without_identity(
            self.src(), [(t["schema"], t["name"]) for t in bad_tables if t["kind"] == "p"])
        for schema, table in full:
            sql = "ALTER TABLE %s REPLICA IDENTITY FULL" % qualified(schema, table)
            self._act(sql, lambda sql=sql: self.src().execute(sql))
        self._identity_full = full
        self.result["tables_replica_identity_full"] = ["%s.%s" % st for st in full]
        return [(t["schema"], t["name"]) for t in tables]

    def _align_replica_identity(self):
        """The target's tables get the replica identity their source has (the schema was migrated before
        REPLICA IDENTITY FULL was set on the source): without it their UPDATE and DELETE would fail on the new
        server once the rollback publishes them."""
        statements = replica_identity_alignment(self.src(), self.tgt())
        if self.module.check_mode:   # what _prepare_tables would have set on the source first
            statements += ["ALTER TABLE %s REPLICA IDENTITY FULL" % qualified(*name)
                           for name in self._identity_full]
        for sql in statements:
            self._act(sql + " (target)", lambda sql=sql: self.tgt().execute(sql))

    def _ensure_role(self, tables):
        if not self.password:
            raise OperationError("replication_password is required to set up replication",
                                 "pass replication_password (it is never logged or returned)")
        src = self.src()
        row = src.rows("SELECT rolpassword AS password, rolreplication AS replication, rolcanlogin AS login, "
                       "rolbypassrls AS bypassrls FROM pg_authid WHERE rolname = $1", [self.user])
        role = pgwire.quote_ident(self.user)
        # BYPASSRLS: without it the copy of a table with row-level security would quietly take only the rows
        # its policies show the replication role.
        if not row:
            self._act("CREATE ROLE %s LOGIN REPLICATION BYPASSRLS PASSWORD <scram verifier>" % role,
                      lambda: execute_unlogged(src, "CREATE ROLE %s LOGIN REPLICATION BYPASSRLS PASSWORD %s" % (
                          role, pgwire.quote_literal(scram_verifier(self.password)))))
        else:
            if "f" in (row[0]["replication"], row[0]["login"], row[0]["bypassrls"]):
                self._act("ALTER ROLE %s LOGIN REPLICATION BYPASSRLS" % role,
                          lambda: src.execute("ALTER ROLE %s LOGIN REPLICATION BYPASSRLS" % role))
            if not verifier_matches(row[0]["password"], self.password):
                self._act("ALTER ROLE %s PASSWORD <scram verifier>" % role, lambda: execute_unlogged(
                    src, "ALTER ROLE %s PASSWORD %s" % (role, pgwire.quote_literal(scram_verifier(self.password)))))
        self._grant(tables)

    def _grant(self, tables):
        src = self.src()
        db = pgwire.quote_ident(self.dbname)
        role = pgwire.quote_ident(self.user)
        exists = src.scalar("SELECT 1 FROM pg_roles WHERE rolname = $1", [self.user]) is not None

        def lacks(sql, params):
            return not exists or src.scalar(sql, params) != "t"
        if lacks("SELECT has_database_privilege($1, current_database(), 'CONNECT')::text", [self.user]):
            self._act("GRANT CONNECT ON DATABASE %s TO %s" % (db, role),
                      lambda: src.execute("GRANT CONNECT ON DATABASE %s TO %s" % (db, role)))
        for schema in sorted(set(s for s, _t in tables)):
            if lacks("SELECT has_schema_privilege($1, $2, 'USAGE')::text", [self.user, schema]):
                sql = "GRANT USAGE ON SCHEMA %s TO %s" % (pgwire.quote_ident(schema), role)
                self._act(sql, lambda sql=sql: src.execute(sql))
        for schema, table in tables:
            if lacks("SELECT has_table_privilege($1, $2, 'SELECT')::text", [self.user, qualified(schema, table)]):
                sql = "GRANT SELECT ON %s TO %s" % (qualified(schema, table), role)
                self._act(sql, lambda sql=sql: src.execute(sql))

    def _ensure_hba(self, physical=False):
        hba = self._hba()
        before = hba.read() or ""
        after = with_hba_lines(before, self.user, self.dbname, physical=physical)
        if before == after:
            return
        changed, diff = hba.write_checked(after, self.src(), "fix the file by hand")
        self.result.setdefault("diff", []).append(diff)
        self._act("add the replication role's lines to %s and reload" % hba.path, hba.reload)
        if not self.module.check_mode:
            time.sleep(0.2)  # the postmaster reloads asynchronously

    def _hba(self):
        return HbaFile(self.module, hba_path(self.module, self.source, self.src()), self.source.owner,
                       self.source.data_dir)

    def _ensure_passfile(self):
        before = read_text(self.passfile)
        after = with_passfile_line(before, self.source.port, self.user, self.password)
        if before != after:
            write_file(self.module, self.passfile, after, owner=self.target.owner, mode=0o600)
            self._act("write the replication password to %s (mode 0600, owner %s)" % (self.passfile, self.target.owner))
        elif os.path.exists(self.passfile) and os.stat(self.passfile).st_mode & 0o077:
            self._act("chmod 0600 %s" % self.passfile, lambda: os.chmod(self.passfile, 0o600))
        if os.path.exists(self.passfile) and os.geteuid() == 0:
            uid = user_ids(self.target.owner)[0]
            if os.stat(self.passfile).st_uid != uid:
                self._act("chown %s %s" % (self.target.owner, self.passfile),
                          lambda: os.chown(self.passfile, uid, -1))

    def _check_login(self):
        """Log in as the replication role the way the target will, so a refusal shows here, clearly."""
        try:
            pgwire.Connection(host=self.source.socket_dir, port=self.source.port, user=self.user,
                              dbname=self.dbname, password=self.password).close()
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

    def _ensure_tables_published(self, tables=None, refresh=True):
        """Tables created on the source since the publication (and that exist on the target) join it."""
        src = self.src()
        if src.scalar("SELECT puballtables::text FROM pg_publication WHERE pubname = $1", [self.name]) != "false":
            return
        if tables is None:
            tables = [(t["schema"], t["name"]) for t in src.rows(TABLES_SQL)
                      if not tables_without_key([t])]
        # The members themselves (pg_publication_tables shows the leaf partitions of a root published without
        # publish_via_partition_root, and the root would look missing).
        published = set(tuple(r) for r in src.query(
            "SELECT n.nspname, c.relname FROM pg_publication_rel pr JOIN pg_class c ON c.oid = pr.prrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE pr.prpubid = (SELECT oid FROM pg_publication WHERE pubname = $1)", [self.name]).rows)
        missing = [st for st in tables if st not in published
                   and self.tgt().scalar("SELECT to_regclass($1)::text", [qualified(*st)]) is not None]
        for schema, table in missing:
            sql = "ALTER PUBLICATION %s ADD TABLE %s" % (pgwire.quote_ident(self.name), qualified(schema, table))
            self._act(sql, lambda sql=sql: src.execute(sql))
        if missing and refresh:
            self._grant(missing)
            sql = "ALTER SUBSCRIPTION %s REFRESH PUBLICATION" % pgwire.quote_ident(self.name)
            self._act(sql, lambda: self.tgt().execute(sql))

    def _recopy_tables_without_sync_slot(self, sub):
        """Copy again the tables whose copy finished (state f) but whose table-sync slot is gone.

        A target that crashes between dropping that slot on the source and recording the table as synced
        leaves it waiting forever for a slot that no longer exists.  The table leaves the publication, is
        emptied on the target, and rejoins it (``_ensure_tables_published`` refreshes with a new copy).
        """
        stuck = self.tgt().query("SELECT srrelid::text, srrelid::regclass::text FROM pg_subscription_rel "
                                 "WHERE srsubid = $1::oid AND srsubstate = 'f'", [sub["oid"]]).rows
        if not stuck:
            return
        src = self.src()
        slots = [r[0] for r in src.query("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE $1",
                                         ["pg_%s_sync_%%" % sub["oid"]]).rows]
        lost = [name for relid, name in stuck
                if not any(slot.startswith("pg_%s_sync_%s_" % (sub["oid"], relid)) for slot in slots)]
        if not lost:
            return
        self.result["tables_copied_again"] = lost
        steps = [(src, "ALTER PUBLICATION %s DROP TABLE %s" % (pgwire.quote_ident(self.name), ", ".join(lost))),
                 (self.tgt(), "ALTER SUBSCRIPTION %s REFRESH PUBLICATION WITH (copy_data = false)"
                  % pgwire.quote_ident(self.name)),
                 (self.tgt(), "TRUNCATE %s" % ", ".join(lost))]
        for session, sql in steps:
            self._act(sql, lambda session=session, sql=sql: session.execute(sql))

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
        slots = [self.name]
        if sub is not None:
            name = pgwire.quote_ident(self.name)
            tgt = self.tgt()

            def drop():
                # Detached from its slot first, the drop never needs the source.
                tgt.execute("ALTER SUBSCRIPTION %s DISABLE" % name)
                tgt.execute("ALTER SUBSCRIPTION %s SET (slot_name = NONE)" % name)
                tgt.execute("DROP SUBSCRIPTION %s" % name)
            slots.append("pg_%s_sync_%%" % sub["oid"])
            self._act("DROP SUBSCRIPTION %s" % name, drop)
        if keep_source:
            return
        try:
            src = self.src()
        except OperationError as exc:
            self.result["slot_left_on_source"] = self.name
            self.module.warn("the source is unreachable: drop slot %s there when it is back "
                             "(SELECT pg_drop_replication_slot('%s')): %s" % (self.name, self.name, exc))
            return
        for slot in src.query("SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1 "
                              "OR slot_name LIKE $2", [slots[0], slots[-1] if len(slots) > 1 else slots[0]]).rows:
            self._act("drop slot %s on the source" % slot[0], lambda slot=slot[0]: self._drop_slot(slot))
        if src.scalar("SELECT 1 FROM pg_publication WHERE pubname = $1", [self.name]) is not None:
            sql = "DROP PUBLICATION %s" % pgwire.quote_ident(self.name)
            self._act(sql, lambda: src.execute(sql))

    def _drop_slot(self, slot):
        src = self.src()
        deadline = time.monotonic() + 30
        while True:
            pid = src.scalar("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", [slot])
            if pid is None:
                break
            src.query("SELECT pg_terminate_backend($1::int)", [pid])
            if time.monotonic() > deadline:
                raise OperationError("slot %s stays in use by pid %s" % (slot, pid), "check the source's log")
            time.sleep(0.05)
        src.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", [slot])

    # -- the replication role ------------------------------------------------------
    def role_absent(self):
        """The replication role dropped from the source, its pg_hba.conf lines there removed, the passfile too."""
        self._drop_role()
        self._remove_hba_lines()
        self._remove_passfile()

    def _drop_role(self):
        src = self.src()
        role = src.rows("SELECT oid::text AS oid, rolsuper::text AS superuser FROM pg_roles WHERE rolname = $1",
                        [self.user])
        if not role:
            return
        if role[0]["superuser"] == "true":
            raise OperationError("%s is a superuser, not the role replication creates: it is not dropped" % self.user,
                                 "check replication_user")
        oid = role[0]["oid"]
        # Where it holds privileges or owns objects, and the session's database: DROP OWNED there revokes its
        # privileges on shared objects (CONNECT on databases) too.
        databases = src.query("SELECT datname, datallowconn::text FROM pg_database WHERE datname = current_database() "
                              "OR oid IN (SELECT dbid FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass "
                              "AND refobjid = $1::oid) ORDER BY 1", [oid]).rows
        blockers = ["it owns database %s" % r[0] for r in src.query(
            "SELECT datname FROM pg_database WHERE datdba = $1::oid", [oid]).rows]
        blockers += ["it owns tablespace %s" % r[0] for r in src.query(
            "SELECT spcname FROM pg_tablespace WHERE spcowner = $1::oid", [oid]).rows]
        for dbname, connectable in databases:
            if connectable != "true":
                blockers.append("it has privileges in database %s, which accepts no connections" % dbname)
                continue
            blockers += ["it owns %s in database %s" % (what, dbname)
                         for what in self._in_database(dbname, _owned_by, oid)]
        if blockers:
            # Replication makes it own nothing: what it owns is someone's, and DROP OWNED would drop it.
            raise OperationError(
                "the replication role %s is not dropped, nothing was changed: %s" % (self.user, "; ".join(blockers)),
                "give what it owns another owner (REASSIGN OWNED BY %s TO <role> in each database named, ALTER "
                "DATABASE or ALTER TABLESPACE ... OWNER TO <role>) or drop it, then run again"
                % pgwire.quote_ident(self.user), blockers=blockers)
        name = pgwire.quote_ident(self.user)
        for dbname, _connectable in databases:
            self._act("DROP OWNED BY %s in database %s (its privileges: it owns nothing)" % (name, dbname),
                      lambda dbname=dbname: self._in_database(dbname, _revoke_all, oid, name))

        def drop():
            src.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usesysid = $1::oid", [oid])
            src.execute("DROP ROLE %s" % name)
        self._act("DROP ROLE %s" % name, drop)

    def _in_database(self, dbname, func, *args):
        session = connect(self.source, dbname=dbname)
        try:
            return func(session, *args)
        finally:
            session.close()

    def _remove_hba_lines(self):
        hba = self._hba()
        before = hba.read()
        after = without_hba_lines(before, self.user)
        if before is None or after == before:
            return
        _changed, diff = hba.write(after)
        self.result.setdefault("diff", []).append(diff)
        self._act("remove the replication role's lines from %s and reload" % hba.path, hba.reload)

    def _remove_passfile(self):
        before = read_text(self.passfile)
        after = without_passfile_lines(before, self.user)
        if before is None or after == before:
            return
        if after:
            self._act("remove the replication role's line from %s" % self.passfile, lambda: write_file(
                self.module, self.passfile, after, owner=self.target.owner, mode=0o600))
        else:
            self._act("remove %s" % self.passfile, lambda: os.unlink(self.passfile))

    # -- waiting and status ----------------------------------------------------------
    def status(self):
        sub = self.subscription()
        if sub is None:
            return dict(exists=False, tables_total=0, tables_ready=0, lag_bytes=None, lag_seconds=None)
        counts = self.tgt().query("SELECT count(*), count(*) FILTER (WHERE srsubstate = 'r'), "
                                  "coalesce(array_agg(srrelid::regclass::text) FILTER (WHERE srsubstate <> 'r'), "
                                  "'{}')::text FROM pg_subscription_rel WHERE srsubid = $1::oid", [sub["oid"]]).rows[0]
        result = dict(exists=True, enabled=sub["enabled"] == "t", slot=sub["slot"], tables_total=int(counts[0]),
                      tables_ready=int(counts[1]), tables_copying=[t for t in counts[2].strip("{}").split(",") if t],
                      lag_bytes=None, lag_seconds=None)
        try:
            lag = self.src().query(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, "
                "       extract(epoch FROM r.replay_lag)::float8 "
                "  FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid "
                " WHERE s.slot_name = $1", [sub["slot"] or self.name]).rows
        except OperationError:
            lag = []
        if lag:
            result["lag_bytes"] = int(lag[0][0]) if lag[0][0] is not None else None
            result["lag_seconds"] = float(lag[0][1]) if lag[0][1] is not None else 0.0
        progress = self.tgt().scalar("SELECT coalesce(sum(bytes_processed), 0)::bigint FROM pg_stat_progress_copy "
                                     "WHERE datname = current_database()")
        result["bytes_copying"] = int(progress or 0)
        return result

    def wait_synced(self):
        """Until every table is copied and the target has what the source had when the wait began; with ``poll``,
        at most that long (``synced`` says which), so that a loop of calls can show the progress."""
        began = time.monotonic()
        goal = self.src().scalar("SELECT pg_current_wal_lsn()::text")
        last_report = began
        self.result.update(progress=[], synced=False)
        errors_before = self._error_counts()
        log = server_log(self.target.data_dir, self.target.owner)
        log_offset = os.path.getsize(log) if log else 0
        copied_before = self._bytes_copied()
        while True:
            if sum(self._error_counts()) - sum(errors_before) >= ERRORS_THAT_DO_NOT_HEAL:
                self._give_up_on_errors(log, log_offset)
            status = self.status()
            elapsed = round(time.monotonic() - began, 1)
            ready = status["tables_ready"] == status["tables_total"]
            if ready:
                confirmed = self.src().scalar(
                    "SELECT (confirmed_flush_lsn >= $2::pg_lsn)::text FROM pg_replication_slots WHERE slot_name = $1",
                    [status["slot"] or self.name, goal])
                within = self.max_lag_bytes is not None and status["lag_bytes"] is not None \
                    and status["lag_bytes"] <= self.max_lag_bytes
                if confirmed == "true" or within:
                    self.result.update(elapsed=elapsed, synced_lsn=goal, synced=True)
                    self._report(status, copied_before, elapsed)
                    return
            if time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                line = dict(elapsed=elapsed, tables_ready=status["tables_ready"], tables_total=status["tables_total"],
                            bytes_copying=status["bytes_copying"], lag_bytes=status["lag_bytes"])
                self.result["progress"].append(line)
                self.module.log("fleetdb replication %s: %s" % (self.name, line))
            if self.poll and elapsed >= self.poll:
                self.result["elapsed"] = elapsed
                self._report(status, copied_before, elapsed)
                self.result["msg"] = ("replication %s is not in sync yet: %s; the copy goes on, a run with "
                                      "state=synced keeps waiting" % (self.name, self.result["progress_line"]))
                return
            if elapsed > self.timeout:
                errors = self._worker_errors()
                raise OperationError(
                    "replication %s did not reach sync within %d s: %d of %d tables ready (still copying: %s), "
                    "lag %s bytes%s" % (self.name, self.timeout, status["tables_ready"], status["tables_total"],
                                        ", ".join(status["tables_copying"][:10]) or "none", status["lag_bytes"],
                                        errors),
                    "run state=synced again to keep waiting (the copy goes on), or read the target's server log",
                    **status)
            time.sleep(0.2)

    def _bytes_copied(self):
        """Bytes the subscribed tables take on the target (heap and TOAST, partitions included): grows with the
        copy, whether or not it has committed."""
        sub = self.subscription()
        if sub is None:
            return 0
        return int(self.tgt().scalar(
            "SELECT coalesce(sum(pg_table_size(t.relid)), 0)::bigint FROM pg_subscription_rel r, "
            "LATERAL pg_partition_tree(r.srrelid) t WHERE r.srsubid = $1::oid AND t.isleaf", [sub["oid"]]))

    def _bytes_to_copy(self):
        return int(self.src().scalar(
            "SELECT coalesce(sum(pg_table_size(t.relid)), 0)::bigint FROM pg_publication_tables p, "
            "LATERAL pg_partition_tree(format('%I.%I', p.schemaname, p.tablename)::regclass) t "
            "WHERE p.pubname = $1 AND t.isleaf", [self.name]))

    def _report(self, status, copied_before, elapsed):
        """Where the copy stands, for the operator: tables, bytes, rate, time left, lag (``progress_line``)."""
        total, done = self._bytes_to_copy(), self._bytes_copied()
        rate = (done - copied_before) / elapsed if elapsed > 0 else 0.0
        left = max(total - done, 0)
        eta = int(left / rate) if rate > 0 and status["tables_ready"] < status["tables_total"] else None
        self.result.update(bytes_total=total, bytes_copied=min(done, total), rate_bytes_per_second=int(rate),
                           eta_seconds=eta)
        in_sync = "in sync, " if self.result["synced"] else ""
        parts = ["%s: %s%d of %d tables copied" % (self.dbname, in_sync, status["tables_ready"], status["tables_total"]),
                 "%s of %s" % (human_bytes(min(done, total)), human_bytes(total))]
        if rate > 0:
            parts.append("%s/s" % human_bytes(rate))
        if eta is not None:
            parts.append("about %d s left" % eta)
        if status["lag_bytes"] is not None:
            parts.append("lag %s" % human_bytes(status["lag_bytes"]))
        self.result["progress_line"] = ", ".join(parts)

    def _error_counts(self):
        """(apply errors, copy errors) the subscription's workers have had since the target's statistics began."""
        rows = self.tgt().query("SELECT apply_error_count, sync_error_count FROM pg_stat_subscription_stats "
                                "WHERE subname = $1", [self.name]).rows
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def _give_up_on_errors(self, log, log_offset):
        """Stop the workers (they would retry forever, each attempt a walsender and a slot on the source) and say
        why, quoting the target's log.  A run after the cause is fixed enables the subscription again."""
        status = self.status()
        self.enable(False)
        quoted = log_errors(log, log_offset)
        raise OperationError(
            "replication %s keeps failing (%d of %d tables ready, still copying: %s): %s"
            % (self.name, status["tables_ready"], status["tables_total"],
               ", ".join(status["tables_copying"][:10]) or "none",
               " | ".join(quoted) if quoted else "the errors are in the target's server log"),
            "fix the cause named (a grant on the source, rows already on the target, a missing table there), then "
            "run again: the subscription was disabled so that it stops retrying, and the run enables it and goes "
            "on where the copy stopped", errors_in_log=quoted, **status)

    def _worker_errors(self):
        try:
            counts = self._error_counts()
        except pgwire.PgError:
            return ""
        if any(counts):
            return "; the target logged %s apply and %s copy errors (see its server log: duplicate keys mean " \
                   "the target tables were not empty)" % counts
        return ""

    def compare(self, tables=None):
        """[dict(table, source_rows, target_rows, source_hash, target_hash, equal)] of the subscribed tables."""
        sub = self.subscription()
        if tables is None:
            tables = [r[0] for r in self.tgt().query(
                "SELECT srrelid::regclass::text FROM pg_subscription_rel WHERE srsubid = $1::oid ORDER BY 1",
                [sub["oid"]]).rows] if sub else []

        def hashes(session):
            return dict((t, session.execute(hash_sql(t)).rows[0]) for t in tables)
        # Separate sessions: pgwire connections are not shared between threads.
        src = connect(self.source, dbname=self.dbname)
        tgt = connect(self.target, dbname=self.dbname)
        try:
            source, target = side_by_side(lambda: hashes(src), lambda: hashes(tgt))
        finally:
            src.close()
            tgt.close()
        comparison = []
        for t in tables:
            (src_rows, src_hash), (tgt_rows, tgt_hash) = source[t], target[t]
            comparison.append(dict(table=t, source_rows=int(src_rows), target_rows=int(tgt_rows),
                                   source_hash=src_hash, target_hash=tgt_hash,
                                   equal=src_rows == tgt_rows and src_hash == tgt_hash))
        return comparison
