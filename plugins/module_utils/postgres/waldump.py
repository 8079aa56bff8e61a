# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a server's WAL says each transaction wrote, read with its own release's pg_waldump.

The cutover's proof reads pg_control first: no transaction id assigned after the drain.  When one was, the WAL
written since the drain names what it touched.  An autovacuum ANALYZE (autovacuum workers log in through no
pg_hba.conf, so no fence stops them) writes only the planner's statistics: pg_statistic and
pg_statistic_ext_data, their TOAST tables and indexes, and in-place updates of pg_class (reltuples, relpages).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import run_as

# Every relation an ANALYZE writes in this database, as "tablespace/database/filenode" (how pg_waldump names
# them; catalogs live in the database's default tablespace unless moved).
STATISTICS_RELATIONS_SQL = """
WITH stats AS (
    SELECT oid FROM pg_class WHERE oid IN ('pg_catalog.pg_statistic'::regclass, 'pg_catalog.pg_statistic_ext_data'::regclass)
    UNION SELECT reltoastrelid FROM pg_class
           WHERE oid IN ('pg_catalog.pg_statistic'::regclass, 'pg_catalog.pg_statistic_ext_data'::regclass)),
     rels AS (
    SELECT oid, false AS in_place_only FROM stats
    UNION SELECT indexrelid, false FROM pg_index WHERE indrelid IN (SELECT oid FROM stats)
    UNION SELECT 'pg_catalog.pg_class'::regclass, true)
SELECT format('%s/%s/%s', CASE c.reltablespace WHEN 0 THEN d.dattablespace ELSE c.reltablespace END, d.oid,
              pg_relation_filenode(c.oid)), r.in_place_only
  FROM rels r JOIN pg_class c ON c.oid = r.oid
  JOIN pg_database d ON d.datname = current_database()
"""

WAL_FILE = re.compile(r"^[0-9A-F]{24}$")
RECORD = re.compile(r"^rmgr: (\S+)\s+len \(rec/tot\):\s*\d+/\s*\d+, tx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), "
                    r"prev [0-9A-F]+/[0-9A-F]+, desc: (.*)$")
RELATION = re.compile(r"\brel:? (\d+/\d+/\d+)\b")   # "rel 1663/5/2619 blk 17", NEW_CID "rel: 1663/5/2619"
# The pages a record changes: "blkref #0: rel 1663/5/2613 blk 0", "... fork vm blk 2" (not the main fork).
BLOCK = re.compile(r"\bblkref #\d+: rel (\d+/\d+/\d+)( fork \w+)? blk (\d+)")
# How pg_waldump says it reached the end of the WAL written (not a failure to read it).
END_OF_WAL = ("invalid record length", "could not find a valid record", "invalid magic number", "record with "
              "incorrect prev-link", "contrecord is requested by")


class WalDumpError(Exception):
    pass


def statistics_relations(session):
    """dict(statistics=[relations any ANALYZE record may touch], in_place=[relations only updated in place])."""
    found = dict(statistics=[], in_place=[])
    for relation, in_place_only in session.query(STATISTICS_RELATIONS_SQL).rows:
        found["in_place" if in_place_only in (True, "t", "true") else "statistics"].append(relation)
    return found


def parse(text):
    """The records of pg_waldump's output: dict(rmgr, xid, lsn, desc, relations)."""
    records = []
    for line in text.splitlines():
        match = RECORD.match(line.strip())
        if match:
            rmgr, xid, lsn, desc = match.groups()
            records.append(dict(rmgr=rmgr, xid=int(xid), lsn=lsn, desc=desc, relations=RELATION.findall(desc)))
    return records


def pages(record):
    """The (relation, page number) pairs of the main fork that ``record`` changes."""
    return [(relation, int(page)) for relation, fork, page in BLOCK.findall(record["desc"]) if not fork]


def lsn_value(lsn):
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def segment_file(wal_dir, lsn):
    """The name of the WAL segment file in ``wal_dir`` that holds ``lsn``, on the latest timeline that has one.
    Given it, pg_waldump takes the segment size and the timeline from it; without it, from whichever file of a
    running server's pg_wal it opens first, which may be a segment preallocated and not yet written (no header:
    "WAL segment size must be a power of two ... header specifies 0 bytes"), and timeline 1."""
    try:
        names = [name for name in os.listdir(wal_dir) if WAL_FILE.match(name)]
        segment_size = os.path.getsize(os.path.join(wal_dir, names[0])) if names else 0
    except OSError:
        return None
    if not segment_size:
        return None
    segment = lsn_value(lsn) // segment_size
    per_id = 0x100000000 // segment_size
    holding = sorted(name for name in names if name[8:] == "%08X%08X" % (segment // per_id, segment % per_id))
    return holding[-1] if holding else None


def records(module, bin_dir, data_dir, owner, start_lsn, end_lsn=None):
    """Every WAL record of the server in ``data_dir`` from ``start_lsn`` to ``end_lsn`` (a running server's WAL
    flushed up to it), or to the end of its WAL (a stopped server's)."""
    wal_dir = os.path.join(data_dir, "pg_wal")
    argv = [os.path.join(bin_dir, "pg_waldump"), "--path", wal_dir, "--start", start_lsn]
    if end_lsn:
        argv += ["--end", end_lsn]
    first = segment_file(wal_dir, start_lsn)
    if first:
        argv.append(first)
        # Given one file, pg_waldump reads that segment only ("end WAL location ... is not inside file"): the
        # segment that holds the end's last byte ends the range.
        last = segment_file(wal_dir, "%X/%X" % divmod(lsn_value(end_lsn) - 1, 1 << 32)) if end_lsn else None
        if last and last != first:
            argv.append(last)
    rc, out, err = run_as(module, owner, argv)
    if rc != 0 and not any(phrase in (err or "") for phrase in END_OF_WAL):
        raise WalDumpError("pg_waldump from %s failed (rc=%d): %s" % (start_lsn, rc, (err or out).strip()[-300:]))
    return parse(out)
