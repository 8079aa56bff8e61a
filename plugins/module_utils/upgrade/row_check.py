# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Row counts of the replicated tables compared at one point, outside the cutover window.

Counting grows with the data, so it runs before the fence, while clients write.  Both sides must be
counted at the same point of the replication stream:

  new server  its subscription is disabled: it holds every transaction up to the origin's position R;
  old server  counted in a REPEATABLE READ snapshot S taken after that;
  the gap     the transactions between the two are decoded from a temporary copy of the upgrade's slot
              (pgoutput, only INSERT/DELETE counts matter): each one applied on the new server (commit <= R)
              but not visible in S, or the other way round, moves the expected difference by its row delta.

So the comparison is exact under any write load; its cost on the window is nil.  The subscription is enabled
again at once; the new server catches up before the fence.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import (
    side_by_side, union_all_rows)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.slots import drop_slot

XID_EPOCH = 1 << 32

# The upgrade slot's changes after the origin position, per transaction and table: the row delta, and whether
# the table was truncated.  pgoutput messages: 'I' insert and 'D' delete carry the table's oid after the type
# byte (the partitioned root with publish_via_partition_root), 'T' truncate, 'C' commit (its lsn: the end).
CHANGES_SQL = """
WITH change AS MATERIALIZED (
  SELECT lsn, xid, chr(get_byte(data, 0)) AS kind,
         CASE WHEN get_byte(data, 0) IN (73, 68)
              THEN ('x' || encode(substring(data FROM 2 FOR 4), 'hex'))::bit(32)::int::oid END AS relid
    FROM pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, NULL,
                                             'proto_version', '1', 'publication_names', $3)),
commit AS (SELECT xid, lsn FROM change WHERE kind = 'C')
SELECT change.xid::text, (commit.lsn <= $4::pg_lsn)::text AS applied,
       coalesce((SELECT format('%I.%I', n.nspname, r.relname) FROM pg_class r
                   JOIN pg_namespace n ON n.oid = r.relnamespace
                  WHERE r.oid = coalesce(pg_partition_root(change.relid), change.relid)), '') AS relation,
       count(*) FILTER (WHERE kind = 'I') - count(*) FILTER (WHERE kind = 'D') AS delta,
       bool_or(kind = 'T')::text AS truncated
  FROM change JOIN commit USING (xid)
 WHERE change.kind IN ('I', 'D', 'T')
 GROUP BY 1, 2, 3
"""


# The transaction ids this database's sessions hold, and its prepared transactions'.
RUNNING_XIDS_SQL = """
SELECT backend_xid::text FROM pg_stat_activity WHERE datname = current_database() AND backend_xid IS NOT NULL
UNION SELECT transaction::text FROM pg_prepared_xacts WHERE database = current_database()
"""


def widened(xid, snapshot):
    """The 64-bit id of the recent transaction ``xid`` (32 bits, as decoding and pg_stat_activity give it): the
    epoch that puts it within 2^31 of ``snapshot``'s xmax (pg_current_snapshot()'s text)."""
    xmax = int(snapshot.split(":")[1])
    full = (xmax - xmax % XID_EPOCH) + int(xid)
    if full - xmax >= XID_EPOCH // 2:
        full -= XID_EPOCH
    elif xmax - full > XID_EPOCH // 2:
        full += XID_EPOCH
    return full


def visible_in_snapshot(xid, snapshot):
    """Whether the committed transaction ``xid`` (32 bits) is visible in ``snapshot`` (64-bit ids)."""
    xmin, xmax, xip = snapshot.split(":")
    xmin, xmax = int(xmin), int(xmax)
    full = widened(xid, snapshot)
    if full < xmin:
        return True
    return full < xmax and str(full) not in xip.split(",")


def expected_differences(changes, snapshot, tables):
    """{table: rows the new server must have more than the old snapshot} from CHANGES_SQL's rows, and the
    tables truncated in the gap (their difference cannot be known)."""
    differences, truncated = dict((t, 0) for t in tables), []
    for xid, applied, relation, delta, was_truncated in changes:
        if relation not in differences:
            continue
        weight = (applied == "true") - visible_in_snapshot(xid, snapshot)
        if weight and was_truncated == "true":
            truncated.append(relation)
        differences[relation] += weight * int(delta)
    return differences, sorted(set(truncated))


def mismatches(old_counts, new_counts, differences):
    return ["%s (old %s, new %s%s)" % (t, old_counts[t], new_counts[t],
                                       ", %+d in flight" % differences[t] if differences[t] else "")
            for t in sorted(differences) if int(old_counts[t]) + differences[t] != int(new_counts[t])]


def _count(session, tables):
    return dict(union_all_rows(session, ["SELECT %s, count(*) FROM %s" % (pgwire.quote_literal(t), t)
                                         for t in tables]))


class RowCountCheck:
    """One database: ``old``/``gap`` two sessions on the old server, ``new`` one on the new server."""

    def __init__(self, old, gap, new, subscription, slot, tables, timeout=30):
        self.old, self.gap, self.new = old, gap, new
        self.subscription = subscription
        self.slot = slot
        self.tables = list(tables)
        self.timeout = timeout
        self.commits_from = None   # the plugin that listed the commits since the slot's position

    def run(self):
        sub = pgwire.quote_ident(self.subscription)
        self.new.execute("ALTER SUBSCRIPTION %s DISABLE" % sub)
        try:
            applied_upto = self._paused_position()
            deadline = time.monotonic() + self.timeout
            while True:
                snapshot, changes, counts, raced = self._count_at(applied_upto)
                if not raced:
                    break
                if time.monotonic() > deadline:
                    raise OperationError("transactions kept committing on the old server just as its rows were "
                                         "counted (%s): the counts could not be taken at one point" % ", ".join(raced),
                                         "run again")
        finally:
            self.new.execute("ALTER SUBSCRIPTION %s ENABLE" % sub)
        differences, truncated = expected_differences(changes, snapshot, self.tables)
        if truncated:
            raise OperationError("tables were truncated while their rows were counted: %s" % ", ".join(truncated),
                                 "run again (nothing was changed)")
        wrong = mismatches(counts["old"], counts["new"], differences)
        if wrong:
            raise OperationError("row counts differ between the old and the new server at the same point of "
                                 "replication: %s" % ", ".join(wrong),
                                 "do not switch: investigate replication conflicts in the new server's log "
                                 "(nothing was changed; the old server keeps serving)", row_mismatches=wrong)
        return dict(tables_verified=len(self.tables), rows=sum(int(v) for v in counts["new"].values()),
                    verified_in_flight=sum(1 for v in differences.values() if v), commits_listed_by=self.commits_from)

    def _count_at(self, applied_upto):
        """Both counts, the old server's in a snapshot taken now, and the changes between the two points.

        A transaction whose commit is in the WAL, replicated, applied and confirmed, can still be in progress
        in the old server's snapshot: its backend has not yet left the proc array, for a moment, or for as long
        as a synchronous standby takes to confirm the commit.  It is older than what the slot still decodes:
        its rows would be on the new server and nowhere in the reckoning.  The newest such transaction is not
        even in the snapshot's in-progress list (its id is past the snapshot's xmax, the last one completed),
        so they are taken from the sessions before the snapshot: each one applied was committed, and so held
        its id, before the apply worker stopped.  Once those the snapshot does not see have ended, the changes
        are decoded up to after their commits; one that committed and is not among them is such a race
        (returned: count again, it is visible now)."""
        running = [row[0] for row in self.gap.query(RUNNING_XIDS_SQL).rows]
        self.old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            snapshot = self.old.scalar("SELECT pg_current_snapshot()::text")
            old_counts, new_counts = side_by_side(lambda: _count(self.old, self.tables),
                                                  lambda: _count(self.new, self.tables))
        finally:
            if not self.old.closed:
                self.old.execute("COMMIT")
        counts = dict(old=old_counts, new=new_counts)
        unseen = [widened(xid, snapshot) for xid in running if not visible_in_snapshot(xid, snapshot)]
        committed = self._ended(unseen)
        changes, commits = self._changes_since(applied_upto)
        raced = [xid for xid in committed if str(int(xid) % XID_EPOCH) not in commits]
        return snapshot, changes, counts, raced

    def _ended(self, xids):
        """Wait until each of the transactions ``xids`` (64-bit) has ended; return those that committed."""
        if not xids:
            return []
        deadline = time.monotonic() + self.timeout
        while True:
            rows = self.gap.query("SELECT x, pg_xact_status(x::xid8) FROM unnest($1::text[]) AS x",
                                  ["{%s}" % ",".join(str(x) for x in xids)]).rows
            running = [xid for xid, status in rows if status == "in progress"]
            if not running:
                return [xid for xid, status in rows if status == "committed"]
            if time.monotonic() > deadline:
                raise OperationError("transactions open on the old server while its rows were counted did not end "
                                     "within %d s: %s" % (self.timeout, ", ".join(running)),
                                     "end them (pg_stat_activity: backend_xid; a session whose wait_event is "
                                     "SyncRep waits for a synchronous standby to confirm its commit), then run "
                                     "again")
            time.sleep(0.01)

    def _paused_position(self):
        """Wait until the subscription's apply worker is gone; return what it applied up to (origin lsn)."""
        deadline = time.monotonic() + self.timeout
        while self.new.scalar("SELECT count(*) FROM pg_stat_subscription s JOIN pg_subscription p "
                              "ON p.oid = s.subid WHERE p.subname = $1 AND s.pid IS NOT NULL",
                              [self.subscription]) != "0":
            if time.monotonic() > deadline:
                raise OperationError("the apply worker of %s did not stop within %d s"
                                     % (self.subscription, self.timeout),
                                     "check the new server's log, then run again")
            time.sleep(0.01)
        return self.new.scalar("SELECT coalesce(o.remote_lsn, '0/0')::text FROM pg_subscription p "
                               "LEFT JOIN pg_replication_origin_status o ON o.external_id = 'pg_' || p.oid "
                               "WHERE p.subname = $1", [self.subscription])

    def _changes_since(self, applied_upto):
        """The changes the slot still holds, up to now: past every commit the snapshot can have seen and every
        commit of a transaction it saw in progress (flushed: decoding reads no further)."""
        upto = self.gap.scalar("SELECT pg_current_wal_insert_lsn()::text")
        deadline = time.monotonic() + self.timeout
        while self.gap.scalar("SELECT (pg_current_wal_flush_lsn() >= $1::pg_lsn)::text", [upto]) != "true":
            if time.monotonic() > deadline:
                raise OperationError("the old server did not flush its WAL within %d s" % self.timeout,
                                     "check the old server's disk and log")
            time.sleep(0.01)
        copy = "fleetdb_verify_%d" % int(self.gap.backend_pid)
        publications = self.new.scalar("SELECT array_to_string(ARRAY(SELECT quote_ident(p) FROM "
                                       "unnest(subpublications) AS p), ',') FROM pg_subscription "
                                       "WHERE subname = $1", [self.subscription])
        self.gap.query("SELECT pg_copy_logical_replication_slot($1, $2, true)", [self.slot, copy])
        try:
            changes = self.gap.query(CHANGES_SQL, [copy, upto, publications, applied_upto]).rows
        finally:
            drop_slot(self.gap, copy)
        return changes, self._commits_since(copy, upto, set(row[0] for row in changes))

    def _commits_since(self, copy, upto, decoded):
        """Every transaction (32-bit xid) that commits in the same range, also those that changed nothing
        published (pgoutput leaves them out): test_decoding on another copy of the slot. Without test_decoding
        (contrib not installed), those pgoutput decoded: a transaction that changed nothing published then
        only makes the count start again."""
        try:
            self.gap.query("SELECT pg_copy_logical_replication_slot($1, $2, true, 'test_decoding')",
                           [self.slot, copy])
        except pgwire.PgError:
            self.commits_from = "pgoutput"
            return decoded
        self.commits_from = "test_decoding"
        try:
            return set(row[0] for row in self.gap.query(
                "SELECT split_part(data, ' ', 2) FROM pg_logical_slot_peek_changes($1, $2::pg_lsn, NULL, "
                "'include-xids', '1', 'skip-empty-xacts', '0') WHERE data LIKE 'COMMIT %'", [copy, upto]).rows)
        finally:
            drop_slot(self.gap, copy)
