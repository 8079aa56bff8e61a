# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Large objects carried to the new server in rounds driven by the old server's WAL.

A full round: L0, the WAL insert position, is taken first (a physical slot keeps the WAL from there on); once
every transaction running then has ended, one snapshot per database lists every large object and each is copied.
Then incremental rounds, from the previous round's position to a new one: pg_waldump (the old release's) names
the pages of pg_largeobject and pg_largeobject_metadata that changed, and the large objects on them (live there
now, or on a metadata page before: an unlink) are carried as the round's snapshot of the old server has them:
unlinked, given their rows on those pages, or copied whole when created, re-owned or re-granted since (see
_carry).  What a round costs grows with the WAL written since the last one and the objects it names, not with the
number or size of the others.  The cutover runs the full round and incremental ones before its fence, and the last
one in the window, up to the drain (nothing writes after it).  A pg_largeobject rewritten meanwhile (VACUUM FULL: a new filenode) needs a full round: before the
fence it runs one, inside the window it fails, and the old server keeps serving.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import (
    large_objects as pg_large_objects, slots as pg_slots, waldump)


class LargeObjectSync:
    """The rounds for ``databases``; ``old(db)`` and ``new(db)`` give a superuser session to each server."""

    def __init__(self, module, old_spec, databases, old, new, timeout):
        self.module = module
        self.old_spec = old_spec
        self.databases = list(databases)
        self.old = old
        self.new = new
        self.timeout = timeout
        self.lsn = None          # where the next round starts reading the WAL
        self.relations = {}      # db: dict(data=, metadata=) as pg_waldump names them
        self.pages = {}          # db: {metadata page: the large objects a snapshot last found on it}
        self.versions = {}       # db: {large object: version of its metadata row}
        self.report = dict((db, dict(copied=0)) for db in self.databases)
        self.slot_dropped = False

    def full(self):
        """The slot, L0, then every large object of every database copied."""
        admin = self.old(self.databases[0])
        pg_slots.create_reserving_slot(admin, pg_slots.LARGE_OBJECTS_SLOT)
        self.lsn = pg_large_objects.settled_lsn(admin, self.timeout)
        for db in self.databases:
            self._full(db)

    def _full(self, db):
        old = self.old(db)
        self.relations[db] = pg_large_objects.relations(old)
        listed = self._in_transactions(db, self._copy_all)
        self.pages[db], self.versions[db] = {}, {}
        for oid, (_owner, _acl, page, version) in listed.items():
            self.pages[db].setdefault(page, set()).add(oid)
            self.versions[db][oid] = version
        self.report[db]["copied"] += len(listed)
        return len(listed)

    @staticmethod
    def _copy_all(old, new):
        listed = pg_large_objects.metadata(old)
        for count, oid in enumerate(set(pg_large_objects.metadata(new)) - set(listed)):
            _batch(new, count)
            pg_large_objects.unlink(new, oid)
        for count, (oid, (owner, acl, _page, _version)) in enumerate(listed.items()):
            _batch(new, count)
            pg_large_objects.replace(old, new, oid, owner, acl)
        return listed

    def _in_transactions(self, db, work):
        """``work(old, new)`` in one snapshot of the old server and one transaction of the new."""
        old, new = self.old(db), self.new(db)
        pg_large_objects.begin_snapshot(old)
        new.execute("BEGIN")
        try:
            done = work(old, new)
            new.execute("COMMIT")
        except Exception:
            if not new.closed:
                new.execute("ROLLBACK")
            raise
        finally:
            if not old.closed:
                pg_large_objects.end_transaction(old)
        return done

    def round(self, end_lsn=None, in_window=False):
        """One incremental round up to ``end_lsn`` (else the settled position now): dict(carried, wal=[from, to])."""
        admin = self.old(self.databases[0])
        end = end_lsn or pg_large_objects.settled_lsn(admin, self.timeout)
        start = self.lsn
        moved = admin.scalar("SELECT $1::pg_lsn > $2::pg_lsn", [end, start]) == "t"
        touched, deleted = self._touched_pages(start, end) if moved else ({}, set())
        carried = 0
        for db in self.databases:
            if pg_large_objects.relations(self.old(db)) != self.relations[db]:
                if in_window:
                    raise OperationError(
                        "pg_largeobject of database %s was rewritten (VACUUM FULL) since the last round of copying "
                        "its large objects" % db, "run the cutover again: it copies them all again before the fence "
                        "(the old server keeps serving)")
                carried += self._full(db)
                continue
            data = self.relations[db]["data"]
            carried += self._carry(db, touched.get(data, set()), touched.get(self.relations[db]["metadata"], set()),
                                   data in deleted)
        pg_slots.advance_slot(admin, pg_slots.LARGE_OBJECTS_SLOT, end)
        self.lsn = end
        return dict(carried=carried, wal=[start, end])

    def _touched_pages(self, start, end):
        """{relation: set of pages} of the WAL records from ``start`` to ``end`` on the large objects' relations,
        and the relations rows were deleted from (an unlink, a truncation)."""
        wanted = set(name for rels in self.relations.values() for name in rels.values())
        try:
            records = waldump.records(self.module, self.old_spec.bin_dir, self.old_spec.data_dir, self.old_spec.owner,
                                      start, end)
        except waldump.WalDumpError as exc:
            raise OperationError("the old server's WAL from %s to %s could not be read for the large objects' "
                                 "changes: %s" % (start, end, exc), "check that pg_wal holds it, then run again")
        touched, deleted = {}, set()
        for record in records:
            for relation, page in waldump.pages(record):
                if relation in wanted:
                    touched.setdefault(relation, set()).add(page)
                    if record["rmgr"] == "Heap" and record["desc"].startswith("DELETE"):
                        deleted.add(relation)
        return touched, deleted

    def _carry(self, db, data_pages, metadata_pages, rows_deleted):
        """Make the new server's large objects on the pages named what the old server's snapshot says they are;
        how many it changed.  The snapshot is taken after the round's end position, so it may already hold what
        later WAL does (a row moved, an object created, re-created or unlinked since): each object named is
        decided by the snapshot alone, never by what the previous rounds made of it on the new server.  Missing
        there: unlinked on the new server.  Present: copied whole when the new server lacks it, when its metadata
        row is another version than the one last copied (created, created again, re-owned, re-granted), or when
        data rows were deleted in the WAL read (a truncation deletes rows the pages cannot tell the object of);
        else given the rows of the data pages named, then its size."""
        if not data_pages and not metadata_pages:
            return 0
        pages, versions = self.pages[db], self.versions[db]

        def carry(old, new):
            chunks, live = pg_large_objects.on_pages(old, data_pages, metadata_pages)
            named = set(chunks) | set(live)
            for page in metadata_pages:   # an unlink leaves no row: the objects those pages held are named too
                named |= pages.pop(page, set())
            now = pg_large_objects.metadata(old, named)   # wherever each row is now, on a page named or not
            on_new = set(pg_large_objects.metadata(new, named))
            changed = 0
            for count, oid in enumerate(sorted(named)):
                _batch(new, count)
                if oid not in now:
                    versions.pop(oid, None)
                    if oid in on_new:
                        pg_large_objects.unlink(new, oid)
                        changed += 1
                    continue
                owner, acl, page, version = now[oid]
                if oid not in on_new or versions.get(oid) != version or (rows_deleted and oid in chunks):
                    pg_large_objects.replace(old, new, oid, owner, acl)
                    changed += 1
                elif oid in chunks:   # written or truncated: the rows of the pages named, then its size
                    pg_large_objects.put_chunks(old, new, oid, chunks[oid])
                    changed += 1
                pages.setdefault(page, set()).add(oid)
                versions[oid] = version
            return changed

        carried = self._in_transactions(db, carry)
        self.report[db]["copied"] += carried
        return carried

    def drop_slot(self, session):
        pg_slots.drop_unused_slot(session, pg_slots.LARGE_OBJECTS_SLOT)
        self.slot_dropped = True


def _batch(new, count, size=500):
    """Commit on the new server every ``size`` large objects: each one changed holds a lock until the commit
    (max_locks_per_transaction); a failure leaves some done, which the next full round does again."""
    if count and not count % size:
        new.execute("COMMIT")
        new.execute("BEGIN")
