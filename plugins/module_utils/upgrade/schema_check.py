# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cutover's schema check: DDL is not replicated, so the two servers' schemas must match, and every
permanent table of the old server must be in the subscription.

Before the fence, ``compare`` reads both descriptions in full and names each difference.  Each answer carries
an md5 of itself, computed by the server in the same evaluation, and just before them each server gives a
catalog token: per catalog the description reads, its number of rows and the transaction ids (xmin) of its
rows written by any transaction not older than that moment's oldest running one.  Any later committed change
to those catalogs (an insert, an update, which writes a new row version, or a delete, which lowers the count)
moves the token; VACUUM's in-place updates of statistics do not, nor does anything in other catalogs.

Inside the window, ``unchanged`` asks each server for its token again, both servers at once: one scan of
each catalog, no description.  When a token moved (a temporary table, a TRUNCATE, DDL), the md5s of the
descriptions are read; when one of those moved too, the full comparison runs again, which names what differs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.cutover_logic import (
    OBJECTS_FINGERPRINT_SQL, PUBLISHED_TABLES_SQL, SCHEMA_FINGERPRINT_SQL, SUBSCRIBED_TABLES_SQL,
    schema_differences, unreplicated_tables)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import side_by_side

EMPTY_DIGEST = "d41d8cd98f00b204e9800998ecf8427e"   # md5(''): what digest_sql() gives for no rows
_MD5 = "md5(coalesce(string_agg(%s::text, E'\\n' ORDER BY %s::text), ''))"


# The catalogs the descriptions read (pg_get_*def() reads the names of types, functions, operator classes,
# collations, roles).  Shared pg_authid needs a superuser, which the cutover is.
CATALOGS = ("pg_am", "pg_attribute", "pg_authid", "pg_class", "pg_collation", "pg_constraint", "pg_index",
            "pg_namespace", "pg_opclass", "pg_operator", "pg_policy", "pg_proc", "pg_subscription_rel", "pg_trigger",
            "pg_type")

# $1: the horizon of an earlier token, or NULL for the current snapshot's oldest running transaction id.
CATALOG_TOKEN_SQL = """
WITH h AS MATERIALIZED (
  SELECT coalesce($1::text, (pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint
                             %% 4294967296)::text)::xid AS horizon)
SELECT (SELECT horizon::text FROM h),
       (SELECT string_agg(catalog || ' ' || n || ' ' || coalesce(newer, ''), '; ' ORDER BY catalog) FROM (%s) t)
""" % " UNION ALL ".join(
    "SELECT '%s' AS catalog, count(*) AS n, string_agg(c.xmin::text, ',' ORDER BY c.xmin::text) "
    "FILTER (WHERE pg_catalog.age(c.xmin) <= pg_catalog.age(h.horizon)) AS newer FROM h, pg_catalog.%s c"
    % (catalog, catalog) for catalog in CATALOGS)


def catalog_token(session, horizon=None):
    """(horizon, token) of the catalogs the schema check reads; give the horizon of an earlier token to tell
    whether anything changed in them since (the token then differs)."""
    return tuple(session.query(CATALOG_TOKEN_SQL, [horizon]).rows[0])


def digest_sql(sql):
    """One md5 of all the rows ``sql`` returns, in any order."""
    return "WITH f AS (%s) SELECT %s FROM f" % (sql, _MD5 % ("f", "f"))


def with_digest_sql(sql):
    """The rows of ``sql``, each followed by digest_sql()'s md5 of them all (one evaluation for both)."""
    return "WITH f AS (%s) SELECT f.*, (SELECT %s FROM f g) FROM f" % (sql, _MD5 % ("g", "g"))


class SchemaCheck:
    """Per database: the old and new servers' schemas match, and the subscription carries every table."""

    def __init__(self, excluded_schemas):
        self.excluded = [list(excluded_schemas)]
        self.digests = {}
        self.tokens = {}

    def _queries(self, subscription):
        """(old server's queries, new server's queries), as (sql, params)."""
        return ([(SCHEMA_FINGERPRINT_SQL, self.excluded), (OBJECTS_FINGERPRINT_SQL, self.excluded),
                 (PUBLISHED_TABLES_SQL, self.excluded)],
                [(SCHEMA_FINGERPRINT_SQL, self.excluded), (OBJECTS_FINGERPRINT_SQL, self.excluded),
                 (SUBSCRIBED_TABLES_SQL, [subscription])])

    def compare(self, db, old, new, subscription):
        """The full comparison; remembers the catalog tokens taken before it and each answer's md5, for
        unchanged()."""
        tokens = side_by_side(lambda: catalog_token(old), lambda: catalog_token(new))
        old_queries, new_queries = self._queries(subscription)
        old_answers = [_rows_and_digest(old.query(with_digest_sql(sql), params).rows) for sql, params in old_queries]
        new_answers = [_rows_and_digest(new.query(with_digest_sql(sql), params).rows) for sql, params in new_queries]
        (old_tables, old_objects, published), (new_tables, new_objects, subscribed) = (
            [rows for rows, _digest in old_answers], [rows for rows, _digest in new_answers])
        problems = schema_differences(old_tables, new_tables) + schema_differences(old_objects, new_objects)
        if problems:
            raise OperationError(
                "the schemas of database %s differ between the old and the new server (DDL is not replicated): %s"
                % (db, "; ".join(problems[:20])),
                "apply the same DDL on the new server (or revert it on the old one), then run again",
                schema_differences=problems)
        missing = unreplicated_tables([r[0] for r in published], [r[0] for r in subscribed])
        if missing:
            raise OperationError(
                "tables of database %s on the old server are not replicated to the new one (created or detached "
                "from their partitioned table after the replication was set up): %s" % (db, ", ".join(missing)),
                "create them on the new server as they are on the old one, then run the replication step again "
                "(fleetdb.online_upgrade.replication state=synced adds them to the publication and copies them)",
                unreplicated_tables=missing)
        self.digests[db] = [digest for _rows, digest in old_answers + new_answers]
        self.tokens[db] = tokens

    def unchanged(self, db, old, new, subscription):
        """Inside the window: neither schema moved since compare(), both servers asked at once.  Returns how
        that was shown: ``catalogs`` (no change in the catalogs), ``md5`` (a change, but not in what the
        descriptions say) or ``full`` (compared in full again; raises when they differ)."""
        if db in self.tokens:
            (old_horizon, _old), (new_horizon, _new) = self.tokens[db]
            if side_by_side(lambda: catalog_token(old, old_horizon),
                            lambda: catalog_token(new, new_horizon)) == list(self.tokens[db]):
                return "catalogs"
        old_queries, new_queries = self._queries(subscription)
        old_digests, new_digests = side_by_side(
            lambda: [old.scalar(digest_sql(sql), params) for sql, params in old_queries],
            lambda: [new.scalar(digest_sql(sql), params) for sql, params in new_queries])
        if db in self.digests and old_digests + new_digests == self.digests[db]:
            return "md5"
        self.compare(db, old, new, subscription)
        return "full"


def _rows_and_digest(rows):
    return [row[:-1] for row in rows], (rows[0][-1] if rows else EMPTY_DIGEST)
