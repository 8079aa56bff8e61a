# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Large objects (pg_largeobject, pg_largeobject_metadata), which logical replication does not carry: list them,
copy one to another server, find those on pages the WAL says were changed.

Every change of a large object leaves a live tuple naming it on a page the change wrote: lo_create, ALTER LARGE
OBJECT ... OWNER and GRANT its metadata row; lo_write/lo_put and lo_truncate (even to 0, see inv_truncate in
PostgreSQL's src/backend/storage/large_object/inv_api.c) a data page.  Only lo_unlink leaves none: its metadata row
is deleted, so whoever reads the WAL keeps which objects each metadata page held.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire

CHUNK = 1024 * 1024   # bytes read by one lo_get, written by one lo_put

# As pg_waldump names them: "tablespace/database/filenode" (catalogs live in the database's default tablespace).
RELATIONS_SQL = """
SELECT CASE c.oid WHEN 'pg_catalog.pg_largeobject'::regclass THEN 'data' ELSE 'metadata' END,
       format('%s/%s/%s', CASE c.reltablespace WHEN 0 THEN d.dattablespace ELSE c.reltablespace END, d.oid,
              pg_relation_filenode(c.oid))
  FROM pg_class c JOIN pg_database d ON d.datname = current_database()
 WHERE c.oid IN ('pg_catalog.pg_largeobject'::regclass, 'pg_catalog.pg_largeobject_metadata'::regclass)
"""
BLOCK_OF_CTID = "(ctid::text::point)[0]::bigint"
# The row's version (ctid and xmin): another one once the object is re-owned, re-granted or created again.
METADATA_COLUMNS = "oid::text, pg_get_userbyid(lomowner), lomacl::text, %s, ctid::text || xmin::text" % BLOCK_OF_CTID
METADATA_SQL = "SELECT %s FROM pg_catalog.pg_largeobject_metadata" % METADATA_COLUMNS
# The live tuples of the pages named: a TID range scan per page (PostgreSQL 14 and later), not a scan of the table.
ON_PAGES_SQL = """
SELECT x.* FROM unnest($1::bigint[]) AS b,
  LATERAL (SELECT %s FROM %s WHERE ctid >= format('(%%s,0)', b)::tid AND ctid < format('(%%s,0)', b + 1)::tid
           OFFSET 0) AS x
"""
METADATA_ON_PAGES_SQL = ON_PAGES_SQL % (METADATA_COLUMNS, "pg_catalog.pg_largeobject_metadata")
DATA_ON_PAGES_SQL = ON_PAGES_SQL % ("loid::text, pageno, encode(data, 'hex')", "pg_catalog.pg_largeobject")
CHUNK_BYTES = "(current_setting('block_size')::int / 4)"   # LOBLKSIZE: the bytes of one pg_largeobject row
SIZE_SQL = ("SELECT coalesce((SELECT pageno::bigint * %s + length(data) FROM pg_catalog.pg_largeobject "
            "WHERE loid = $1::oid ORDER BY pageno DESC LIMIT 1), 0)" % CHUNK_BYTES)


def relations(session):
    """dict(data=, metadata=) of the session's database, as pg_waldump names them."""
    return dict(session.query(RELATIONS_SQL).rows)


def settled_lsn(session, timeout):
    """The current WAL insert position, once every transaction running then has ended and the WAL up to it is
    flushed: from here a snapshot sees every change whose WAL lies before it."""
    lsn = session.scalar("SELECT pg_current_wal_insert_lsn()::text")
    xmax = session.scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
    started = session.scalar("SELECT clock_timestamp()::text")
    deadline = time.monotonic() + timeout
    while session.scalar("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8 "
                         "AND pg_current_wal_flush_lsn() >= $2::pg_lsn", [xmax, lsn]) != "t":
        if time.monotonic() > deadline:
            pids = [r[0] for r in session.query(
                "SELECT pid::text FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND xact_start < $1::timestamptz",
                [started]).rows]
            raise OperationError("transactions of pids %s, running since before %s, did not end within %g s: the "
                                 "large objects they change cannot be copied yet" % (", ".join(pids) or "-", started,
                                                                                     timeout),
                                 "end them (pg_terminate_backend) or let them finish, then run again")
        time.sleep(0.005)
    return lsn


def begin_snapshot(session):
    session.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")


def end_transaction(session):
    session.execute("COMMIT")


def metadata(session, oids=None):
    """The large objects of the database (those of ``oids`` that exist, when given): {oid: (owner, acl text or
    None, metadata page, row version)}."""
    if oids is None:
        return _by_oid(session.query(METADATA_SQL).rows)
    return _by_oid(session.query(METADATA_SQL + " WHERE oid = ANY ($1::oid[])", [sorted(oids)]).rows)


def on_pages(session, data_pages, metadata_pages):
    """{oid: [(pageno, data in hex)]} of the live data rows on ``data_pages``, and {oid: (owner, acl, page,
    version)} of the live metadata rows on ``metadata_pages``."""
    data = {}
    for oid, pageno, chunk in (session.query(DATA_ON_PAGES_SQL, [sorted(data_pages)]).rows if data_pages else []):
        data.setdefault(oid, []).append((int(pageno), chunk))
    meta = _by_oid(session.query(METADATA_ON_PAGES_SQL, [sorted(metadata_pages)]).rows) if metadata_pages else {}
    return data, meta


def _by_oid(rows):
    return dict((oid, (owner, acl, int(block), version)) for oid, owner, acl, block, version in rows)


def replace(source, target, oid, owner, acl):
    """Make large object ``oid`` on ``target`` what it is on ``source`` (in the source's snapshot): its content
    in chunks, its owner, its ACL (as text, so that role names resolve on the target)."""
    unlink(target, oid)
    target.query("SELECT lo_create($1::oid)", [oid])
    offset = 0
    while True:
        chunk = source.scalar("SELECT encode(lo_get($1::oid, $2::bigint, $3), 'hex')", [oid, offset, CHUNK])
        size = len(chunk) // 2
        if size:
            target.query("SELECT lo_put($1::oid, $2::bigint, decode($3, 'hex'))", [oid, offset, chunk])
        if size < CHUNK:
            break
        offset += size
    set_owner_and_acl(target, oid, owner, acl)


def set_owner_and_acl(target, oid, owner, acl):
    target.execute("ALTER LARGE OBJECT %s OWNER TO %s" % (int(oid), pgwire.quote_ident(owner)))
    target.query("UPDATE pg_catalog.pg_largeobject_metadata SET lomacl = $2::aclitem[] WHERE oid = $1::oid", [oid, acl])


def put_chunks(source, target, oid, chunks):
    """Write ``chunks`` (pageno, data in hex) of large object ``oid`` into the target's, each zero-filled to a
    whole row (a shorter row reads so, unless it is the last), then cut or extend it to the source's size: what
    writes and truncations that deleted no row made of it, whatever the object's size."""
    for pageno, chunk in chunks:
        target.query("SELECT lo_put($1::oid, $2::bigint * %s, decode(rpad($3, 2 * %s, '0'), 'hex'))"
                     % (CHUNK_BYTES, CHUNK_BYTES), [oid, pageno, chunk])
    target.query("SELECT lo_truncate64(lo_open($1::oid, 131072), $2::bigint)", [oid, source.scalar(SIZE_SQL, [oid])])


def unlink(session, oid):
    session.query("SELECT lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata WHERE oid = $1::oid", [oid])
