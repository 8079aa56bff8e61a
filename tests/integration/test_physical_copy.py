"""The physical initial copy (online_upgrade_copy_method=physical), 16 -> 18 with four writers, end to end
through playbooks/upgrade.yml, on one host:

  1. the module is killed with SIGKILL after the base backup and the slots (failpoint "recover"), then again
     while pg_upgrade runs (pg_upgrade itself left running): each re-run starts the copy over from scratch,
     removing what the killed run left (processes, directories, slots);
  2. the third run finishes: 18 serves the production port; the switchover's row counts (both servers at one
     point of replication) found the copy exact; every acknowledged write is on 18 exactly once, sequences
     included; a Record of Upgrades set exists; no copy directory, physical slot or WAL-holding slot is left;
  3. rollback.yml brings 16 back with every write 18 took.
"""
import json
import os

from test_upgrade_flows import NEW_DATA, OLD_DATA, PG16, Flow, wait_for

PORT = int(os.environ.get("PHYSICAL_PORT", "25091"))
WORK = "/var/lib/fleetdb/online_upgrade"
PHYSICAL = ("-e", "online_upgrade_copy_method=physical")


def physical_state(flow):
    proc = flow.host.run("cat %s/physical_copy.json" % WORK)
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}


def kill_run(flow, run):
    """The controller and the module on the host, as a crash would (what the module started keeps running)."""
    flow.kill_playbook(run)
    flow.host.run("pkill -9 -f AnsiballZ_physical_copy")
    flow.wait_modules_done()


def test_physical_copy_resumes_after_kills_then_upgrades_and_rolls_back(tmp_path):
    flow = Flow(tmp_path, PORT)
    try:
        flow.prepare_16()
        # 1a. killed after the base backup and the slots, before the recovery
        flow.sh("mkdir -p %s && echo recover > %s/failpoint" % (WORK, WORK))
        run = flow.start_playbook("upgrade.yml", *PHYSICAL)
        wait_for("the failpoint", lambda: run.poll() is not None or physical_state(flow).get("phase") == "recover",
                 timeout=300)
        assert run.poll() is None, "the playbook ended before the failpoint"
        kill_run(flow, run)
        flow.sh("rm -f %s/failpoint" % WORK)
        assert flow.host.run("test -d %s.copy" % NEW_DATA).returncode == 0
        held = flow.psql("SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots",
                         bin_dir=PG16)
        assert held == "fleetdb_physical_copy,fleetdb_upgrade", held  # WAL for the copy, and replication's slot
        # 1b. killed while pg_upgrade runs
        run = flow.start_playbook("upgrade.yml", *PHYSICAL)
        wait_for("pg_upgrade", lambda: run.poll() is not None or flow.host.run("pgrep -x pg_upgrade").returncode == 0,
                 timeout=300, interval=0.05)
        assert run.poll() is None, "the playbook ended before pg_upgrade"
        kill_run(flow, run)
        assert physical_state(flow).get("phase") == "upgrade", physical_state(flow)
        # 2. the re-run starts over and finishes
        out = flow.ok("upgrade.yml", *PHYSICAL)
        assert "started_over_from" in out or physical_state(flow).get("phase") == "done", out[-3000:]
        assert flow.psql("SHOW server_version").startswith("18")
        assert physical_state(flow).get("phase") == "done"
        assert flow.host.run("ls -d %s.copy %s.staged" % (NEW_DATA, NEW_DATA)).returncode != 0, "copy left behind"
        assert flow.host.run("pgrep -x pg_upgrade").returncode != 0
        assert int(flow.psql("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                             "'fleetdb_upgrade_record'")) >= 1
        assert flow.psql("SELECT string_agg(slot_name, ',') FROM pg_replication_slots") == "fleetdb_rollback"
        assert flow.sh("ls -A %s/pg_replslot" % OLD_DATA).strip() == "", "a slot would hold WAL on 16"
        state = flow.state()
        assert state["phase"] == "done", state
        print("cutover:", json.dumps(state, sort_keys=True))
        try:
            flow.stop_and_verify("18")
        except AssertionError:
            print(out[-20000:])
            rows = flow.psql("SELECT writer_id, seq_no, id, written_at FROM proof.writes ORDER BY 1, 2")
            previous = {}
            for line in rows.splitlines():
                writer, seq, row_id, at = line.split("\t")
                if writer in previous and int(row_id) <= previous[writer][1]:
                    print("out of order:", previous[writer], (seq, row_id, at))
                previous[writer] = (seq, int(row_id), at)
            print(flow.sh("tail -50 %s/log/server.log; tail -50 %s/log/server.log" % (OLD_DATA, NEW_DATA)))
            raise
        # 3. back to 16 with every write 18 took
        flow.load_dir = str(tmp_path / "load-18")
        flow.start_writers()
        wait_for("writes on 18", lambda: flow.acknowledged() > 100, timeout=60)
        flow.ok("rollback.yml", *PHYSICAL)
        assert flow.psql("SHOW server_version", bin_dir=PG16).startswith("16")
        flow.stop_and_verify("16")
    finally:
        flow.close()
