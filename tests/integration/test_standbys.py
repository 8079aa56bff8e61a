"""A primary and its physical standby, PostgreSQL 16 in two test hosts: preflight names the standbys it sees and
matches them to the inventory hosts that name them (``online_upgrade_primary``), refuses the ones the inventory
does not name, and the standby host's own preflight refuses a cascading standby, nothing changing on either host;
playbooks/upgrade.yml upgrades a primary and its standby to 18 (a pair of their own, on port 5442); then the
modules ``standby`` and ``standby_switchover`` one by one, on the first pair.

The hosts: ``pghost`` (conftest) the primary, ``standby`` a second container streaming from it over the Docker
network (``pg_basebackup -R``, ``application_name=replica1``)."""
import hashlib
import json
import os
import re
import subprocess

import pytest

from conftest import ROOT, ansible_env, remove_host, start_host

PREFIX = "/opt/fleetdb/postgresql"
SOCK = "/var/run/postgresql"
OLD = dict(data_dir="/var/lib/fleetdb/postgresql/16/main", bin_dir=PREFIX + "/16/bin", port=5432)
NEW = dict(data_dir="/var/lib/fleetdb/postgresql/18/main", bin_dir=PREFIX + "/18/bin", port=5432)
REPLICATOR = "fleetdb_replicator"
CASCADE_DIR = "/var/lib/fleetdb/postgresql/16/cascade"
# The role's test has a 16 primary and standby of its own, on another port than the module tests' (which the
# role leaves to them as they were): its new data directory, temporary port, and the old ones' port afterwards.
E2E = dict(data_dir="/var/lib/fleetdb/postgresql/18/standbys", port=15440)
E2E_OLD = dict(OLD, data_dir="/var/lib/fleetdb/postgresql/16/standbys", port=5442)
E2E_OLD_PORT_AFTER = 5443
WATCHED = "/opt/fleetdb /var/lib/fleetdb/postgresql/18 /var/lib/fleetdb/online_upgrade"


def sh(host, cmd, user="root"):
    proc = host.run(cmd, user=user)
    assert proc.returncode == 0, "%s: %s" % (cmd, proc.stderr)
    return proc.stdout


def address(host):
    return subprocess.run(["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", host.name],
                          capture_output=True, text=True, check=True).stdout.strip()


def install(host, run_module, pg_dists, major="16"):
    archive = "/var/cache/fleetdb/postgresql-%s.tar.gz" % major
    sh(host, "mkdir -p /var/cache/fleetdb")
    host.copy_in(pg_dists[major], archive)
    with open(pg_dists[major], "rb") as handle:
        checksum = "sha256:" + hashlib.sha256(handle.read()).hexdigest()
    result = run_module(host, "fleetdb.online_upgrade.install", dict(version=major, archive=archive, checksum=checksum))
    assert not result.get("failed"), result


def base_backup(host, source, data_dir, port, application_name, source_port=5432):
    """A hot standby of ``source`` (host or socket, on ``source_port``) in ``data_dir``, started on ``port``."""
    sh(host, "%s/pg_basebackup -h %s -p %d -U postgres -D %s -R -X stream -c fast -d 'application_name=%s'"
       % (OLD["bin_dir"], source, source_port, data_dir, application_name), user="postgres")
    started = host.run("LD_LIBRARY_PATH=%s/16/lib %s/pg_ctl -D %s -l %s/standby.log -w -o '-p %d' start"
                       % (PREFIX, OLD["bin_dir"], data_dir, data_dir, port), user="postgres")
    assert started.returncode == 0, host.run("cat %s/standby.log" % data_dir).stdout


@pytest.fixture(scope="module")
def primary(pghost, run_module, pg_dists):
    install(pghost, run_module, pg_dists)
    for name, args in (("instance", dict(settings=dict(wal_level="logical", listen_addresses="*"))),
                       ("server", dict(state="started"))):
        result = run_module(pghost, "fleetdb.online_upgrade." + name, dict(OLD, **args))
        assert not result.get("failed"), result
    sh(pghost, "echo 'host replication postgres samenet trust' >> %s/pg_hba.conf" % OLD["data_dir"])
    sql(pghost, "SELECT pg_reload_conf()")
    return pghost


@pytest.fixture(scope="module")
def standby(primary, run_module, pg_dists):
    host = start_host("standbys-replica")
    try:
        install(host, run_module, pg_dists)
        sh(host, "mkdir -p %s && chown postgres %s" % (SOCK, SOCK))
        sh(host, "mkdir -p -m 700 %s && chown postgres %s" % (OLD["data_dir"], OLD["data_dir"]))
        base_backup(host, address(primary), OLD["data_dir"], 5432, "replica1")
        sql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", expect="1")
        yield host
    finally:
        remove_host(host)


def sql(host, statement, port=5432, expect=None, bin_dir=OLD["bin_dir"]):
    for _attempt in range(100):
        out = sh(host, "%s/psql -h %s -p %d -d postgres -XAtq -c \"%s\"" % (bin_dir, SOCK, port, statement),
                 user="postgres").strip()
        if expect is None or out == expect:
            return out
        subprocess.run(["sleep", "0.1"], check=True)
    raise AssertionError("%s gave %r, not %r" % (statement, out, expect))


def preflight(run_module, host, **args):
    options = dict(old=dict(OLD), new_version="18", new_data_dir="/var/lib/fleetdb/postgresql/18/main",
                   temporary_port=15432, old_port_after=5433, inventory_host="db1")
    options.update(args)
    return run_module(host, "fleetdb.online_upgrade.preflight", options)


def standby_problems(result):
    return [p for p in result.get("problems", []) if p["check"] in ("standbys", "standby")]


def snapshot(host):
    return sh(host, "find %s -printf '%%p %%s %%T@\\n' 2>/dev/null | sort; true" % WATCHED)


def test_an_unnamed_standby_is_refused_by_name_with_the_inventory_line_it_needs(primary, standby, run_module):
    before = snapshot(primary)
    result = preflight(run_module, primary)
    assert result.get("failed"), result
    [problem] = standby_problems(result)
    assert "the inventory does not name" in problem["msg"]
    assert "application_name replica1 from %s, async" % address(standby) in problem["msg"]
    assert "online_upgrade_primary: db1" in problem["fix"]
    assert result["standbys"] == []
    assert snapshot(primary) == before


def test_the_standby_named_by_the_inventory_is_matched_by_address_and_listed(primary, standby, run_module):
    """The inventory host db2 has no application_name of its own (the inventory name differs): its address matches."""
    sql(primary, "ALTER SYSTEM SET synchronous_standby_names = 'replica1'")
    sql(primary, "SELECT pg_reload_conf()")
    try:
        sql(primary, "SELECT sync_state FROM pg_stat_replication", expect="sync")
        result = preflight(run_module, primary, standbys=[dict(host="db2", address=address(standby))])
    finally:
        sql(primary, "ALTER SYSTEM RESET synchronous_standby_names")
        sql(primary, "SELECT pg_reload_conf()")
    assert result["standbys"] == [dict(host="db2", application_name="replica1", client_addr=address(standby),
                                       sync_state="sync", slot="")]
    assert standby_problems(result) == []   # matched: its new instance is made before the cutover


def test_an_inventory_host_that_streams_not_is_named(primary, standby, run_module):
    result = preflight(run_module, primary,
                       standbys=[dict(host="replica1"), dict(host="db3", address="192.0.2.7")])
    assert [s["host"] for s in result["standbys"]] == ["replica1"]
    missing = [p for p in standby_problems(result) if "names db3" in p["msg"]]
    assert missing and "192.0.2.7" in missing[0]["msg"], result["problems"]


def test_the_standby_hosts_own_preflight_passes(standby, run_module):
    before = snapshot(standby)
    result = preflight(run_module, standby, standby_of="db1")
    assert not result.get("failed") and result["ok"], result
    assert result["primary"] == "db1" and result["old_version"].startswith("16.") and result["free_bytes"] > 0
    assert snapshot(standby) == before


def test_a_primary_named_a_standby_is_refused(primary, standby, run_module):
    result = preflight(run_module, primary, standby_of="db1")
    [problem] = standby_problems(result)
    assert "is not a standby" in problem["msg"] and "online_upgrade_primary" in problem["fix"]


def test_a_cascading_standby_is_refused_on_the_standby_host(standby, run_module):
    sh(standby, "mkdir -p -m 700 %s && chown postgres %s" % (CASCADE_DIR, CASCADE_DIR))
    base_backup(standby, SOCK, CASCADE_DIR, 5434, "cascade1")
    try:
        sql(standby, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", expect="1")
        result = preflight(run_module, standby, standby_of="db1")
    finally:
        sh(standby, "%s/pg_ctl -D %s -m immediate stop" % (OLD["bin_dir"], CASCADE_DIR), user="postgres")
        sh(standby, "rm -rf %s" % CASCADE_DIR)
    assert result.get("failed"), result
    [problem] = standby_problems(result)
    assert "cascading standby streams from this standby (application_name cascade1 from local" in problem["msg"]
    assert "point it at db1" in problem["fix"]


def playbook(inventory, *extra, name="upgrade.yml"):
    env = ansible_env()
    env.update(ANSIBLE_STDOUT_CALLBACK="default")
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", str(inventory),
                           os.path.join(ROOT, "playbooks", name)] + list(extra),
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False)
    output = proc.stdout + proc.stderr
    return proc.returncode, output, " ".join(output.split())   # the callback wraps long messages


def playbook_killed_at(inventory, extra, host, phase):
    """playbooks/upgrade.yml, killed (the controller, then the cutover module on ``host``) once the cutover on
    ``host`` reached ``phase``; its output."""
    work = "/var/lib/fleetdb/online_upgrade"
    sh(host, "echo %s > %s/failpoint" % (phase, work))
    env = ansible_env()
    env.update(ANSIBLE_STDOUT_CALLBACK="default")
    controller = subprocess.Popen([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", str(inventory),
                                   os.path.join(ROOT, "playbooks", "upgrade.yml")] + list(extra),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
                                  start_new_session=True)
    try:
        reached = '"failpoint_reached": "%s"' % phase
        for _wait in range(3000):
            if reached in sh(host, "cat %s/switchover.json 2>/dev/null; true" % work) or controller.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert controller.poll() is None, "the run ended before the failpoint %s:\n%s" % (phase, controller.stdout.read())
    finally:
        if controller.poll() is None:
            os.killpg(controller.pid, 9)
        output = controller.communicate()[0]
        sh(host, "rm -f %s/failpoint" % work)
    module = json.loads(sh(host, "cat %s/switchover.json" % work))["pid"]
    host.run("kill -9 %d" % module)
    return output


def recap(output, host):
    return re.search(r"%s\s*: ok=\d+ +changed=(\d+) .*failed=(\d+) " % re.escape(host.name),
                     output.rsplit("PLAY RECAP", 1)[1]).groups()


def e2e_pair(primary, standby, run_module):
    """A 16 primary on port 5442 of the primary host, its synchronous standby (replica1) on the standby host."""
    for name, args in (("instance", dict(settings=dict(wal_level="logical", listen_addresses="*"))),
                       ("server", dict(state="started"))):
        result = run_module(primary, "fleetdb.online_upgrade." + name, dict(E2E_OLD, **args))
        assert not result.get("failed"), result
    sh(primary, "echo 'host replication postgres samenet trust' >> %s/pg_hba.conf" % E2E_OLD["data_dir"])
    sql(primary, "SELECT pg_reload_conf()", port=5442)
    sh(standby, "mkdir -p -m 700 %s && chown postgres %s" % (E2E_OLD["data_dir"], E2E_OLD["data_dir"]))
    base_backup(standby, address(primary), E2E_OLD["data_dir"], 5442, "replica1", source_port=5442)
    sql(primary, "ALTER SYSTEM SET synchronous_standby_names = 'replica1'", port=5442)
    sql(primary, "SELECT pg_reload_conf()", port=5442)
    sql(primary, "SELECT application_name, sync_state FROM pg_stat_replication", port=5442, expect="replica1|sync")


def test_the_role_upgrades_a_primary_and_its_standby_and_a_killed_copy_is_made_again(
        primary, standby, run_module, tmp_path, pg_dists):
    """playbooks/upgrade.yml on both hosts, one host a wave: the inventory names the standby by its application_name
    (its address, the container's name, means nothing to the primary).  The primary's new instance gets the data,
    the standby host its new standby from it; then the primary's cutover, the standby's switch, and the primary's
    synchronous_standby_names given back.  The first run's copy is killed (its pg_basebackup): the standby host
    fails, its primary stops before its cutover, and the re-run clears the copy's leftover and goes on."""
    e2e_pair(primary, standby, run_module)
    sql(primary, "CREATE TABLE standby_e2e (id int PRIMARY KEY, note text)", port=5442)
    sql(primary, "INSERT INTO standby_e2e VALUES (1, 'before the upgrade')", port=5442)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "%s ansible_host=%s ansible_docker_host=%s\n"
        "%s online_upgrade_primary=%s online_upgrade_standby_application_name=replica1\n"
        "[all:vars]\nansible_connection=community.docker.docker\nansible_python_interpreter=/usr/bin/python3\n"
        "online_upgrade_port=%d\nonline_upgrade_new_data_dir=%s\nonline_upgrade_temporary_port=%d\n"
        % (primary.name, address(primary), primary.name, standby.name, primary.name, E2E_OLD["port"], E2E["data_dir"],
           E2E["port"]))
    with open(pg_dists["18"], "rb") as handle:
        checksum = hashlib.sha256(handle.read()).hexdigest()
    reports = tmp_path / "reports"
    extra = ["-e", "online_upgrade_old_version=16", "-e", "online_upgrade_new_version=18", "-e", "online_upgrade_serial=1",
             "-e", "online_upgrade_archive_src=%s" % pg_dists["18"], "-e", "online_upgrade_archive_checksum=sha256:" + checksum,
             "-e", "online_upgrade_replication_password=repl-pw-e2e", "-e", "online_upgrade_report_dir=%s" % reports]
    killer = subprocess.run(["docker", "exec", "-d", standby.name, "sh", "-c",
                             "until [ -n \"$(ls -A %s 2>/dev/null)\" ]; do sleep 0.02; done; pkill -KILL -x pg_basebackup"
                             % E2E["data_dir"]], check=False)
    assert killer.returncode == 0
    new = dict(port=E2E_OLD["port"], bin_dir=NEW["bin_dir"])
    try:
        rc, output, said = playbook(inventory, *extra)
        assert rc != 0, output
        assert "pg_basebackup of the primary's new instance (%s port %d) failed" % (address(primary), E2E["port"]) in said, output
        assert "The inventory names %s as standby host(s) of %s" % (standby.name, primary.name) in said, output
        assert recap(output, primary)[1] == "1" and recap(output, standby)[1] == "1", output
        assert not sh(standby, "ls %s/standby.signal 2>/dev/null; true" % E2E["data_dir"]).strip()   # a killed copy
        assert '"copy": "copying"' in sh(standby, "cat /var/lib/fleetdb/online_upgrade/standby.json")
        sql(primary, "SELECT count(*) FROM standby_e2e", port=5442, expect="1")   # the old server serves
        # a write in the middle of the upgrade (the new instance replicates it), on the old server, which serves
        sql(primary, "INSERT INTO standby_e2e VALUES (2, 'during the upgrade')", port=5442)

        rc, output, said = playbook(inventory, *extra)
        assert rc == 0, output
        assert "%s is a standby of %s: its own checks passed" % (standby.name, primary.name) in said, output
        assert "held the copy an interrupted run left: it was removed and copied again" in said, output
        assert recap(output, standby)[1] == "0" and recap(output, primary)[1] == "0", output
        assert ('host    replication   "fleetdb_replicator"   %s/32   scram-sha-256' % address(standby)
                in sh(primary, "cat %s/pg_hba.conf" % E2E["data_dir"]))
        # 18 serves the production port on the primary; the standby host's 18 streams from it there, synchronous
        assert sql(primary, "SELECT current_setting('server_version_num')::int / 10000, pg_is_in_recovery()",
                   **new) == "18|f"
        sql(primary, "SELECT application_name, state, sync_state FROM pg_stat_replication", expect="replica1|streaming|sync",
            **new)
        assert sql(primary, "SHOW synchronous_standby_names", **new) == "replica1"
        sql(standby, "SELECT current_setting('server_version_num')::int / 10000, pg_is_in_recovery(), status, sender_host, "
            "sender_port FROM pg_stat_wal_receiver", expect="18|t|streaming|%s|5442" % address(primary), **new)
        # the old primary and the old standby: stopped, configured for the other port
        for host in (primary, standby):
            old = run_module(host, "fleetdb.online_upgrade.server", dict(E2E_OLD, state="status"))
            assert not old["running"] and old["configured_port"] == E2E_OLD_PORT_AFTER, (host.name, old)
        # the write made during the upgrade is on both
        for host in (primary, standby):
            assert sql(host, "SELECT string_agg(note, ', ' ORDER BY id) FROM standby_e2e", **new) == (
                "before the upgrade, during the upgrade"), host.name
        # the primary's report lists its standby's switch and the read pause there; the summary, per wave
        with open(str(reports / "hosts" / ("%s.json" % primary.name))) as handle:
            [switched] = json.load(handle)["standbys"]
        assert switched["host"] == standby.name and 0 < float(switched["read_pause_s"]) < 30, switched
        assert switched["phase_order"][-3:] == ["start_new", "retire_old", "streaming"], switched
        with open(str(reports / "summary.json")) as handle:
            summary = json.load(handle)
        assert [(h["host"], h["ok"], h["standbys"]) for h in summary["hosts"]] == [
            (primary.name, True, [dict(host=standby.name, read_pause_s=float(switched["read_pause_s"]))])], summary
        assert max(w["read_pause_s_max"] or 0 for w in summary["waves"]) == float(switched["read_pause_s"]), summary
        # the new standby streams as the old one did (postgres, not the upgrade's role): the upgrade's password left
        # the standby host, and finalize, which drops that role, leaves it streaming; the old standby's data goes too
        sql(primary, "SELECT usename FROM pg_stat_replication", expect="postgres", **new)
        assert not sh(standby, "ls %s/*.pgpass 2>/dev/null; true" % os.path.dirname(E2E["data_dir"])).strip()
        rollback_and_upgrade_again(primary, standby, run_module, inventory, extra, new)
        rc, output, said = playbook(inventory, *extra, name="finalize.yml")
        assert rc == 0, output
        for host in (primary, standby):
            assert not sh(host, "ls -d %s 2>/dev/null; true" % E2E_OLD["data_dir"]).strip(), host.name
        assert sql(primary, "SELECT count(*) FROM pg_roles WHERE rolname = '%s'" % REPLICATOR, **new) == "0"
        assert sql(primary, "SELECT count(*) FROM pg_replication_slots", **new) == "0"
        sql(primary, "INSERT INTO standby_e2e VALUES (3, 'after finalize')", **new)   # synchronous: the standby has it
        sql(primary, "SELECT application_name, state, sync_state FROM pg_stat_replication", expect="replica1|streaming|sync",
            **new)
        assert sql(standby, "SELECT note FROM standby_e2e WHERE id = 3", **new) == "after finalize"
    finally:   # the module tests below have servers of their own
        for host in (standby, primary):
            for bin_dir, data_dir in ((NEW["bin_dir"], E2E["data_dir"]), (OLD["bin_dir"], E2E_OLD["data_dir"])):
                host.run("%s/pg_ctl -D %s -m fast stop" % (bin_dir, data_dir), user="postgres")


ROLLBACK_WRITER = ("while true; do %s/psql -h %s -p 5442 -d postgres -XAtqc \"INSERT INTO standby_e2e SELECT "
                   "greatest(max(id), 999) + 1, 'rollback writer' FROM standby_e2e\" >/dev/null 2>&1; sleep 0.01; done"
                   % (OLD["bin_dir"], SOCK))
ROLLBACK_READER = ("while true; do echo \"$(%s/psql -h %s -p 5442 -d postgres -XAtqc 'SELECT max(id) FROM standby_e2e' "
                   "2>/dev/null)\" >> /tmp/rollback_reads; sleep 0.005; done" % (OLD["bin_dir"], SOCK))


def rollback_and_upgrade_again(primary, standby, run_module, inventory, extra, new):
    """playbooks/rollback.yml with a writer on the primary's production port and a reader on the standby's: the
    old primary and its old standby come back with every write 18 took, the standby synchronous again; then
    playbooks/upgrade.yml upgrades both again."""
    sql(primary, "INSERT INTO standby_e2e VALUES (10, 'on 18 before the rollback')", **new)
    held = "/var/lib/fleetdb/online_upgrade/held_settings.json"
    sh(standby, "rm -f /tmp/rollback_reads")
    background(primary, "rollback_writer", ROLLBACK_WRITER)
    background(standby, "rollback_reader", ROLLBACK_READER)
    try:
        rc, output, said = playbook(inventory, *extra, name="rollback.yml")
        assert rc == 0, output
    finally:
        stop_background(standby, "rollback_reader")
        stop_background(primary, "rollback_writer")
    assert "%s: the 16 standby streams from %s on port 5442 (streaming)" % (standby.name, primary.name) in said, output
    # 16 serves the production port of both hosts again, the standby streaming from the old primary, synchronous
    assert sql(primary, "SELECT current_setting('server_version_num')::int / 10000, pg_is_in_recovery()",
               port=5442) == "16|f"
    sql(primary, "SELECT application_name, state, sync_state FROM pg_stat_replication", port=5442,
        expect="replica1|streaming|sync")
    sql(standby, "SELECT current_setting('server_version_num')::int / 10000, pg_is_in_recovery(), status, sender_host, "
        "sender_port FROM pg_stat_wal_receiver", port=5442, expect="16|t|streaming|%s|5442" % address(primary))
    # synchronous_standby_names is back as the DBA set it: ALTER SYSTEM, in postgresql.auto.conf
    assert sql(primary, "SELECT setting FROM pg_file_settings WHERE name = 'synchronous_standby_names' "
               "AND sourcefile LIKE '%auto.conf'", port=5442) == "replica1"
    assert sql(primary, "SHOW synchronous_standby_names", port=5442) == "replica1"
    assert not sh(primary, "ls %s 2>/dev/null; true" % held).strip()
    assert address(standby) not in sh(primary, "cat %s/pg_hba.conf" % E2E_OLD["data_dir"])
    # every write 18 took is on the old primary and the old standby; a write now waits for the standby
    sql(primary, "INSERT INTO standby_e2e VALUES (11, 'after the rollback')", port=5442)
    for host in (primary, standby):
        assert sql(host, "SELECT string_agg(note, ', ' ORDER BY id) FROM standby_e2e WHERE id < 1000",
                   port=5442) == ("before the upgrade, during the upgrade, on 18 before the rollback, after the "
                                  "rollback"), host.name
    newest = sql(primary, "SELECT max(id) FROM standby_e2e", port=5442)
    assert sql(standby, "SELECT max(id) FROM standby_e2e", port=5442) == newest
    # the 18 instances: stopped, configured for the temporary port
    for host in (primary, standby):
        stopped = run_module(host, "fleetdb.online_upgrade.server", dict(E2E, bin_dir=NEW["bin_dir"], state="status"))
        assert not stopped["running"] and stopped["configured_port"] == E2E["port"], (host.name, stopped)
    # the reader on the standby host never saw the rows go back, and saw the writer's rows on both releases
    values = [int(line) for line in sh(standby, "cat /tmp/rollback_reads").split() if line.isdigit()]
    backwards = [(a, b) for a, b in zip(values, values[1:]) if b < a]
    assert values and not backwards, backwards[:5]
    assert values[0] < values[-1], (values[:3], values[-3:])

    # the upgrade again, its controller killed between the primary's cutover and the standby's switch
    output = playbook_killed_at(inventory, extra, primary, "switched")
    assert "held the standby of an upgrade rolled back since: it was removed and copied again" in " ".join(
        output.split()), output
    assert sql(primary, "SELECT current_setting('server_version_num')::int / 10000", **new) == "18"
    assert sql(standby, "SELECT current_setting('server_version_num')::int / 10000", port=5442) == "16"
    # the re-run, its switch killed on the standby host once the old standby stopped: the primary's play fails
    background(standby, "killer", "while [ -e %s/postmaster.pid ]; do sleep 0.005; done\npkill -KILL -x '%s'"
               % (E2E_OLD["data_dir"], MODULE_PROCESS), user="root")
    try:
        rc, output, said = playbook(inventory, *extra)
    finally:
        stop_background(standby, "killer")
    assert rc != 0 and recap(output, primary)[1] == "1", output
    assert not run_module(standby, "fleetdb.online_upgrade.server", dict(E2E_OLD, state="status"))["running"]
    # the next re-run asks the stopped old standby nothing, and finishes its switch
    rc, output, said = playbook(inventory, *extra)
    assert rc == 0, output
    assert "%s is a standby of %s whose switch an earlier run began" % (standby.name, primary.name) in said, output
    assert "%s: the 18 standby streams from %s on port 5442" % (standby.name, primary.name) in said, output
    sql(primary, "SELECT application_name, state, sync_state FROM pg_stat_replication", expect="replica1|streaming|sync",
        **new)
    assert sql(primary, "SHOW synchronous_standby_names", **new) == "replica1"   # from the record: no preflight ran
    # nothing retains WAL: on the new primary, only the slot a rollback would replay from (finalize drops it); on
    # the old one, stopped, no slot
    assert sql(primary, "SELECT string_agg(slot_name, ',') FROM pg_replication_slots", **new) == "fleetdb_rollback"
    assert not sh(primary, "ls -A %s/pg_replslot" % E2E_OLD["data_dir"]).strip()
    sql(standby, "SELECT current_setting('server_version_num')::int / 10000, status FROM pg_stat_wal_receiver",
        expect="18|streaming", **new)
    assert sql(standby, "SELECT note FROM standby_e2e WHERE id = 11", **new) == "after the rollback"


# -- the new standby, made from the primary's new instance before the cutover ------------------------------------------

@pytest.fixture(scope="module")
def new_primary(primary, run_module, pg_dists):
    """The primary host's new instance (18) as the upgrade leaves it before the cutover: configured for the
    production port, running on its temporary port, the replication role allowed to stream from the other hosts."""
    install(primary, run_module, pg_dists, "18")
    for name, args in (("instance", dict(settings=dict(wal_level="logical", listen_addresses="*"))),
                       ("server", dict(state="started", port=15432))):
        result = run_module(primary, "fleetdb.online_upgrade." + name, dict(NEW, **args))
        assert not result.get("failed"), result
    sql(primary, "CREATE ROLE %s LOGIN REPLICATION PASSWORD 'repl-pw-1'" % REPLICATOR, port=15432, bin_dir=NEW["bin_dir"])
    # the old primary's line for its standby's own conninfo, which an upgrade carries over to the new instance
    sh(primary, "echo 'host replication %s samenet scram-sha-256' >> %s/pg_hba.conf && "
       "echo 'host replication postgres samenet trust' >> %s/pg_hba.conf" % (REPLICATOR, NEW["data_dir"], NEW["data_dir"]))
    sql(primary, "SELECT pg_reload_conf()", port=15432, bin_dir=NEW["bin_dir"])
    return primary


def make_standby(run_module, standby, primary):
    return run_module(standby, "fleetdb.online_upgrade.standby", dict(
        new=dict(NEW), primary_host=address(primary), primary_port=15432, replication_password="repl-pw-1",
        application_name="db2", temporary_port=15432))


def test_the_new_standby_streams_from_the_primarys_new_instance_while_the_old_one_serves(
        new_primary, standby, run_module, pg_dists):
    install(standby, run_module, pg_dists, "18")
    made = make_standby(run_module, standby, new_primary)
    assert not made.get("failed"), made
    assert made["changed"] and made["made"] and made["started"], made
    assert made["receiver"]["status"] == "streaming" and made["receiver"]["sender_port"] == 15432, made
    assert "repl-pw-1" not in str(made)
    assert sql(new_primary, "SELECT application_name, state FROM pg_stat_replication", port=15432,
               bin_dir=NEW["bin_dir"]) == "db2|streaming"
    sql(new_primary, "CREATE TABLE written_after AS SELECT 42 AS answer", port=15432, bin_dir=NEW["bin_dir"])
    sql(standby, "SELECT coalesce(to_regclass('written_after')::text, '')", port=15432, bin_dir=NEW["bin_dir"],
        expect="written_after")
    assert sql(standby, "SELECT answer FROM written_after", port=15432, bin_dir=NEW["bin_dir"]) == "42"
    status = run_module(standby, "fleetdb.online_upgrade.server", dict(NEW, state="status"))
    assert status["configured_port"] == 5432 and status["port"] == 15432, status
    # the old standby still serves reads on the production port, streaming from the old primary
    assert sql(standby, "SELECT pg_is_in_recovery(), status FROM pg_stat_wal_receiver") == "t|streaming"
    again = make_standby(run_module, standby, new_primary)
    assert not again.get("failed") and not again["changed"], again


def test_a_new_data_directory_that_is_no_standby_is_refused(new_primary, standby, run_module):
    sh(standby, "mkdir -p -m 700 /var/lib/fleetdb/postgresql/18/other && touch /var/lib/fleetdb/postgresql/18/other/x")
    result = run_module(standby, "fleetdb.online_upgrade.standby", dict(
        new=dict(NEW, data_dir="/var/lib/fleetdb/postgresql/18/other"), primary_host=address(new_primary),
        primary_port=15432, replication_password="repl-pw-1", application_name="db2", temporary_port=15433))
    assert result.get("failed") and "is not empty and holds no PostgreSQL data directory" in result["msg"], result
    assert sh(standby, "ls /var/lib/fleetdb/postgresql/18/other").split() == ["x"]


# -- each standby's own switch, after the primary's cutover (module standby_switchover) --------------------------------

WRITER = ("while true; do %s/psql -h %s -p 5432 -d postgres -XAtqc 'UPDATE counter SET n = n + 1' >/dev/null 2>&1; "
          "sleep 0.01; done" % (NEW["bin_dir"], SOCK))
READER = ("while true; do echo \"$(date +%%s.%%N) $(%s/psql -h %s -p 5432 -d postgres -XAtqc 'SELECT n FROM counter' "
          "2>/dev/null)\" >> /tmp/reads; sleep 0.005; done" % (NEW["bin_dir"], SOCK))
# The module's Python on the host (pipelined, under "sh -c 'python3 && sleep 0'"): the only Python there.
MODULE_PROCESS = "python3[.0-9]*"


def background(host, name, loop, user="postgres"):
    host.write_file("/tmp/%s.sh" % name, loop + "\n")
    sh(host, "nohup setsid bash /tmp/%s.sh >/dev/null 2>&1 & echo $! > /tmp/%s.pid" % (name, name), user=user)


def stop_background(host, name):
    sh(host, "kill -- -$(cat /tmp/%s.pid) 2>/dev/null; true" % name, user="postgres")


@pytest.fixture(scope="class")
def cut_over(new_primary, standby, run_module, pg_dists):
    """The new standby made, then the primary's cutover; the counter's value at the cutover."""
    install(standby, run_module, pg_dists, "18")
    made = make_standby(run_module, standby, new_primary)
    assert not made.get("failed"), made
    sql(new_primary, "CREATE TABLE counter AS SELECT 0::bigint AS n")
    sql(new_primary, "CREATE TABLE counter AS SELECT 0::bigint AS n", port=15432, bin_dir=NEW["bin_dir"])
    background(new_primary, "writer", WRITER)
    sql(standby, "SELECT coalesce(to_regclass('counter')::text, '')", expect="counter")
    sql(standby, "SELECT (n > 20)::text FROM counter", expect="true")
    stop_background(new_primary, "writer")
    last = sql(new_primary, "SELECT n FROM counter")
    for spec, state in ((OLD, "stopped"), (NEW, "started")):
        result = run_module(new_primary, "fleetdb.online_upgrade.server", dict(spec, state=state))
        assert not result.get("failed"), result
    sql(new_primary, "UPDATE counter SET n = %s" % last, bin_dir=NEW["bin_dir"])
    background(new_primary, "writer", WRITER)
    yield int(last)
    stop_background(new_primary, "writer")


class TestStandbySwitchover:
    """The primary's cutover, as the test does it: the 16 primary stops, the 18 instance restarts on the production
    port, and only then does it take the counter's last value (so a new standby opening before it replayed the
    new primary's position would show a value older than the old standby showed); a writer raises the counter
    on whatever serves port 5432 of the primary, a reader on the standby host records every value port 5432 shows
    there.  Then the switch; back as before it, a switch refused while the new standby lags, a kill in the middle
    of another, and a reboot."""

    def switch(self, run_module, standby, primary, check=False, timeout=60):
        return run_module(standby, "fleetdb.online_upgrade.standby_switchover", dict(
            old=dict(OLD), new=dict(NEW), primary_host=address(primary), replication_password="repl-pw-1",
            application_name="db2", temporary_port=15432, old_port_after=5433, timeout=timeout), check=check)

    def test_the_switch_pauses_reads_once_and_no_value_goes_backwards(self, cut_over, new_primary, standby, run_module):
        check = self.switch(run_module, standby, new_primary, check=True)
        assert check["changed"] and len(check["actions"]) == 6 and check["read_pause_seconds"] is None, check
        assert "stop the old standby" in check["actions"][2], check
        # the new standby streams with the old one's conninfo: the upgrade's password leaves the host
        assert check["actions"][5] == "remove /var/lib/fleetdb/postgresql/18/fleetdb_replication.pgpass", check
        assert sql(standby, "SELECT pg_is_in_recovery(), current_setting('server_version_num')::int / 10000") == "t|16"
        sh(standby, "rm -f /tmp/reads")
        background(standby, "reader", READER)
        try:
            result = self.switch(run_module, standby, new_primary)
            sql(standby, "SELECT (n > %d)::text FROM counter" % (cut_over + 20), bin_dir=NEW["bin_dir"], expect="true")
        finally:
            stop_background(standby, "reader")
        assert not result.get("failed"), result
        assert result["changed"] and result["phase_order"] == [
            "follow", "catch_up", "stop_old", "start_new", "retire_old", "streaming"], result
        assert 0 < result["read_pause_seconds"] < 30, result
        reads = [line.split() for line in sh(standby, "cat /tmp/reads").splitlines()]
        values = [int(fields[1]) for fields in reads if len(fields) == 2]
        assert values and values[0] <= cut_over < values[-1], (cut_over, values[:3], values[-3:])
        backwards = [(a, b) for a, b in zip(values, values[1:]) if b < a]
        assert not backwards, backwards[:5]
        print("read pause reported %.3f s; %d reads" % (result["read_pause_seconds"], len(values)))
        self.assert_switched(run_module, standby, new_primary)
        again = self.switch(run_module, standby, new_primary)
        assert not again.get("failed") and not again["changed"] and again["actions"] == [], again

    def back_before_the_switch(self, run_module, standby):
        """The new standby on its temporary port (streaming from the production port), the old one serving there."""
        for spec, port in ((NEW, 15432), (OLD, 5432)):
            result = run_module(standby, "fleetdb.online_upgrade.server", dict(spec, state="started", port=port))
            assert not result.get("failed"), result
        sql(standby, "SELECT status, sender_port FROM pg_stat_wal_receiver", port=15432, bin_dir=NEW["bin_dir"],
            expect="streaming|5432")

    def test_a_new_standby_behind_the_new_primary_is_not_opened(self, cut_over, new_primary, standby, run_module):
        """Back as before a switch, its replay paused: the switch waits for it to replay the primary's position,
        then gives up, the old standby still serving."""
        self.back_before_the_switch(run_module, standby)
        sql(standby, "SELECT pg_wal_replay_pause()", port=15432, bin_dir=NEW["bin_dir"])
        try:
            result = self.switch(run_module, standby, new_primary, timeout=3)
        finally:
            sql(standby, "SELECT pg_wal_replay_resume()", port=15432, bin_dir=NEW["bin_dir"])
        assert result.get("failed") and "has not replayed the new primary's position" in result["msg"], result
        assert "the old standby still serves" in result["msg"]
        assert sql(standby, "SELECT current_setting('server_version_num')::int / 10000, n FROM counter") == "16|%d" % (
            cut_over)

    def assert_switched(self, run_module, standby, primary):
        new = run_module(standby, "fleetdb.online_upgrade.server", dict(NEW, state="status"))
        old = run_module(standby, "fleetdb.online_upgrade.server", dict(OLD, state="status"))
        assert new["running"] and new["port"] == 5432 and new["version"].startswith("18."), new
        assert not old["running"] and old["configured_port"] == 5433, old
        sql(standby, "SELECT pg_is_in_recovery(), status, sender_host, sender_port FROM pg_stat_wal_receiver",
            bin_dir=NEW["bin_dir"], expect="t|streaming|%s|5432" % address(primary))
        # as the old standby streamed (its own conninfo, application_name replica1), not as the upgrade made it (db2)
        sql(primary, "SELECT application_name, usename, state FROM pg_stat_replication", bin_dir=NEW["bin_dir"],
            expect="replica1|postgres|streaming")

    def test_a_switch_killed_after_the_old_standby_stopped_is_finished_by_a_rerun(
            self, cut_over, new_primary, standby, run_module):
        self.back_before_the_switch(run_module, standby)
        background(standby, "killer", "while [ -e %s/postmaster.pid ]; do sleep 0.005; done\n"
                   "pkill -KILL -x '%s'"
                   % (OLD["data_dir"], MODULE_PROCESS), user="root")
        killed = self.switch(run_module, standby, new_primary)
        assert killed.get("failed"), killed
        assert standby.run("pgrep -x '%s'" % MODULE_PROCESS).returncode != 0
        assert run_module(standby, "fleetdb.online_upgrade.server", dict(OLD, state="status"))["running"] is False
        rerun = self.switch(run_module, standby, new_primary)
        assert not rerun.get("failed") and rerun["read_pause_seconds"] is None, rerun
        self.assert_switched(run_module, standby, new_primary)

    def test_a_reboot_of_the_standby_host_brings_the_18_standby_up_on_the_production_port(
            self, cut_over, new_primary, standby, run_module):
        subprocess.run(["docker", "restart", standby.name], capture_output=True, check=True, timeout=120)
        rerun = self.switch(run_module, standby, new_primary)
        assert not rerun.get("failed") and rerun["phase_order"] == ["start_new", "streaming"], rerun
        self.assert_switched(run_module, standby, new_primary)
