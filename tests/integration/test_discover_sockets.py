"""discover and the socket directories against real PostgreSQL 16 servers set up by hand, as a DBA would.

One test host: 16 and 18 from their archives.  Two old servers, neither made by this collection:
  custom    port 5470, unix_socket_directories = '/srv/pgsock, /srv/pg sock2' (no socket where discovery
            used to look): found from its postmaster.pid; the new instance serves both directories
  tcp only  port 5480, unix_socket_directories = '' (TCP only): refused by discover and preflight with a fix
            that is then run exactly as written, after which discover finds it
"""
import hashlib
import os
import subprocess

import pytest

from conftest import ROOT, ansible_env

PREFIX = "/opt/fleetdb/postgresql"
CUSTOM = dict(data_dir="/var/lib/pgsql-custom/16", port=5470, dirs=["/srv/pgsock", "/srv/pg sock2"])
TCP_ONLY = dict(data_dir="/var/lib/pgsql-tcp/16", port=5480, password="tcp-only-pw-1")
NEW_SOCKET_DIR = "/srv/pgsock-new"   # the directory the fix for the TCP-only server proposes
NEW_18 = "/var/lib/fleetdb/postgresql/18/main"


def sh(host, cmd):
    proc = host.run(cmd)
    assert proc.returncode == 0, "%s: %s%s" % (cmd, proc.stdout, proc.stderr)
    return proc.stdout


def failed_with(result, *phrases):
    assert result.get("failed"), result
    for phrase in phrases:
        assert phrase in result["msg"], result["msg"]


def snapshot(host, *paths):
    return sh(host, "find %s -printf '%%p %%s %%T@\\n' 2>/dev/null | sort; true" % " ".join(paths))


@pytest.fixture(scope="module")
def module(pghost, run_module):
    def call(name, check=False, **args):
        return run_module(pghost, "fleetdb.online_upgrade." + name, args, check=check)
    return call


@pytest.fixture(scope="module")
def bins(pghost, pg_dists, module):
    """{major: bin_dir} of 16 and 18, installed from their archives."""
    sh(pghost, "mkdir -p /var/cache/fleetdb")
    found = {}
    for major in ("16", "18"):
        archive = "/var/cache/fleetdb/postgresql-%s.tar.gz" % major
        pghost.copy_in(pg_dists[major], archive)
        with open(pg_dists[major], "rb") as handle:
            checksum = "sha256:" + hashlib.sha256(handle.read()).hexdigest()
        installed = module("install", version=major, archive=archive, checksum=checksum)
        assert not installed.get("failed"), installed
        found[major] = installed["bin_dir"]
    return found


def hand_made_server(host, bin_dir, data_dir, conf, password=None):
    """initdb and pg_ctl start as postgres, the settings appended to postgresql.conf, the log beside the data."""
    sh(host, "mkdir -p %s && chown postgres: %s" % (data_dir.rsplit("/", 1)[0], data_dir.rsplit("/", 1)[0]))
    pwfile = "--pwfile=/tmp/pw --username=postgres" if password else ""
    if password:
        sh(host, "echo '%s' > /tmp/pw && chown postgres /tmp/pw" % password)
    sh(host, "runuser -u postgres -- %s/initdb -D %s --auth-local=peer --auth-host=scram-sha-256 %s >/dev/null"
       % (bin_dir, data_dir, pwfile))
    host.write_file(data_dir + "/postgresql.conf.add", conf)
    sh(host, "cat %s/postgresql.conf.add >> %s/postgresql.conf && rm %s/postgresql.conf.add /tmp/pw -f"
       % (data_dir, data_dir, data_dir))
    sh(host, "runuser -u postgres -- %s/pg_ctl start -D %s -l %s/server.log -w >/dev/null"
       % (bin_dir, data_dir, data_dir))


@pytest.fixture(scope="module")
def custom(pghost, bins):
    for directory in CUSTOM["dirs"]:
        sh(pghost, "mkdir -p '%s' && chown postgres: '%s' && chmod 2775 '%s'" % (directory, directory, directory))
    hand_made_server(pghost, bins["16"], CUSTOM["data_dir"],
                     "port = %d\nlisten_addresses = ''\nunix_socket_directories = '%s'\n"
                     % (CUSTOM["port"], ", ".join(CUSTOM["dirs"])))
    return CUSTOM


@pytest.fixture(scope="module")
def tcp_only(pghost, bins):
    hand_made_server(pghost, bins["16"], TCP_ONLY["data_dir"],
                     "port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n" % TCP_ONLY["port"],
                     password=TCP_ONLY["password"])
    assert pghost.run("ls %s" % NEW_SOCKET_DIR).returncode != 0
    return TCP_ONLY


def discover(module, port, **args):
    return module("discover", port=port, old_version="16", new_version="18", record=False, **args)


# -- a socket in directories discovery did not use to look in -------------------------------------------

def test_discover_finds_a_server_whose_sockets_are_all_in_custom_directories(pghost, module, bins, custom):
    found = discover(module, custom["port"])
    assert not found.get("failed"), found
    old = found["old"]
    assert old["data_dir"] == custom["data_dir"] and old["bin_dir"] == bins["16"] and old["owner"] == "postgres"
    assert old["socket_dir"] == "/srv/pgsock"              # the first it serves: where the upgrade connects
    assert old["socket_directories"] == custom["dirs"]      # every one, in order
    assert old["service"]["kind"] == "pg_ctl" and old["major"] == "16"
    # Told where to look first, discovery finds it by its socket lock file there, and connects there.
    there = discover(module, custom["port"], socket_dir="/srv/pg sock2")["old"]
    assert there["socket_dir"] == "/srv/pg sock2" and there["socket_directories"] == custom["dirs"], there


def test_the_new_instance_serves_every_socket_directory_of_the_old_one(pghost, module, bins, custom):
    old = discover(module, custom["port"])["old"]
    args = dict(data_dir=NEW_18, bin_dir=bins["18"], port=custom["port"], socket_dir=old["socket_dir"],
                socket_directories=old["socket_directories"], settings=dict(wal_level="logical"),
                inherit_from=dict(data_dir=old["data_dir"], bin_dir=old["bin_dir"], port=old["port"],
                                  socket_dir=old["socket_dir"]))
    planned = module("instance", check=True, **args)
    assert planned["changed"] and planned["created"], planned
    assert planned["settings"]["unix_socket_directories"] == "/srv/pgsock, /srv/pg sock2", planned
    assert pghost.run("test -e %s" % NEW_18).returncode != 0
    created = module("instance", **args)
    assert not created.get("failed"), created
    assert "unix_socket_directories = '/srv/pgsock, /srv/pg sock2'\n" in sh(pghost, "cat %s/fleetdb.conf" % NEW_18)
    assert module("instance", **args)["changed"] is False
    started = module("server", state="started", port=15470, data_dir=NEW_18, bin_dir=bins["18"],
                     socket_dir=old["socket_dir"])
    try:
        assert started.get("accepting"), started
        for directory in custom["dirs"]:   # clients find the new server through either directory
            assert sh(pghost, "runuser -u postgres -- %s/psql -h '%s' -p 15470 -XAtc 'SHOW server_version_num'"
                      % (bins["18"], directory)).startswith("18")
    finally:
        module("server", state="stopped", data_dir=NEW_18, bin_dir=bins["18"], socket_dir=old["socket_dir"])


def test_moving_the_old_server_to_another_port_keeps_its_socket_directories(pghost, module, bins, custom):
    """What the cutover does to the old instance: a rollback starts it again, serving every directory."""
    spec = dict(data_dir=custom["data_dir"], bin_dir=bins["16"], socket_dir="/srv/pgsock")
    try:
        moved = module("port", port=custom["port"] + 1, **spec)
        assert moved["changed"] and moved["configured_port"] == custom["port"] + 1, moved
        assert "unix_socket_directories" not in sh(pghost, "cat %s/fleetdb.conf" % custom["data_dir"])
        assert sh(pghost, "runuser -u postgres -- %s/postgres -D %s -C unix_socket_directories"
                  % (bins["16"], custom["data_dir"])).strip() == "/srv/pgsock, /srv/pg sock2"
    finally:
        assert not module("port", port=custom["port"], **spec).get("failed")


# -- no Unix socket at all ------------------------------------------------------------------------------

def test_the_role_stops_a_tcp_only_server_at_discovery_with_the_fix(pghost, tcp_only, tmp_path):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("%s ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3\n"
                         % pghost.name)
    env = dict(ansible_env(), ANSIBLE_STDOUT_CALLBACK="default")
    argv = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", str(inventory),
            os.path.join(ROOT, "playbooks", "upgrade.yml"), "--tags", "preflight",
            "-e", "online_upgrade_old_version=16", "-e", "online_upgrade_new_version=18",
            "-e", "online_upgrade_port=%d" % tcp_only["port"], "-e", "online_upgrade_replication_password=not-used",
            "-e", "online_upgrade_report_dir="]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Stop when the old server cannot be found" in output, output
    assert "TCP only" in output and "ALTER SYSTEM SET unix_socket_directories = '/var/run/postgresql'" in output, output
    assert "online_upgrade_discover=false" not in output, output   # naming the instance by hand would not help


def test_a_tcp_only_server_is_refused_before_anything_changes_and_the_fix_works_as_written(
        pghost, module, bins, tcp_only):
    port, data_dir = tcp_only["port"], tcp_only["data_dir"]
    before = snapshot(pghost, data_dir + "/postgresql.conf", data_dir + "/postgresql.auto.conf", "/srv")
    refused = discover(module, port, socket_dir=NEW_SOCKET_DIR)
    failed_with(refused, "the server on port %d" % port, "serves no Unix-domain socket in a directory",
                "TCP only", "nothing was changed", "Fix: create the directory: install -d -o postgres -g postgres "
                "-m 2775 %s; then " % NEW_SOCKET_DIR)
    assert refused["reason"] == "no_socket", refused
    alter = ("%s/psql -h 127.0.0.1 -p %d -U postgres -d postgres -c \"ALTER SYSTEM SET unix_socket_directories = "
             "'%s'\"" % (bins["16"], port, NEW_SOCKET_DIR))
    restart = "runuser -u postgres -- %s/pg_ctl restart -D %s -m fast -l %s/server.log" % (
        bins["16"], data_dir, data_dir)
    assert alter in refused["msg"] and restart in refused["msg"], refused["msg"]
    assert "online_upgrade_login_user" not in refused["msg"]
    # Preflight, for a role run with online_upgrade_discover: false, says the same.
    preflight = module("preflight", old=dict(data_dir=data_dir, bin_dir=bins["16"], port=port,
                                             socket_dir=NEW_SOCKET_DIR),
                       new_version="18", new_data_dir="/var/lib/pgsql-tcp/18", temporary_port=15480,
                       old_port_after=port + 1)
    failed_with(preflight, "old_server: the server on port %d" % port, "TCP only", alter, restart)
    assert snapshot(pghost, data_dir + "/postgresql.conf", data_dir + "/postgresql.auto.conf", "/srv") == before

    # The fix, run as written: each step is the text after its first ': ', up to '; then '.
    fix = refused["msg"].split("Fix: ", 1)[1]
    steps = [step.split(": ", 1)[1] for step in fix.split("; then ") if ": " in step]
    assert len(steps) == 3, steps
    for step in steps:
        sh(pghost, "PGPASSWORD='%s' %s" % (tcp_only["password"], step))
    found = discover(module, port)
    assert not found.get("failed"), found
    assert found["old"]["socket_dir"] == NEW_SOCKET_DIR and found["old"]["socket_directories"] == [NEW_SOCKET_DIR]
    assert found["old"]["data_dir"] == data_dir


def test_a_server_that_does_not_let_its_owner_in_is_told_how_with_real_names(pghost, module, bins, custom):
    hba = custom["data_dir"] + "/pg_hba.conf"
    sh(pghost, "cp %s %s.saved && sed -i 's/^local\\(.*\\)peer$/local\\1reject/' %s" % (hba, hba, hba))
    try:
        sh(pghost, "runuser -u postgres -- %s/pg_ctl reload -D %s >/dev/null" % (bins["16"], custom["data_dir"]))
        refused = discover(module, custom["port"])
        failed_with(refused, "does not let postgres in", "a line 'local all postgres peer'", "pg_reload_conf()",
                    "runuser -u postgres -- %s/pg_ctl reload -D %s" % (bins["16"], custom["data_dir"]))
        assert refused["reason"] == "login" and "online_upgrade_login_user" not in refused["msg"]
    finally:
        sh(pghost, "mv %s.saved %s && runuser -u postgres -- %s/pg_ctl reload -D %s >/dev/null"
           % (hba, hba, bins["16"], custom["data_dir"]))


# -- a Debian cluster whose data a DBA moved to a disk of its own ----------------------------------------

def test_a_debian_cluster_whose_data_directory_was_moved_gets_its_successor_beside_it(pghost, module, bins):
    """pg_createcluster -d /srv/pgdata/15/moved: discovery finds a postgresql-common cluster whose data_directory
    is not under /var/lib/postgresql, and plans 18's data directory beside it (where the disk check then looks),
    its configuration in /etc/postgresql/18/moved."""
    installed = module("install", version="15", method="package")
    assert not installed.get("failed"), installed
    sh(pghost, "mkdir -p /srv/pgdata && chown postgres: /srv/pgdata && "
               "pg_createcluster -d /srv/pgdata/15/moved -p 5490 15 moved >/dev/null && pg_ctlcluster 15 moved start")
    try:
        found = module("discover", port=5490, old_version="15", new_version="18", record=False)
        assert not found.get("failed"), found
        assert found["old"]["data_dir"] == "/srv/pgdata/15/moved", found["old"]
        assert found["old"]["config_file"] == "/etc/postgresql/15/moved/postgresql.conf", found["old"]
        assert found["old"]["service"]["kind"] == "debian", found["old"]
        assert found["new"]["data_dir"] == "/srv/pgdata/18/moved", found["new"]
        assert found["new"]["config_file"] == "/etc/postgresql/18/moved/postgresql.conf", found["new"]
    finally:
        sh(pghost, "pg_ctlcluster 15 moved stop; pg_dropcluster 15 moved; true")
