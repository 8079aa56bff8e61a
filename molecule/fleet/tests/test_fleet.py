"""The fleet after its rolling upgrade: every fit host serves 18 on 5432 and lost no write; the unfit
host is refused by preflight, alone, with nothing changed on it, its 16 serving and its writers
unaffected. The whole-fleet runs of playbooks/upgrade.yml below are the fleet's second pass (after
the converge): they must change nothing on the upgraded hosts and fail only the unfit one."""
import json
import os
import re
import subprocess
import time

import pytest

ROOT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")
EPHEMERAL = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp")
INVENTORY = os.path.join(EPHEMERAL, "inventory")
PROOF = os.path.join(ROOT, "tools", "fleetdb_proof.py")
PORTS = {"fleetdb-fleet-1": 15501, "fleetdb-fleet-2": 15502, "fleetdb-fleet-3": 15503}
FIT = ["fleetdb-fleet-1", "fleetdb-fleet-3"]
UNFIT = "fleetdb-fleet-2"
UNFIT_TABLE = "app.audit_trail"
PSQL = "runuser -u postgres -- /opt/fleetdb/postgresql/{v}/bin/psql -h /var/run/postgresql -p 5432 -XAtq -d app -c "
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def playbook(*args):
    """playbooks/upgrade.yml on the Molecule inventory, as an operator runs it; returns (rc, output, recap)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.pop("ANSIBLE_CONFIG", None)   # the project's ansible.cfg, as from a checkout
    started = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", INVENTORY, "playbooks/upgrade.yml"] + list(args),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    recap = {m[0]: dict(ok=int(m[1]), changed=int(m[2]), unreachable=int(m[3]), failed=int(m[4]))
             for m in RECAP.findall(out)}
    print("ansible-playbook %s: rc %d in %.1f s, recap %s" % (
        " ".join(args), proc.returncode, time.monotonic() - started, recap))
    return proc.returncode, out, recap


def proof(host_name, *args):
    env = dict(os.environ, PGPASSWORD="app-molecule-pw")
    return subprocess.run(["python3", PROOF, "--port", str(PORTS[host_name])] + list(args), env=env,
                          capture_output=True, text=True, check=False)


def load_dir(host_name):
    return os.path.join(EPHEMERAL, "load-" + host_name)


def test_the_whole_fleet_in_one_wave_fails_the_unfit_host_alone():
    # One wave of 3 hosts, at most 50 % may fail: the unfit host fails (1/3), the play goes on.
    rc, out, recap = playbook("-e", "online_upgrade_hosts=all", "-e", "online_upgrade_serial=3",
                              "-e", "online_upgrade_max_fail_percentage=50", "-f", "3")
    assert rc == 2, out[-3000:]
    assert recap[UNFIT]["failed"] == 1 and recap[UNFIT]["changed"] == 0, recap
    for name in FIT:
        assert recap[name]["failed"] == 0 and recap[name]["changed"] == 0, (name, recap)
    # The preflight's message names the table and the choices, and says nothing changed.
    assert "the host is not ready for the upgrade (nothing was changed)" in out, out[-3000:]
    assert "tables without a primary key or replica identity: " + UNFIT_TABLE in out, out[-3000:]
    for choice in ("add a primary key", "online_upgrade_tables_without_key=replica_identity_full",
                   "online_upgrade_method=dump_restore"):
        assert choice in out, choice
    # It stopped at preflight: the first task after it never ran on the unfit host.
    fatal = out.index("fatal: [%s]" % UNFIT)
    failed_task = out[out.rindex("TASK [", 0, fatal):fatal].splitlines()[0]
    assert "Check versions, binaries, disk" in failed_task, failed_task


def test_serial_one_stops_the_rollout_at_the_first_failed_host():
    # With one host per wave, a failed host is a whole failed wave: Ansible ends the play there,
    # whatever max_fail_percentage says. --limit picks the hosts: the unfit one comes first.
    rc, out, recap = playbook("-e", "online_upgrade_serial=1", "-e", "online_upgrade_max_fail_percentage=50",
                              "--limit", "all:!fleetdb-fleet-1")
    assert rc == 2, out[-3000:]
    assert recap[UNFIT]["failed"] == 1, recap
    assert "fleetdb-fleet-3" not in recap and "fleetdb-fleet-1" not in recap, recap


@pytest.mark.parametrize("name", FIT)
def test_every_fit_host_serves_18_and_lost_no_write(name):
    stopped = proof(name, "stop", "--log-dir", load_dir(name))
    assert stopped.returncode == 0, stopped.stderr
    verified = proof(name, "verify", "--log-dir", load_dir(name), "--json")
    assert verified.stdout.startswith("{"), (verified.returncode, verified.stdout, verified.stderr)
    report = json.loads(verified.stdout)
    print(name, "proof:", verified.stdout)
    assert report["acknowledged"] > 1000, report
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["out_of_order_ids"] == 0, report
    assert report["ok"] and report["server_version"].startswith("18"), report


def test_the_unfit_host_writers_were_unaffected():
    stopped = proof(UNFIT, "stop", "--log-dir", load_dir(UNFIT))
    assert stopped.returncode == 0, stopped.stderr
    verified = proof(UNFIT, "verify", "--log-dir", load_dir(UNFIT), "--json")
    assert verified.stdout.startswith("{"), (verified.returncode, verified.stdout, verified.stderr)
    report = json.loads(verified.stdout)
    print(UNFIT, "proof:", verified.stdout)
    assert report["acknowledged"] > 1000, report
    assert report["ok"] and report["lost"] == 0 and report["failed_attempts"] == 0, report
    assert report["server_version"].startswith("16"), report
    assert report["longest_gap_s"] < 5, report


def test_each_host_is_where_it_should_be(host):
    name = host.backend.get_hostname()
    if name in FIT:
        assert host.run(PSQL.format(v=18) + "'SHOW server_version'").stdout.startswith("18")
        assert host.run(PSQL.format(v=18) + "'SELECT count(*) FROM app.events'").stdout.strip() == "100000"
        assert not host.file("/var/lib/fleetdb/postgresql/16/main/postmaster.pid").exists
        assert host.run(PSQL.format(v=18) + "'SELECT count(*) FROM pg_subscription'").stdout.strip() == "0"
        return
    # The unfit host: nothing of the upgrade was done, its 16 serves the production port.
    assert name == UNFIT
    assert host.run(PSQL.format(v=16) + "'SHOW server_version'").stdout.startswith("16")
    assert host.file("/var/lib/fleetdb/postgresql/16/main/postmaster.pid").exists
    for path in ("/opt/fleetdb/postgresql/18", "/var/lib/fleetdb/postgresql/18",
                 "/var/lib/fleetdb/online_upgrade"):
        assert not host.file(path).exists, path
    assert host.run("ls /var/cache/fleetdb").stdout.split() == ["postgresql-16.tar.gz"]
    assert host.run(PSQL.format(v=16) + "'SELECT count(*) FROM pg_publication'").stdout.strip() == "0"
    assert host.run(PSQL.format(v=16) + "'SELECT count(*) FROM pg_replication_slots'").stdout.strip() == "0"
    assert host.run(PSQL.format(v=16) + "\"SELECT count(*) FROM pg_roles WHERE rolname = "
                    "'fleetdb_replicator'\"").stdout.strip() == "0"
    listening = host.run("runuser -u postgres -- /opt/fleetdb/postgresql/16/bin/psql -h /var/run/postgresql "
                         "-p 5432 -XAtq -d app -c 'SHOW port'")
    assert listening.stdout.strip() == "5432", listening.stderr
