"""After the upgrade over SSH: each host serves 18 on 5432, its 16 is stopped and moved, its writers
lost nothing. testinfra reaches the hosts the way the playbook did: paramiko, the key, sudo."""
import json
import os
import subprocess

import pytest

PROOF = os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."), "tools", "fleetdb_proof.py")
EPHEMERAL = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp")
PORTS = {"fleetdb-ssh-1": 15601, "fleetdb-ssh-2": 15602}
PSQL18 = "runuser -u postgres -- /opt/fleetdb/postgresql/18/bin/psql -h /var/run/postgresql -p 5432 -XAtq -d app -c "


def proof(name, *args):
    env = dict(os.environ, PGPASSWORD="app-molecule-pw")
    return subprocess.run(["python3", PROOF, "--port", str(PORTS[name])] + list(args), env=env,
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("name", sorted(PORTS))
def test_no_acknowledged_write_was_lost(name):
    load_dir = os.path.join(EPHEMERAL, "load-" + name)
    stopped = proof(name, "stop", "--log-dir", load_dir)
    assert stopped.returncode == 0, stopped.stderr
    verified = proof(name, "verify", "--log-dir", load_dir, "--json")
    assert verified.stdout.startswith("{"), (verified.returncode, verified.stdout, verified.stderr)
    report = json.loads(verified.stdout)
    print(name, "proof:", verified.stdout)
    assert report["acknowledged"] > 1000, report
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["out_of_order_ids"] == 0, report
    assert report["ok"] and report["server_version"].startswith("18"), report


def test_the_host_is_reached_over_ssh_as_ansible_with_sudo(host):
    # testinfra's ansible backend hands the commands to its own paramiko backend, built from the
    # same inventory (host, port, user, key, become) as the playbook's paramiko connection.
    direct = host.backend.ansible_runner.get_host(host.backend.host)
    assert direct is not None and direct.backend.NAME == "paramiko", direct
    who = host.run("id -un; echo $SUDO_USER")
    assert who.stdout.split() == ["root", "ansible"], who.stdout


def test_the_new_release_serves_the_production_port(host):
    assert host.run(PSQL18 + "'SHOW server_version'").stdout.startswith("18")
    assert host.run(PSQL18 + "'SELECT count(*) FROM app.events'").stdout.strip() == "100000"
    assert host.run(PSQL18 + "'SELECT count(*) FROM pg_subscription'").stdout.strip() == "0"


def test_the_old_server_is_stopped_and_configured_for_another_port(host):
    assert not host.file("/var/lib/fleetdb/postgresql/16/main/postmaster.pid").exists
    port = host.run("runuser -u postgres -- /opt/fleetdb/postgresql/16/bin/postgres "
                    "-D /var/lib/fleetdb/postgresql/16/main -C port")
    assert port.stdout.strip() == "5433", port.stderr
