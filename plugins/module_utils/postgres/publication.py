# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The upgrade's publication on the source: the tables it lists, their replica identity, the grants its
replication role needs, and the tables that join it later."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replica_identity import (
    alignment as replica_identity_alignment, leaves_without_identity, qualified)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.slots import slot_names


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


class Publication:
    """The publication side of PostgresReplication."""

    def _create_publication(self, tables):
        pub = pgwire.quote_ident(self.name)
        listed = ", ".join(qualified(s, t) for s, t in tables)
        sql = "CREATE PUBLICATION %s%s WITH (publish_via_partition_root = true)" % (
            pub, " FOR TABLE " + listed if tables else "")
        self._act("CREATE PUBLICATION %s (%d tables)" % (pub, len(tables)), lambda: self.src().execute(sql))

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
        slots = slot_names(src, like="pg_%s_sync_%%" % sub["oid"])
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
