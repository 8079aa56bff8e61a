"""After the upgrade: 18 serves the production port, 16 is stopped and moved, no write was lost."""
import json
import os
import subprocess

PROOF = os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."), "tools", "fleetdb_proof.py")
LOAD_DIR = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp"), "load")
PSQL18 = "runuser -u postgres -- /opt/fleetdb/postgresql/18/bin/psql -h /var/run/postgresql -p 5432 -XAtq -d app -c "


def proof(*args):
    env = dict(os.environ, PGPASSWORD="app-molecule-pw")
    return subprocess.run(["python3", PROOF, "--port", "15432"] + list(args), env=env, capture_output=True,
                          text=True, check=False)


def test_no_acknowledged_write_was_lost_and_sequences_continued():
    stopped = proof("stop", "--log-dir", LOAD_DIR)
    assert stopped.returncode == 0, stopped.stderr
    verified = proof("verify", "--log-dir", LOAD_DIR, "--json")
    assert verified.stdout, verified.stderr
    report = json.loads(verified.stdout)
    print("proof:", verified.stdout)
    assert report["acknowledged"] > 1000, report
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["out_of_order_ids"] == 0, report
    assert report["ok"] and report["server_version"].startswith("18"), report


def test_the_new_release_serves_the_production_port(host):
    assert host.run(PSQL18 + "'SHOW server_version'").stdout.startswith("18")
    assert host.run(PSQL18 + "'SELECT count(*) FROM app.events'").stdout.strip() == "1000000"


def test_the_old_server_is_stopped_and_configured_for_another_port(host):
    assert not host.file("/var/lib/fleetdb/postgresql/16/main/postmaster.pid").exists
    port = host.run("runuser -u postgres -- /opt/fleetdb/postgresql/16/bin/postgres "
                    "-D /var/lib/fleetdb/postgresql/16/main -C port")
    assert port.stdout.strip() == "5433", port.stderr


def test_the_record_of_upgrades_holds_this_upgrade(host):
    sets = host.run(PSQL18 + "\"SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                    "'fleetdb_upgrade_record' AND table_name LIKE 'ttrep_schema_version_001%'\"")
    assert int(sets.stdout.strip() or 0) >= 4, sets.stderr


def test_no_upgrade_subscription_is_left(host):
    subs = host.run(PSQL18 + "'SELECT count(*) FROM pg_subscription'")
    assert subs.stdout.strip() == "0", subs.stderr


def test_the_copy_was_sized_to_the_host(host):
    """Half the cores for table syncs (2 to 8), and worker room for them on 18 (docs/procedure.md)."""
    cores = int(host.run("nproc").stdout)
    syncs = host.run(PSQL18 + "'SHOW max_sync_workers_per_subscription'").stdout.strip()
    assert int(syncs) == max(2, min(8, cores // 2)), syncs
    workers = int(host.run(PSQL18 + "'SHOW max_logical_replication_workers'").stdout)
    assert int(host.run(PSQL18 + "'SHOW max_worker_processes'").stdout) > workers >= 1 + int(syncs)
