"""The proof's second witness: what the WAL after the drain says the transaction ids past it wrote.

The records (pg_waldump16.txt) are pg_waldump 16's own lines, from an ANALYZE of a table with extended
statistics (with wal_level = logical, NEW_CID and INVALIDATION records too), then an INSERT into that table, in database 5."""
import os

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import waldump
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.cutover_logic import (
    writes_after_the_drain)

WAL = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pg_waldump16.txt")).read()
RELATIONS = [dict(statistics=["1663/5/2619", "1663/5/2840", "1663/5/2841", "1663/5/2696", "1663/5/3429",
                              "1663/5/3430", "1663/5/3431", "1663/5/3433"],
                  in_place=["1663/5/1259"])]


def test_records_are_read_with_the_relations_they_touch():
    records = waldump.parse(WAL + "pg_waldump: error: error in WAL record at 0/14B2AB0: invalid record length\n")
    assert len(records) == 12
    assert records[2]["relations"] == ["1663/5/2619"]   # NEW_CID: "rel: "
    assert records[4] == dict(rmgr="Btree", xid=731, lsn="0/014B2720", relations=["1663/5/3433", "1663/5/3433"],
                              desc=records[4]["desc"])
    assert records[11]["rmgr"] == "XLOG" and records[11]["xid"] == 0


def test_an_analyze_past_the_drain_wrote_only_statistics():
    assert writes_after_the_drain(waldump.parse(WAL), 731, 732, RELATIONS) == []


def test_a_write_to_a_table_past_the_drain_is_named():
    found = writes_after_the_drain(waldump.parse(WAL), 731, 733, RELATIONS)
    assert found == ["xid 732 wrote Heap INSERT off: 94, flags: 0x00, blkref #0: rel 1663/5/16384 blk 1 at 0/014B2A08",
                     "xid 732 wrote Btree INSERT_LEAF off: 201, blkref #0: rel 1663/5/16389 blk 1 at 0/014B2A48"]


def test_statistics_of_another_database_or_an_in_place_update_elsewhere_are_writes():
    other_db = [dict(statistics=[r.replace("/5/", "/6/") for r in RELATIONS[0]["statistics"]],
                     in_place=["1663/6/1259"])]
    assert len(writes_after_the_drain(waldump.parse(WAL), 731, 732, other_db)) == 6
    inserted_into_pg_class = WAL.replace("desc: INPLACE off: 5", "desc: INSERT off: 5")
    assert writes_after_the_drain(waldump.parse(inserted_into_pg_class), 731, 732, RELATIONS) == [
        "xid 731 wrote Heap INSERT off: 5, blkref #0: rel 1663/5/1259 blk 0 at 0/014B27C0"]


def test_an_id_the_wal_does_not_show_ending_is_not_explained():
    assert writes_after_the_drain(waldump.parse(WAL), 731, 734, RELATIONS)[-1] == \
        "xid 733 does not end in the WAL read"
    assert writes_after_the_drain([], 731, 732, RELATIONS) == ["xid 731 does not end in the WAL read"]
    assert writes_after_the_drain([], 731, 731 + 5000, RELATIONS) == ["5000 transaction ids after the drain"]


def test_the_segment_holding_a_position_is_named_on_its_latest_timeline(tmp_path):
    """pg_waldump is given the file that holds the start: a preallocated segment (no header yet) or another
    timeline's file in pg_wal must not decide the segment size or the timeline it reads."""
    size = 16 * 1024 * 1024
    for name in ("000000010000000000000004", "000000020000000000000004", "000000020000000000000005",
                 "00000002.history", "000000010000000000000003.partial"):
        (tmp_path / name).write_bytes(b"\0" * (size if len(name) == 24 else 10))
    assert waldump.segment_file(str(tmp_path), "0/4E24D28") == "000000020000000000000004"
    assert waldump.segment_file(str(tmp_path), "0/5000000") == "000000020000000000000005"
    assert waldump.segment_file(str(tmp_path), "1/0") is None
    assert waldump.segment_file(str(tmp_path / "missing"), "0/4E24D28") is None


def test_a_range_into_later_segments_is_given_the_segment_that_holds_its_end(tmp_path):
    """Given one file, pg_waldump reads that segment only ("end WAL location ... is not inside file"): a running
    server's range that goes on past it names the segment of its last byte as the end."""
    wal = tmp_path / "pg_wal"
    wal.mkdir()
    for name in ("000000010000000000000004", "000000010000000000000005", "000000010000000000000006"):
        with open(str(wal / name), "wb") as segment:
            segment.truncate(16 * 1024 * 1024)
    argvs = []

    class Module:
        @staticmethod
        def run_command(argv, **_kwargs):
            argvs.append(argv)
            return 0, "", ""

    for end in ("0/4FFFFFF", "0/5000000", "0/5000001", "0/6000010", None):
        waldump.records(Module(), "/bin", str(tmp_path), None, "0/4E24D28", end)
    assert [argv[argv.index("0/4E24D28") + 1:] for argv in argvs] == [
        ["--end", "0/4FFFFFF", "000000010000000000000004"],
        ["--end", "0/5000000", "000000010000000000000004"],
        ["--end", "0/5000001", "000000010000000000000004", "000000010000000000000005"],
        ["--end", "0/6000010", "000000010000000000000004", "000000010000000000000006"],
        ["000000010000000000000004"]]
