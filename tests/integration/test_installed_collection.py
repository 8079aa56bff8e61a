"""The collection as a user runs it: built, installed with ansible-galaxy into a project of its own outside this
checkout (the ansible.cfg of README's Install section and nothing else, its own inventory, the password in an
ansible-vault file), and its playbooks run by name over OpenSSH as the user ``ansible`` with sudo: preflight, the
upgrade of two hosts in one wave with writers running, then a rollback on one and finalize on the other."""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import BIN, CACHE, ROOT, ansible_env, remove_host, start_host

PROOF = os.path.join(ROOT, "tools", "fleetdb_proof.py")
HOSTS = {"db1": (2201, 15601), "db2": (2202, 15602)}   # inventory name: (SSH port, PostgreSQL port) on 127.0.0.1
APP_PASSWORD = "app-installed-pw"
PG16_BIN = "/opt/fleetdb/postgresql/16/bin"
PG18_BIN = "/opt/fleetdb/postgresql/18/bin"
OLD_DATA = "/var/lib/fleetdb/postgresql/16/main"


def readme_block(language):
    """The first ``language`` code block of README's Install section."""
    with open(os.path.join(ROOT, "README.md")) as readme:
        install = readme.read().split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```%s\n(.*?)```" % language, install, re.S).group(1)


def tarball(version):
    return sorted(p for p in os.listdir(os.path.join(CACHE, "dist")) if re.match(r"postgresql-%s\..*\.tar\.gz$" % version, p))[-1]


def sha256(path):
    return subprocess.run(["sha256sum", path], capture_output=True, text=True, check=True).stdout.split()[0]


class Project:
    """The user's project directory and their shell: no ANSIBLE_* variable of this checkout, a HOME of their own."""

    def __init__(self, path):
        self.path = path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
        self.env.update(HOME=str(path / "home"), PATH=BIN + os.pathsep + os.environ["PATH"], NO_COLOR="1")
        (path / "home").mkdir()

    def run(self, *argv, timeout=1800):
        proc = subprocess.run(list(argv), cwd=str(self.path / "project"), env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        assert proc.returncode == 0, "%s: rc=%d\n%s\n%s" % (" ".join(argv), proc.returncode, proc.stdout[-6000:],
                                                            proc.stderr[-3000:])
        return proc.stdout

    def playbook(self, name, *args):
        return self.run("ansible-playbook", "fleetdb.online_upgrade." + name, "-i", "inventory.yml", "-e", "@vault.yml",
                        "--vault-password-file", "vault-password", *args)


def proof(name, *args):
    env = dict(os.environ, PGPASSWORD=APP_PASSWORD)
    return subprocess.run(["python3", PROOF, "--port", str(HOSTS[name][1])] + list(args), env=env,
                          capture_output=True, text=True, check=False)


def prepare_hosts(tmp, hosts):
    """PostgreSQL 16 with data and writers on each host (molecule/fleet/prepare.yml, through the container runtime)."""
    pg16 = os.path.join(CACHE, "dist", tarball(16))
    inventory = {"all": {"hosts": {name: {
        "ansible_connection": "community.docker.docker", "ansible_host": hosts[name].name,
        "fleetdb_client_port": HOSTS[name][1], "fleetdb_load_dir": str(tmp / ("load-" + name))} for name in HOSTS},
        "vars": {"pg16_tarball": pg16, "fleetdb_proof": PROOF, "fleetdb_app_password": APP_PASSWORD,
                 "fleetdb_rows": 100000, "fleetdb_writers": 2, "fleetdb_write_rate": 50}}}
    (tmp / "prepare.yml").write_text(json.dumps(inventory))
    env = dict(ansible_env(), ANSIBLE_STDOUT_CALLBACK="default")
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(tmp / "prepare.yml"),
                           os.path.join(ROOT, "molecule", "fleet", "prepare.yml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]


def write_project(tmp, project):
    """The user's project: README's ansible.cfg, a requirements.yml naming the built tarball, inventory, vault."""
    build = tmp / "build"
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(build)],
                          cwd=ROOT, env=project.env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    built = [str(build / name) for name in os.listdir(str(build))]
    home = project.path / "project"
    home.mkdir()
    (home / "ansible.cfg").write_text(readme_block("ini"))
    (home / "requirements.yml").write_text(yaml.safe_dump({"collections": [{"name": built[0], "type": "file"}]}))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "id_ed25519")], check=True)
    pg18 = os.path.join(CACHE, "dist", tarball(18))
    inventory = {"databases": {
        "hosts": {name: {"ansible_host": "127.0.0.1", "ansible_port": ports[0]} for name, ports in HOSTS.items()},
        "vars": {"ansible_connection": "ansible.builtin.ssh", "ansible_user": "ansible",
                 "ansible_ssh_private_key_file": str(tmp / "id_ed25519"),
                 # Throwaway hosts with fresh host keys: accepted, recorded nowhere.
                 "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                 "online_upgrade_old_version": "16", "online_upgrade_new_version": "18",
                 "online_upgrade_databases": ["app"], "online_upgrade_archive_src": pg18,
                 "online_upgrade_archive_checksum": "sha256:" + sha256(pg18), "online_upgrade_sync_timeout": 600}}}
    (home / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (home / "vault-password").write_text("vault-installed-pw\n")
    (home / "vault.yml").write_text("online_upgrade_replication_password: repl-installed-pw\n")
    project.run("ansible-vault", "encrypt", "--vault-password-file", "vault-password", "vault.yml")
    assert (home / "vault.yml").read_text().startswith("$ANSIBLE_VAULT;")
    project.run("ansible-galaxy", "collection", "install", "-r", "requirements.yml")
    assert (home / "collections" / "ansible_collections" / "fleetdb" / "online_upgrade" / "MANIFEST.json").exists()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("installed")
    hosts = {}
    try:
        for name, (ssh_port, pg_port) in HOSTS.items():
            published = ["-p", "127.0.0.1:%d:22" % ssh_port, "-p", "127.0.0.1:%d:5432" % pg_port]
            hosts[name] = start_host("ssh-" + name, published)
        project = Project(tmp)
        write_project(tmp, project)
        for host in hosts.values():
            host.write_file("/home/ansible/.ssh/authorized_keys", (tmp / "id_ed25519.pub").read_text())
            host.check("chown ansible: /home/ansible/.ssh/authorized_keys && chmod 0600 /home/ansible/.ssh/authorized_keys")
        prepare_hosts(tmp, hosts)
        yield project, hosts, tmp
    finally:
        for name in HOSTS:
            proof(name, "stop", "--log-dir", str(tmp / ("load-" + name)))
        for host in hosts.values():
            remove_host(host)
        shutil.rmtree(str(tmp), ignore_errors=True)


def test_preflight_then_the_upgrade_over_openssh_with_progress_and_no_lost_write(fleet):
    project, hosts, tmp = fleet
    checked = project.playbook("upgrade", "--tags", "preflight")
    assert re.search(r"^TASK \[fleetdb\.online_upgrade\.online_upgrade : Check versions, binaries", checked, re.M), checked
    for host in hosts.values():
        assert host.run("test -e /opt/fleetdb/postgresql/18").returncode != 0, "preflight installed 18"
    output = project.playbook("upgrade", "-e", "online_upgrade_serial=100%")
    for name in HOSTS:
        assert re.search(r"^fleetdb progress \[%s\]: " % name, output, re.M), output[-6000:]
    for name, host in hosts.items():
        sshd = subprocess.run(["docker", "logs", host.name], capture_output=True, text=True, check=False)
        assert "Accepted publickey for ansible" in sshd.stdout + sshd.stderr, name
        assert host.psql("SHOW server_version", bin_dir=PG18_BIN).startswith("18")
        assert host.psql("SELECT count(*) FROM app.events", dbname="app", bin_dir=PG18_BIN) == "100000"
        assert host.run("test -e %s/postmaster.pid" % OLD_DATA).returncode != 0, "16 still runs"
        assert host.check("runuser -u postgres -- %s/postgres -D %s -C port" % (PG16_BIN, OLD_DATA)).strip() == "5433"
        load_dir = str(tmp / ("load-" + name))
        stopped = proof(name, "stop", "--log-dir", load_dir)
        assert stopped.returncode == 0, stopped.stderr
        verified = proof(name, "verify", "--log-dir", load_dir, "--json")
        report = json.loads(verified.stdout)
        assert report["acknowledged"] > 1000, report
        assert report["lost"] == 0 and report["duplicated"] == 0 and report["out_of_order_ids"] == 0, report
        assert report["ok"] and report["server_version"].startswith("18"), report


def test_become_runs_the_modules_as_root_for_the_user_ansible(fleet):
    project = fleet[0]
    output = project.run("ansible", "databases", "-i", "inventory.yml", "-b", "-m", "ansible.builtin.command",
                         "-a", "sh -c 'id -un; echo $SUDO_USER'")
    for name in HOSTS:
        assert re.search(r"^%s \| CHANGED \| rc=0 >>\nroot\nansible$" % name, output, re.M), output


def test_rollback_on_one_host_and_finalize_on_the_other(fleet):
    project, hosts = fleet[:2]
    project.playbook("rollback", "--limit", "db1")
    assert hosts["db1"].psql("SHOW server_version", bin_dir=PG16_BIN).startswith("16")
    assert hosts["db1"].psql("SELECT count(*) FROM app.events", dbname="app", bin_dir=PG16_BIN) == "100000"
    project.playbook("finalize", "--limit", "db2")
    assert hosts["db2"].psql("SHOW server_version", bin_dir=PG18_BIN).startswith("18")
    assert hosts["db2"].run("test -e %s" % OLD_DATA).returncode != 0, "finalize left 16's data"
