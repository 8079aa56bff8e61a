# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Large objects carried to the new server in rounds driven by the old server's WAL.

A full round: L0, the WAL insert position, is taken first (a physical slot keeps the WAL from there on); once
every transaction running then has ended, one snapshot per database lists every large object and each is copied.
Then incremental rounds, from the previous round's position to a new one: pg_waldump (the old release's) names
the pages of pg_largeobject and pg_largeobject_metadata that changed, and the large objects on them (live there
now, or on a metadata page before: an unlink) are carried: unlinked, given their owner and ACL, their rows on
those pages, or copied whole when created since (see _carry).  What a round costs grows with the WAL written
since the last one, not with the number or size of the large objects.  The cutover runs the full
round and incremental ones before its fence, and the last one in the window, up to the drain (nothing writes
after it).  A pg_largeobject rewritten meanwhile (VACUUM FULL: a new filenode) needs a full round: before the
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
        self.pages = {}          # db: {metadata page: set of the large objects on it}
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
        """Make the new server's large objects on the pages named what they are on the old; how many it changed.
        Those only written are given the rows of those pages; those created since (all written since), and any
        written when data rows were deleted (a truncation deletes rows the pages cannot tell the object of), are
        copied whole."""
        if not data_pages and not metadata_pages:
            return 0
        pages, versions = self.pages[db], self.versions[db]

        def carry(old, new):
            chunks, live = pg_large_objects.on_pages(old, data_pages, metadata_pages)
            gone = set()
            for page in metadata_pages:   # a row moved to another page: that one is named too (an UPDATE's two)
                gone |= pages.pop(page, set()) - set(live)
            changed = set(oid for oid, row in live.items() if versions.get(oid) != row[3])
            for oid, (_owner, _acl, page, version) in live.items():
                pages.setdefault(page, set()).add(oid)
                versions[oid] = version
            for oid in gone:
                versions.pop(oid, None)
            # Created since, or perhaps unlinked and created again (then every data row of it is on the pages
            # named): copied whole.  Only re-owned or re-granted: its owner and ACL.
            whole = set(oid for oid in changed if not pg_large_objects.has_rows_elsewhere(old, oid, data_pages))
            whole |= set(chunks) if rows_deleted else set(chunks) - set(pg_large_objects.existing(new, set(chunks)))
            metadata = dict((oid, row[:2]) for oid, row in live.items())
            metadata.update(pg_large_objects.existing(old, whole - set(live)))
            acted = sorted(gone | changed | set(chunks))
            for count, oid in enumerate(acted):
                _batch(new, count)
                if oid in gone:
                    pg_large_objects.unlink(new, oid)
                elif oid in whole:
                    pg_large_objects.replace(old, new, oid, *metadata[oid])
                else:
                    if oid in changed:
                        pg_large_objects.set_owner_and_acl(new, oid, *live[oid][:2])
                    if oid in chunks:   # written or truncated: the rows of the pages named, then its size
                        pg_large_objects.put_chunks(old, new, oid, chunks[oid])
            return len(acted)

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
