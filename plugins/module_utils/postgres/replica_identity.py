# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replica identity: what a published table needs for its UPDATE and DELETE, on both servers.

A table in a publication that publishes updates and deletes must have a replica identity (a primary key, an
index named by USING INDEX, or FULL), on the old server while it is published for the upgrade and on the new
one once it is published for a rollback.  The schema is migrated before the opted-in REPLICA IDENTITY FULL is
set on the old server, so the new server learns it here: ``align`` makes every table's identity on the target
what it is on the source.  Leaf partitions count on their own: an UPDATE of a partition checks the
partition's identity, whatever its root's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire

# Every permanent table and partition: its identity and, for USING INDEX, the index.
IDENTITIES_SQL = """
SELECT n.nspname, c.relname, c.relreplident::text,
       (SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = c.oid AND i.indisreplident),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       c.relispartition, c.relkind::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%'
"""

# The leaf partitions under each of the roots given ($1: their qualified names).
LEAVES_SQL = """
SELECT n.nspname, c.relname FROM unnest($1::text[]) AS r(name)
  CROSS JOIN LATERAL pg_partition_tree(r.name::regclass) t
  JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.isleaf AND t.level > 0
"""

CLAUSES = {"d": "DEFAULT", "f": "FULL", "n": "NOTHING"}


def qualified(schema, table):
    return "%s.%s" % (pgwire.quote_ident(schema), pgwire.quote_ident(table))


def identities(session):
    """{(schema, table): (identity letter, replica identity index or None, has a primary key)}."""
    return dict(((r[0], r[1]), (r[2], r[3], r[4] in ("t", True))) for r in session.query(IDENTITIES_SQL).rows)


def usable(identity):
    """True when UPDATE and DELETE of a published table with this identity work."""
    letter, index, has_pk = identity
    return letter == "f" or (letter == "d" and has_pk) or (letter == "i" and index is not None)


def leaves_without_identity(session, roots):
    """The leaf partitions under the partitioned tables ``roots`` ((schema, table)) that lack a usable
    identity: FULL on their root does not reach them."""
    if not roots:
        return []
    known = identities(session)
    leaves = session.query(LEAVES_SQL, [[qualified(s, t) for s, t in roots]]).rows
    return [(s, t) for s, t in leaves if (s, t) in known and not usable(known[(s, t)])]


def alignment(source, target):
    """The ALTER TABLE statements that give each table on the target the replica identity FULL, NOTHING or
    DEFAULT it has on the source.  USING INDEX comes with the index, which the migrate restores; tables on one
    side only, and indexes missing on the target, are left to the cutover's schema check."""
    old, new = identities(source), identities(target)
    statements = []
    for name in sorted(set(old) & set(new)):
        if old[name][0] != "i" and old[name][0] != new[name][0]:
            statements.append("ALTER TABLE %s REPLICA IDENTITY %s" % (qualified(*name), CLAUSES[old[name][0]]))
    return statements
