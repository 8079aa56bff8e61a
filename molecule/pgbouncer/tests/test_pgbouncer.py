"""After the upgrade through PgBouncer: no write lost, no client error, pgbench never aborted, PgBouncer resumed."""
import json
import os
import subprocess
import time

PROOF = os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."), "tools", "fleetdb_proof.py")
LOAD_DIR = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp"), "load")
PSQL18 = "runuser -u postgres -- /opt/fleetdb/postgresql/18/bin/psql -h /var/run/postgresql -p 5432 -XAtq -d app -c "
ADMIN = ("PGPASSWORD=pgbouncer-admin-molecule-pw /opt/fleetdb/postgresql/16/bin/psql -h 127.0.0.1 -p 6432 "
         "-U fleetdb_admin -XAt pgbouncer -c ")


def proof(*args):
    env = dict(os.environ, PGPASSWORD="app-molecule-pw")
    return subprocess.run(["python3", PROOF, "--port", "25300"] + list(args), env=env, capture_output=True,
                          text=True, check=False)


def test_no_write_was_lost_and_no_client_saw_an_error():
    stopped = proof("stop", "--log-dir", LOAD_DIR)
    assert stopped.returncode == 0, stopped.stderr
    verified = proof("verify", "--log-dir", LOAD_DIR, "--json")
    assert verified.stdout, verified.stderr
    report = json.loads(verified.stdout)
    print("proof:", verified.stdout)
    assert report["acknowledged"] > 1000, report
    assert report["ok"] and report["lost"] == 0 and report["server_version"].startswith("18"), report
    assert report["failed_attempts"] == 0, report


def test_pgbench_ran_through_the_cutover_without_an_aborted_client(host):
    marked = host.run(PSQL18 + "'INSERT INTO public.bench_done VALUES (1) ON CONFLICT DO NOTHING'")
    assert marked.rc == 0, marked.stderr   # pgbench's clients run out their transactions at full speed
    deadline = time.monotonic() + 300
    while not host.file("/srv/pgbench.end").exists:
        assert time.monotonic() < deadline, "pgbench did not end"
        time.sleep(0.5)
    output = host.file("/srv/pgbench.out").content_string
    print(output)
    assert host.file("/srv/pgbench.rc").content_string.strip() == "0", output
    assert "aborted" not in output and "number of failed transactions: 0" in output, output
    started = float(host.file("/srv/pgbench.start").content_string)
    ended = float(host.file("/srv/pgbench.end").content_string)
    cutover = float(host.run(PSQL18 + "'SELECT extract(epoch FROM pg_postmaster_start_time())'").stdout)
    assert started < cutover < ended, "pgbench (%.0f..%.0f) did not span the new server's start (%.0f): raise its -t" % (
        started, ended, cutover)


def test_pgbouncer_was_resumed_and_leads_to_18(host):
    databases = host.run(ADMIN + "'SHOW DATABASES'").stdout.splitlines()
    app = [line.split("|") for line in databases if line.startswith("app|")][0]
    assert app[-2] == "0", databases  # paused
    version = host.run("PGPASSWORD=app-molecule-pw /opt/fleetdb/postgresql/16/bin/psql -h 127.0.0.1 -p 6432 -U app "
                       "-XAtq -d app -c 'SHOW server_version'")
    assert version.stdout.startswith("18"), version.stderr


def test_the_cutover_paused_and_resumed(host):
    state = json.loads(host.file("/var/lib/fleetdb/online_upgrade/switchover.json").content_string)
    assert state["phase"] == "done", state
    assert "pause" in state["phases"] and "resume" in state["phases"], state
    assert not state.get("pooler_paused"), state
