# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The subscribed tables compared on both sides: row count and an order-independent hash of the rows."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect, side_by_side


def hash_sql(table):
    """Row count and an order-independent hash of every row (no sort, no 1 GB string limit):
    md5 over the count and the sums of both halves of each row's md5."""
    return ("SELECT count(*)::text, md5(count(*)::text || ':' || "
            "coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint), 0)::text || ':' || "
            "coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint), 0)::text) "
            "FROM (SELECT md5(t::text) AS h FROM %s AS t) AS rows" % table)


class Comparison:
    """The comparison part of PostgresReplication."""

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
