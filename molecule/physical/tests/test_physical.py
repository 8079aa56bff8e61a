"""After the physical copy (killed during the base backup and during pg_upgrade, the third run finished): every
write 16 acknowledged is on 18 exactly once with its sequence continued, the copy left nothing behind, the
extension pg_upgrade kept at 16's version was updated to 18's, and the rollback brings 16 back with every write
18 took. The tests run in this order, on one host: each takes testinfra's host fixture, or pytest would move the
ones without it after the rollback."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "debian", "tests"))
import systemd_host as sh  # noqa: E402  pylint: disable=wrong-import-position

PORT = 15441   # the published 5432, where the application connects
LOAD_DIR = os.path.join(sh.EPHEMERAL, "load")
ROLLBACK_LOAD_DIR = LOAD_DIR + "-rollback"
NEW_DATA = "/var/lib/fleetdb/postgresql/18/main"
OLD_DATA = "/var/lib/fleetdb/postgresql/16/main"
STATE_DIR = "/var/lib/fleetdb/online_upgrade"


def psql(host, sql, version="18"):
    out = host.run("runuser -u postgres -- /opt/fleetdb/postgresql/%s/bin/psql -h /var/run/postgresql -p 5432 "
                   "-XAtq -d app -c \"%s\"" % (version, sql))
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def state(host, name):
    return json.loads(host.run("cat %s/%s" % (STATE_DIR, name)).stdout or "{}")


def test_each_kill_landed_in_its_step_and_the_copy_started_over(host):  # pylint: disable=unused-argument
    with open(os.path.join(sh.EPHEMERAL, "kills.jsonl")) as record:
        kills = [json.loads(line) for line in record]
    print("kills:", kills)
    assert [k["process"] for k in kills] == ["pg_basebackup", "pg_upgrade"], kills
    during_backup, during_upgrade = kills
    assert during_backup["step"] == "backup" and during_backup["still_running"], during_backup
    # Only the copy's WAL is held, once pg_basebackup made its slot; no logical slot exists yet.
    assert during_backup["slots"] in ("", "fleetdb_physical_copy"), during_backup
    assert during_upgrade["step"] == "upgrade", during_upgrade
    # The second run met the first one's base backup still streaming: its preflight knew it for the copy's.
    with open(os.path.join(sh.EPHEMERAL, "kills.pg_upgrade.log")) as second_run:
        said = " ".join(second_run.read().split())   # a warning may be wrapped to the terminal's width
    assert "the physical copy of an interrupted run still streams from the old server" in said, said[-3000:]


def test_18_holds_the_copy_with_a_record_of_upgrades_and_nothing_left_behind(host):
    assert psql(host, "SHOW server_version").startswith("18")
    assert psql(host, "SELECT count(*) FROM app.events") == "100000"
    copy = state(host, "physical_copy.json")
    assert copy["phase"] == "done" and copy["pg_upgrade_mode"] == "swap", copy  # 18's pg_upgrade --swap
    assert int(psql(host, "SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                          "'fleetdb_upgrade_record'")) >= 1
    assert host.run("ls -d %s.copy %s.staged" % (NEW_DATA, NEW_DATA)).rc != 0, "the copy was left behind"
    assert host.run("pgrep -x pg_upgrade || pgrep -x pg_basebackup").rc != 0, "a killed run's process survived"
    assert psql(host, "SELECT string_agg(slot_name, ',') FROM pg_replication_slots") == "fleetdb_rollback"
    assert host.run("ls -A %s/pg_replslot" % OLD_DATA).stdout.strip() == "", "a slot would hold WAL on 16"
    assert state(host, "switchover.json")["phase"] == "done"


def test_the_copy_updated_the_extension_that_pg_upgrade_kept_at_16s_version(host):
    assert psql(host, "SELECT e.extversion || ' ' || a.default_version FROM pg_extension e JOIN "
                      "pg_available_extensions a ON a.name = e.extname WHERE e.extname = 'pg_buffercache'") == "1.6 1.6"


def test_large_objects_changed_after_the_base_backup_are_on_18(host):
    """The writer of large objects (tools/fleetdb_lo_writer.sql) changed them until 18 served, after the copy's
    point too: each of its objects is on 18 as its last recorded change left it, every acknowledged change is
    recorded, and none it unlinked exists."""
    assert host.run("for i in $(seq 100); do pgrep -f 'fleetdb_lo_writer[.]sh' || exit 0; sleep 0.2; done; exit 1").rc == 0
    start_lsn = state(host, "physical_copy.json")["start_lsn"]
    after = int(psql(host, "SELECT count(*) FROM lo_writer.ops WHERE lsn > '%s'" % start_lsn))
    assert after >= 10, (start_lsn, after)
    recorded = {}
    for line in psql(host, "SELECT loid || ' ' || coalesce(md5, '-') || ' ' || coalesce(owner, '-') || ' ' || "
                           "coalesce(acl, '-') FROM lo_writer.ops ORDER BY i").splitlines():
        oid, rest = line.split(" ", 1)
        recorded[oid] = rest
    on18 = dict(line.split(" ", 1) for line in psql(
        host, "SELECT oid || ' ' || md5(lo_get(oid)) || ' ' || pg_get_userbyid(lomowner) || ' ' || "
              "coalesce(lomacl::text, '-') FROM pg_largeobject_metadata WHERE oid BETWEEN 900000 AND 900015").splitlines())
    assert len(recorded) == 16 and 0 < len(on18) <= 16, (recorded, on18)
    for oid, last in recorded.items():
        assert on18.get(oid, "- - -") == last, oid
    acknowledged = set(host.run("cat /root/large-objects.ack").stdout.split())
    assert len(acknowledged) > 100 and acknowledged <= set(psql(host, "SELECT i FROM lo_writer.ops").split())


def test_no_acknowledged_write_was_lost_and_sequences_continued(host):  # pylint: disable=unused-argument
    report = sh.stop_and_verify(PORT, LOAD_DIR)[LOAD_DIR]
    assert report["acknowledged"] > 1000, report
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["out_of_order_ids"] == 0, report
    assert report["ok"] and report["server_version"].startswith("18"), report


def test_rollback_brings_16_back_with_every_write_18_took(host):
    sh.rollback_under_load(host, PORT, ROLLBACK_LOAD_DIR, LOAD_DIR, "16")
    assert psql(host, "SHOW server_version", version="16").startswith("16")
