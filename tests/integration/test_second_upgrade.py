"""A host upgraded twice, 16 -> 17 -> 18, driven by the playbooks like test_upgrade_flows.py, writers running
through both upgrades, each upgrade with nothing but its two versions, archive and password:

  finalize between   16 -> 17, finalize, 17 -> 18: the second upgrade sets the first one's records aside
                     (state directory history/), creates its own instance, copies, cuts over; a rollback then goes
                     back one step, to 17, with every write;
  without finalize   16 -> 17, then 17 -> 18 at once: 17 (serving) is the old server of the second upgrade, and
                     is only reconfigured for another port once 18 serves.

Either way every acknowledged write is on the last server, and the Record of Upgrades in the database holds
sets 001 (16 -> 17) and 002 (17 -> 18). A run with the first upgrade's versions while the second is unfinished
is refused before anything changes.

The second flow also has a pg_receivewal streaming from 16 on a physical slot: preflight names it (a warning, not a
refusal), the cutover makes its slot on 17, where pg_receivewal started again into a new directory receives a
segment; and again from 17 to 18.  16 archives with a cp: 17 inherits it, and the cutover verifies it archives;
18 is given one into a directory it cannot write: the play fails after the cutover with cp's error, 18 serving,
and the fix as written (the archive corrected, a segment switched and archived, the play run again) finishes.
"""
import os
import re

import pytest

from test_upgrade_flows import Flow, dist, sha256, wait_for

PORTS = list(range(int(os.environ.get("SECOND_PORT_BASE", "25091")), 25095))
BIN = "/opt/fleetdb/postgresql/%s/bin"
DATA = "/var/lib/fleetdb/postgresql/%s/main"
RECORD_SQL = ("SELECT string_agg(number || ' ' || split_part(source_version, '.', 1) || ' ' "
              "|| split_part(target_version, '.', 1), ', ' ORDER BY number) "
              "FROM (SELECT * FROM fleetdb_upgrade_record.ttrep_schema_version_001_upgrade UNION ALL "
              "SELECT * FROM fleetdb_upgrade_record.ttrep_schema_version_002_upgrade) r")


class ChainFlow(Flow):
    def upgrade_to(self, old, new, playbook="upgrade.yml", *extra, failing=False):
        """Run ``playbook`` with the versions and archive of the upgrade from ``old`` to ``new``; its output (with
        ``failing``: its rc and output)."""
        archive = dist(new)
        with open(self.inventory) as handle:
            lines = [line for line in handle.read().splitlines() if not line.startswith((
                "online_upgrade_old_version=", "online_upgrade_new_version=", "online_upgrade_archive_src=",
                "online_upgrade_archive_checksum="))]
        lines += ["online_upgrade_old_version=%s" % old, "online_upgrade_new_version=%s" % new,
                  "online_upgrade_archive_src=%s" % archive, "online_upgrade_archive_checksum=sha256:%s" % sha256(archive)]
        with open(self.inventory, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        self.client = BIN % new   # a psql that is on the host from now on
        return self.playbook(playbook, *extra) if failing else self.ok(playbook, *extra)

    def serving(self):
        return self.psql("SHOW server_version", bin_dir=self.client).split(".")[0]

    def record(self, major):
        return self.psql(RECORD_SQL, bin_dir=BIN % major)


@pytest.fixture
def chain(tmp_path):
    made = ChainFlow(tmp_path, PORTS.pop(0))
    made.prepare_16()
    yield made
    made.close()


def test_a_second_upgrade_after_finalize_then_a_rollback_goes_back_one_step(chain):
    chain.upgrade_to(16, 17)
    assert chain.serving() == "17"
    chain.upgrade_to(16, 17, "finalize.yml")
    assert chain.host.run("test -e %s" % (DATA % "16")).returncode != 0
    chain.upgrade_to(17, 18)
    assert chain.serving() == "18"
    assert chain.record("18") == "1 16 17, 2 17 18"
    assert chain.sh("ls /var/lib/fleetdb/online_upgrade/history").strip().startswith("16-to-17-")
    # The first upgrade's versions while the second is done: another upgrade, which 18 is not the old one of.
    rc, out = chain.playbook("rollback.yml", "-e", "online_upgrade_old_version=16", "-e",
                             "online_upgrade_new_version=17")
    assert rc != 0 and "This host records the upgrade from 17 to 18, not 16 to 17" in out, out[-3000:]
    assert chain.serving() == "18"
    chain.upgrade_to(17, 18, "rollback.yml")
    assert chain.serving() == "17"
    chain.stop_and_verify("17")


def start_receivewal(chain, major):
    """pg_receivewal of ``major`` streaming from the server on 5432 on slot wal_archive into a new directory, until
    that server goes away (-n)."""
    directory = "/var/lib/fleetdb/receivewal-%s" % major
    chain.sh("install -d -o postgres -m 700 %s && (setsid runuser -u postgres -- %s/pg_receivewal -h "
             "/var/run/postgresql -p 5432 -S wal_archive -D %s -n > /tmp/receivewal-%s.log 2>&1 &)"
             % (directory, BIN % major, directory, major))
    wait_for("pg_receivewal %s streaming" % major, lambda: chain.psql(
        "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg_receivewal'", bin_dir=BIN % major) == "1",
        timeout=30)
    return directory


def receiver_slot(chain, major):
    return chain.psql("SELECT slot_type || ' ' || (restart_lsn IS NOT NULL) FROM pg_replication_slots "
                      "WHERE slot_name = 'wal_archive'", bin_dir=BIN % major)


def test_a_second_upgrade_without_finalize_between(chain):
    # 16 archives with a cp, which 17 inherits and 18 is given into a directory postgres cannot write
    chain.sh("install -d -o postgres /var/lib/fleetdb/archive && install -d -o root -m 755 /var/lib/fleetdb/archive-ro")
    chain.restart16("SET archive_mode = on", "SET archive_command = 'cp %p /var/lib/fleetdb/archive/%f'")
    chain.sh("echo 'local replication postgres peer' >> %s/pg_hba.conf" % (DATA % "16"))
    chain.psql("SELECT pg_reload_conf(); SELECT pg_create_physical_replication_slot('wal_archive', true)",
               bin_dir=BIN % "16", dbname="postgres")
    start_receivewal(chain, "16")
    out = " ".join(chain.upgrade_to(16, 17).split())
    # the custom archive_command verified on 17: the segment switched after the cutover archived, nothing failed
    archived = re.search(r"The new server archived WAL segment (\w+) in [0-9.]+ s \(pg_stat_archiver: (\d+) archived, "
                         r"0 failed\)", out)
    assert archived and int(archived.group(2)) >= 1, out[-6000:]
    chain.sh("test -f /var/lib/fleetdb/archive/%s" % archived.group(1))
    assert "[WARNING]: wal_receivers: a WAL receiver streams from the old server, pg_receivewal (from local, slot " \
        "wal_archive)" in out, out[-6000:]
    assert "pg_receivewal -h <this server> -p 5432 -S wal_archive -D <a new directory>" in out, out[-6000:]
    # preflight's warning, then the cutover's report
    assert out.count("pg_receivewal (from local, slot wal_archive): pg_receivewal loses the old server") == 2, out[-6000:]
    assert receiver_slot(chain, "17") == "physical true"
    # the fix as the report gives it: pg_receivewal started again against the new server into a new directory
    directory = start_receivewal(chain, "17")
    chain.psql("SELECT pg_switch_wal()", bin_dir=BIN % "17")
    wait_for("a segment of 17 received", lambda: chain.host.run(
        "ls %s | grep -E '^00000001[0-9A-F]{16}$'" % directory).returncode == 0, timeout=60)
    # 18 cannot archive: the play fails after the cutover with cp's error and the fix, 18 serving and taking writes
    rc, out = chain.upgrade_to(17, 18, "upgrade.yml", "-e", '{"online_upgrade_new_settings": {"archive_command": '
                               '"cp %p /var/lib/fleetdb/archive-ro/%f"}}', failing=True)
    assert rc != 0, out[-6000:]
    assert "the new server did not archive WAL segment" in out and "Permission denied" in out, out[-6000:]
    assert "then run the play again" in out, out[-6000:]
    assert chain.serving() == "18"
    before = chain.acknowledged()
    wait_for("writes acknowledged by 18", lambda: chain.acknowledged() > before + 50, timeout=60)
    # the fix as written: correct the archive, switch and see it archived, run the play again
    chain.sh("chown postgres /var/lib/fleetdb/archive-ro")
    segment = chain.psql("SELECT pg_walfile_name(pg_switch_wal())", bin_dir=BIN % "18")
    wait_for("18 archiving %s" % segment, lambda: chain.psql(
        "SELECT last_archived_wal >= '%s' FROM pg_stat_archiver" % segment, bin_dir=BIN % "18") == "t", timeout=60)
    chain.upgrade_to(17, 18, "upgrade.yml", "-e", '{"online_upgrade_new_settings": {"archive_command": '
                     '"cp %p /var/lib/fleetdb/archive-ro/%f"}}')
    assert chain.serving() == "18"
    assert receiver_slot(chain, "18") == "physical true"
    assert chain.record("18") == "1 16 17, 2 17 18"
    # 17 is stopped and configured for another port; 16 stays as the first upgrade left it
    for major in ("16", "17"):
        assert chain.host.run("test -e %s/postmaster.pid" % (DATA % major)).returncode != 0, major
    assert chain.sh("grep -h '^port' %s/fleetdb.conf" % (DATA % "17")).split("=")[1].strip(" '\n") == "5433"
    chain.stop_and_verify("18")
