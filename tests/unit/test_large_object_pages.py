"""The pages of pg_largeobject and pg_largeobject_metadata a stretch of WAL changed, as the large objects' rounds
read them (upgrade/large_object_sync.py).

pg_waldump16_large_objects.txt is pg_waldump 16's own output, database 5, pg_largeobject at filenode 16385 (a
VACUUM FULL moved it), pg_largeobject_metadata at 2995: lo_from_bytea(7001) of 5,000 bytes (three data pages on
page 7), lo_put into its last page, ALTER LARGE OBJECT 7001 OWNER, lo_truncate(7001) to 0, lo_create(7002) and
lo_unlink(7002), then VACUUM pg_largeobject (pages 0 to 7 pruned, their visibility map bits set)."""
import os

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import waldump

WAL = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pg_waldump16_large_objects.txt")).read()
DATA, METADATA = "1663/5/16385", "1663/5/2995"


def touched(records, relation):
    return sorted(set(page for record in records for rel, page in waldump.pages(record) if rel == relation))


def test_each_change_names_its_page_and_the_visibility_map_fork_is_left_out():
    records = waldump.parse(WAL)
    changes = [r for r in records if r["xid"] and any(rel in (DATA, METADATA) for rel, _page in waldump.pages(r))]
    assert [r["desc"].split()[0] for r in changes] == [
        "INSERT", "INSERT", "INSERT", "INSERT", "HOT_UPDATE", "HOT_UPDATE", "HOT_UPDATE", "DELETE", "DELETE", "INSERT",
        "DELETE"]
    assert [waldump.pages(r) for r in changes[:2]] == [[(METADATA, 0)], [(DATA, 7)]]   # FPW after the page number
    assert touched(records, METADATA) == [0]   # the create, owner change, create and unlink of 7002
    assert touched(records, DATA) == list(range(8))   # VACUUM's prune and the heap page of each VISIBLE record
    visible = [r for r in records if r["desc"].startswith("VISIBLE")][0]
    assert "fork vm blk 0" in visible["desc"] and waldump.pages(visible) == [(DATA, 0)]


def test_records_of_other_relations_and_without_pages_name_none():
    records = waldump.parse(WAL)
    assert all(waldump.pages(r) == [] for r in records if r["desc"].startswith(("NEW_CID", "COMMIT", "RUNNING_XACTS")))
    assert waldump.pages(dict(desc="UPDATE old_xmax: 9, old_off: 3, new_off: 1, blkref #0: rel 1663/5/2613 blk 12, "
                                   "blkref #1: rel 1663/5/2613 blk 4")) == [("1663/5/2613", 12), ("1663/5/2613", 4)]
