# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The initial copy's progress: how far the subscription is, waiting for it to be in sync, and giving up on
errors that repeat."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError, human_bytes
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import server_log


# Failed copy or apply attempts (the workers retry every wal_retrieve_retry_interval, 5 s by default) after which
# the wait gives up: an error that repeats does not heal by itself.
ERRORS_THAT_DO_NOT_HEAL = 3


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


class CopyProgress:
    """The waiting and status part of PostgresReplication."""

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
        """(apply errors, copy errors) the subscription's workers have had since the target's statistics began
        (pg_stat_subscription_stats arrives in 15: a rollback's target, the old server, may be 14)."""
        if self.tgt().server_version_num() < 150000:
            return (0, 0)
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
