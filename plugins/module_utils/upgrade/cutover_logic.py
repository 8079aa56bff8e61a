# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the cutover asks the servers, and how it judges the answers (no I/O here: unit-tested)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import process as pg_process

SCHEMA_FINGERPRINT_SQL = """
SELECT n.nspname || '.' || c.relname AS relation,
       c.relkind::text || CASE c.relpersistence WHEN 'u' THEN ' unlogged' ELSE '' END
       || coalesce(' partition ' || pg_get_expr(c.relpartbound, c.oid), '')
       || ' replica identity ' || c.relreplident::text AS kind,
       coalesce(string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                           ', ' ORDER BY a.attnum), '') AS columns
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p', 'S', 'm')
   AND n.nspname <> ALL ($1::text[])
   AND n.nspname NOT LIKE 'pg_temp%'
 GROUP BY 1, 2
 ORDER BY 1
"""

# Indexes, constraints (not the NOT NULL ones PostgreSQL 18 records as constraints: the columns say those),
# triggers and policies, as the servers print them.
OBJECTS_FINGERPRINT_SQL = """
SELECT 'index ' || n.nspname || '.' || c.relname, 'index', pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname <> ALL ($1::text[]) AND n.nspname NOT LIKE 'pg_temp%'
UNION ALL
SELECT 'constraint ' || n.nspname || '.' || r.relname || ' ' || k.conname, 'constraint', pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
 WHERE k.contype <> 'n' AND n.nspname <> ALL ($1::text[]) AND n.nspname NOT LIKE 'pg_temp%'
UNION ALL
SELECT 'trigger ' || n.nspname || '.' || r.relname || ' ' || t.tgname, 'trigger',
       pg_get_triggerdef(t.oid) || ' (enabled ' || t.tgenabled::text || ')'
  FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace
 WHERE NOT t.tgisinternal AND n.nspname <> ALL ($1::text[]) AND n.nspname NOT LIKE 'pg_temp%'
UNION ALL
SELECT 'policy ' || schemaname || '.' || tablename || ' ' || policyname, 'policy',
       permissive || ' ' || cmd || ' ' || array_to_string(roles, ',') || ' USING ' || coalesce(qual, '')
       || ' CHECK ' || coalesce(with_check, '')
  FROM pg_policies WHERE schemaname <> ALL ($1::text[])
UNION ALL
SELECT 'row security ' || n.nspname || '.' || c.relname, 'row security',
       c.relrowsecurity::text || ' forced ' || c.relforcerowsecurity::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE (c.relrowsecurity OR c.relforcerowsecurity) AND n.nspname <> ALL ($1::text[])
 ORDER BY 1
"""

# The tables a publication of the server must hold: the permanent ones, partitions through their root.
PUBLISHED_TABLES_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND NOT c.relispartition
   AND n.nspname <> ALL ($1::text[]) AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1
"""

SUBSCRIBED_TABLES_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) FROM pg_subscription_rel r
  JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE r.srsubid = (SELECT oid FROM pg_subscription WHERE subname = $1) ORDER BY 1
"""

# The next transaction id (what no transaction has yet), and how many transactions hold one now.
XID_SQL = ("SELECT pg_snapshot_xmax(s)::text::bigint, (SELECT count(*) FROM pg_snapshot_xip(s)) "
           "FROM pg_current_snapshot() AS s")


def schema_differences(old_rows, new_rows):
    """Human-readable differences between two SCHEMA_FINGERPRINT_SQL results."""
    old = dict((r[0], (r[1], r[2])) for r in old_rows)
    new = dict((r[0], (r[1], r[2])) for r in new_rows)
    problems = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            problems.append("%s exists only on the old server" % name)
        elif name not in old:
            problems.append("%s exists only on the new server" % name)
        elif old[name] != new[name]:
            problems.append("%s differs: old (%s: %s) new (%s: %s)" % (name, old[name][0], old[name][1],
                                                                       new[name][0], new[name][1]))
    return problems


def unreplicated_tables(old_tables, subscribed):
    """Tables of the old server that the subscription does not carry (their rows would be lost)."""
    return sorted(set(old_tables) - set(subscribed))


def drain_is_clean(before, marker_xids, after, in_progress):
    """True when the drain's markers used the only transaction ids assigned between ``before`` and ``after``
    (next xids), and no transaction holds one any more: no other write can hide before the markers."""
    expected = list(range(before, before + len(marker_xids)))
    return sorted(marker_xids) == expected and after == before + len(marker_xids) and in_progress == 0


def proof_problems(controldata, drain_next_xid):
    """Why the stopped old server's pg_control does not prove that nothing committed after the drain."""
    if not pg_process.cleanly_shut_down(controldata):
        return ["the old server did not shut down cleanly (cluster state: %s)"
                % controldata.get("Database cluster state", "unknown")]
    next_xid = pg_process.controldata_xid(controldata)
    if next_xid is None:
        return ["pg_controldata shows no NextXID"]
    if next_xid != drain_next_xid:
        return ["%d transaction id(s) were assigned on the old server after the drain (next xid %d, the drain "
                "ended at %d): a session or worker wrote past the fence" % (next_xid - drain_next_xid, next_xid,
                                                                            drain_next_xid)]
    return []


def writes_after_the_drain(records, drain_next_xid, next_xid, relations):
    """Judge what the transaction ids assigned after the drain wrote, from the stopped old server's WAL
    (``records`` of postgres.waldump, from before the drain's last xid reading on).  Returns a list of what
    was not statistics: empty when each id ended (COMMIT or ABORT) having written only what an ANALYZE writes
    (``relations`` of waldump.statistics_relations, per database).  Anything else, or an id the WAL does not
    show ending, is named: the proof then fails as before."""
    count = next_xid - drain_next_xid
    if count <= 0 or count > 1000:
        return ["%d transaction ids after the drain" % count]
    expected = set((drain_next_xid + i) & 0xFFFFFFFF for i in range(count))   # pg_waldump shows 32-bit ids
    statistics = set(r for found in relations for r in found["statistics"])
    in_place = set(r for found in relations for r in found["in_place"])
    ended, other = set(), []
    for record in records:
        xid = record["xid"]
        if xid not in expected:
            continue
        if record["rmgr"] == "Transaction" and record["desc"].startswith(("COMMIT ", "ABORT ")):
            ended.add(xid)
        elif record["rmgr"] == "Transaction" and record["desc"].startswith("INVALIDATION"):
            continue   # wal_level = logical: the cache invalidations of the catalog rows written, no data
        elif record["rmgr"] in ("Heap", "Heap2", "Btree") and record["relations"] and all(
                rel in statistics or (rel in in_place and record["desc"].startswith("INPLACE"))
                for rel in record["relations"]):
            continue
        else:
            other.append("xid %d wrote %s %s at %s" % (xid, record["rmgr"], record["desc"][:80], record["lsn"]))
    other += ["xid %d does not end in the WAL read" % xid for xid in sorted(expected - ended)]
    return other
