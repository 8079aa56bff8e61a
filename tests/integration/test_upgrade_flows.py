"""The upgrade flows for real: playbooks/upgrade.yml, rollback.yml, finalize.yml driven by ansible-playbook
against a PostgreSQL 16 host with 100k rows and four writers on the controller (tools/fleetdb_proof.py,
through a published port), each flow ending with the proof that no acknowledged write was lost.

  1. rollback after the cutover (writes taken by 18 come back to 16)
  2. finalize after an upgrade (old data gone, no slot, rollback refused, idempotent)
  3. the dump_restore method (longer outage, nothing acknowledged lost)
  4. resume after the controller is killed (during the copy, around the switchover)
  5. the old postmaster killed during the initial copy, then a re-run
"""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import CACHE, ROOT, remove_host, start_host

BIN = os.path.join(ROOT, ".venv", "bin")
PROOF = os.path.join(ROOT, "tools", "fleetdb_proof.py")
APP_PASSWORD = "app-flows-pw"
STATE = "/var/lib/fleetdb/online_upgrade/switchover.json"
# An Ansible module on the host: its file (AnsiballZ_<module>.py), or with pipelining (ansible.cfg) the Python
# that reads it on stdin, under the shell "sh -c '/usr/bin/python3.11 && sleep 0'".
MODULE_PROCESS = "[A]nsiballZ_|python3[.0-9]* && sleep 0"  # [A]: not the pgrep command line itself
OLD_DATA = "/var/lib/fleetdb/postgresql/16/main"
NEW_DATA = "/var/lib/fleetdb/postgresql/18/main"
PG16 = "/opt/fleetdb/postgresql/16/bin"
PG18 = "/opt/fleetdb/postgresql/18/bin"
ROWS = 100000

PREPARE = """---
- name: A PostgreSQL 16 server on the production port, reachable over TCP
  hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.file: {path: /var/cache/fleetdb, state: directory, mode: "0755"}
    - ansible.builtin.copy: {src: "%(tarball)s", dest: /var/cache/fleetdb/postgresql-16.tar.gz, mode: "0644"}
    - fleetdb.online_upgrade.install:
        version: "16"
        archive: /var/cache/fleetdb/postgresql-16.tar.gz
    - fleetdb.online_upgrade.instance:
        data_dir: %(data)s
        bin_dir: %(bin)s
        port: 5432
        data_checksums: false
        locale: "%(locale)s"
        settings: {listen_addresses: "*", wal_level: logical, max_connections: 100}
        hba_content: |
          local   all   all                 peer
          host    all   all   0.0.0.0/0     scram-sha-256
          host    all   all   ::/0          scram-sha-256
    - fleetdb.online_upgrade.server: {data_dir: %(data)s, bin_dir: %(bin)s, state: started}
    - ansible.builtin.command:
        argv: [runuser, -u, postgres, --, %(bin)s/psql, -h, /var/run/postgresql, -XAtq, -c,
               "CREATE ROLE app LOGIN PASSWORD '%(pw)s'"]
    - ansible.builtin.command:
        argv: [runuser, -u, postgres, --, %(bin)s/psql, -h, /var/run/postgresql, -XAtq, -c,
               "CREATE DATABASE app OWNER app"]
"""


def dist(major):
    found = sorted(glob.glob(os.path.join(CACHE, "dist", "postgresql-%s.*.tar.gz" % major)))
    if not found:
        pytest.fail("no PostgreSQL %s distribution in %s/dist (make setup)" % (major, CACHE))
    return found[-1]


def sha256(path):
    return subprocess.run(["sha256sum", path], capture_output=True, text=True, check=True).stdout.split()[0]


def env():
    result = dict(os.environ)
    result.update(ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                  ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
                  ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                  PATH=BIN + os.pathsep + result.get("PATH", ""))
    for name in ("ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_LOAD_CALLBACK_PLUGINS"):
        result.pop(name, None)
    return result


class Flow:
    """One test host with 16 serving 127.0.0.1:<client_port>, writers, and the playbooks."""

    locale = "C.UTF-8"   # of the 16 cluster (initdb)

    def __init__(self, tmp_path, client_port):
        self.tmp = tmp_path
        self.client_port = client_port
        self.host = start_host("flows", ["-p", "127.0.0.1:%d:5432" % client_port])
        self.load_dir = str(tmp_path / "load")
        self.load = None
        self.inventory = str(tmp_path / "inventory.ini")
        new = dist("18")
        with open(self.inventory, "w") as handle:
            handle.write("%s ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3\n"
                         "\n[all:vars]\nonline_upgrade_old_version=16\nonline_upgrade_new_version=18\n"
                         "online_upgrade_databases=[\"app\"]\nonline_upgrade_archive_src=%s\n"
                         "online_upgrade_archive_checksum=sha256:%s\n"
                         "online_upgrade_replication_password=repl-flows-pw\n"
                         "online_upgrade_sync_timeout=300\n" % (self.host.name, new, sha256(new)))

    # -- ansible --------------------------------------------------------------------------
    def playbook(self, name, *extra, timeout=600):
        path = name if os.path.isabs(name) else os.path.join(ROOT, "playbooks", name)
        proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", self.inventory, path] + list(extra),
                              capture_output=True, text=True, env=env(), cwd=ROOT, timeout=timeout, check=False)
        return proc.returncode, proc.stdout + proc.stderr

    def ok(self, name, *extra):
        rc, out = self.playbook(name, *extra)
        assert rc == 0, "%s failed (rc=%d):\n%s" % (name, rc, out[-6000:])
        return out

    def start_playbook(self, name, *extra):
        """ansible-playbook in its own process group, to be killed with kill_playbook."""
        log = open(str(self.tmp / ("%s-%d.log" % (name, time.time()))), "w")
        proc = subprocess.Popen([os.path.join(BIN, "ansible-playbook"), "-i", self.inventory,
                                 os.path.join(ROOT, "playbooks", name)] + list(extra),
                                stdout=log, stderr=subprocess.STDOUT, env=env(), cwd=ROOT, start_new_session=True)
        proc.log_path = log.name
        return proc

    @staticmethod
    def kill_playbook(proc):
        # Only while the playbook is not reaped: once it is, its pid (and process group id) may be anyone's, a
        # postmaster of another test host included (pid_max is 32768 here and wraps within minutes).
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)

    # -- the host -------------------------------------------------------------------------
    def sh(self, cmd):
        return self.host.check(cmd)

    def psql(self, sql, port=5432, bin_dir=PG18, dbname="app"):
        return self.host.psql(sql, port=port, dbname=dbname, bin_dir=bin_dir)

    def try_psql(self, sql, port, bin_dir=PG18, dbname="app"):
        proc = self.host.run("runuser -u postgres -- %s/psql -h /var/run/postgresql -p %d -d %s -XAtq -c \"%s\""
                             % (bin_dir, port, dbname, sql))
        return proc.stdout.strip() if proc.returncode == 0 else None

    def wait_modules_done(self, timeout=300):
        """Modules of a killed controller keep running on the host: wait until none is left."""
        wait_for("the modules of the killed run to end", lambda: self.host.run(
            "pgrep -f '%s'" % MODULE_PROCESS).returncode != 0, timeout=timeout, interval=0.5)

    def state(self):
        proc = self.host.run("cat %s" % STATE)
        return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}

    def prepare_16(self):
        """Like molecule/default/prepare.yml: 16 on 5432, the app, 100k rows, four writers."""
        path = str(self.tmp / "prepare.yml")
        with open(path, "w") as handle:
            handle.write(PREPARE % dict(tarball=dist("16"), data=OLD_DATA, bin=PG16, pw=APP_PASSWORD, locale=self.locale))
        self.ok(path)
        seeded = self.proof("seed", "--rows", str(ROWS))
        assert seeded.returncode == 0, seeded.stderr
        self.start_writers()

    def restart16(self, *changes):
        """ALTER SYSTEM with each of ``changes`` on 16 ("SET x = 1", "RESET y"), then a restart by the server
        module (the writers reconnect)."""
        self.psql("; ".join("ALTER SYSTEM " + change for change in changes), bin_dir=PG16, dbname="postgres")
        path = str(self.tmp / "restart16.yml")
        with open(path, "w") as handle:
            handle.write("---\n- hosts: all\n  gather_facts: false\n  tasks:\n"
                         "    - fleetdb.online_upgrade.server: {data_dir: %s, bin_dir: %s, state: restarted}\n"
                         % (OLD_DATA, PG16))
        self.ok(path)

    # -- the application ------------------------------------------------------------------
    def proof(self, *args, timeout=120):
        return subprocess.run([sys.executable, PROOF, "--port", str(self.client_port)] + list(args),
                              env=dict(os.environ, PGPASSWORD=APP_PASSWORD), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def start_writers(self):
        self.load = subprocess.Popen([sys.executable, PROOF, "--port", str(self.client_port), "load", "--writers", "4",
                                      "--rate", "50", "--duration", "1500", "--log-dir", self.load_dir],
                                     env=dict(os.environ, PGPASSWORD=APP_PASSWORD), start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)

    def acknowledged(self):
        total = 0
        for name in glob.glob(os.path.join(self.load_dir, "writer-*.log")):
            with open(name) as log:
                total += sum(1 for line in log if line.strip() and not line.startswith("#"))
        return total

    def stop_and_verify(self, version="18"):
        if self.load is not None:
            stopped = self.proof("stop", "--log-dir", self.load_dir)
            assert stopped.returncode == 0, stopped.stderr
            self.load.wait(timeout=60)
            self.load = None
        verified = self.proof("verify", "--log-dir", self.load_dir, "--json")
        assert verified.stdout, verified.stderr
        report = json.loads(verified.stdout)
        print("proof:", verified.stdout)
        assert report["acknowledged"] > 100, report
        assert report["lost"] == 0 and report["duplicated"] == 0 and report["out_of_order_ids"] == 0, report
        assert report["ok"] and report["server_version"].startswith(version), report
        return report

    def close(self):
        if self.load is not None and self.load.poll() is None:
            try:
                os.killpg(self.load.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        remove_host(self.host)


def changed_count(output):
    counts = [int(n) for n in re.findall(r"\bchanged=(\d+)", output.split("PLAY RECAP")[-1])]
    assert counts, output[-3000:]
    return sum(counts)


def wait_for(what, predicate, timeout=180, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail("timed out waiting for %s" % what)


def slots(flow, port=5432, bin_dir=PG18):
    return flow.psql("SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots",
                     port=port, bin_dir=bin_dir)


PORTS = list(range(int(os.environ.get("FLOWS_PORT_BASE", "15701")), 15721))


@pytest.fixture
def flow(tmp_path):
    made = Flow(tmp_path, PORTS.pop(0))
    yield made
    if os.environ.get("FLOWS_KEEP"):  # debugging: leave the host for a look
        print("kept", made.host.name)
        made.host = type(made.host)("--keep--")
    made.close()


@pytest.fixture(scope="module")
def shared():
    """Hosts that outlive one test: test 2 (finalize) goes on with the host test 4 upgraded."""
    flows = {}
    yield flows
    for name, made in flows.items():
        if name != "upgraded":
            if os.environ.get("FLOWS_KEEP"):
                print("kept", made.host.name)
                made.host = type(made.host)("--keep--")
            made.close()


# -- 1 ----------------------------------------------------------------------------------------
def test_rollback_after_the_cutover_keeps_every_write_18_accepted(flow):
    flow.prepare_16()
    flow.ok("upgrade.yml")
    assert flow.psql("SHOW server_version").startswith("18")
    assert slots(flow) == "fleetdb_rollback"
    # the writers keep going on 18: these writes exist only there until the rollback replays them
    before = flow.acknowledged()
    wait_for("writes on 18", lambda: flow.acknowledged() > before + 200, timeout=60)
    rows_on_18 = int(flow.psql("SELECT count(*) FROM proof.writes"))
    flow.ok("rollback.yml")
    assert flow.psql("SHOW server_version", bin_dir=PG16).startswith("16")
    assert flow.host.run("test -e %s/postmaster.pid" % NEW_DATA).returncode != 0, "18 still runs"
    assert int(flow.psql("SELECT count(*) FROM proof.writes", bin_dir=PG16)) >= rows_on_18
    # the fence is gone from 16 (the writers reconnect as app), no subscription is left there
    assert "fleetdb.online_upgrade fence" not in flow.sh("cat %s/pg_hba.conf" % OLD_DATA)
    assert flow.psql("SELECT count(*) FROM pg_subscription", bin_dir=PG16) == "0"
    # the reverse cutover made no rollback slot of its own, and the one on 18 is gone with its subscription
    assert slots(flow, bin_dir=PG16) == ""
    assert flow.sh("ls -A %s/pg_replslot" % NEW_DATA).strip() == ""
    wait_for("writes on 16 again", lambda: int(flow.psql("SELECT count(*) FROM proof.writes", bin_dir=PG16))
             > rows_on_18 + 100, timeout=60)
    flow.stop_and_verify("16")


# -- 3 ----------------------------------------------------------------------------------------
def test_dump_restore_method_loses_no_acknowledged_write(flow):
    flow.prepare_16()
    flow.ok("upgrade.yml", "-e", "online_upgrade_method=dump_restore")
    assert flow.psql("SHOW server_version").startswith("18")
    assert flow.host.run("test -e %s/postmaster.pid" % OLD_DATA).returncode != 0, "16 still runs"
    assert int(flow.psql("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                         "'fleetdb_upgrade_record'")) >= 1
    assert int(flow.psql("SELECT count(*) FROM app.events")) == ROWS
    assert flow.state().get("phase") == "done"
    # writers get back in on 18 (the fence never reached the app role there)
    before = flow.acknowledged()
    wait_for("writes on 18", lambda: flow.acknowledged() > before + 100, timeout=60)
    again = flow.ok("upgrade.yml", "-e", "online_upgrade_method=dump_restore")
    assert changed_count(again) == 0, again[-3000:]
    rc, out = flow.playbook("rollback.yml")
    assert rc != 0 and "upgraded with online_upgrade_method=dump_restore" in out, out[-3000:]
    report = flow.stop_and_verify("18")
    assert report["failed_attempts"] > 0, report  # the outage was seen by the writers


# -- 4 ----------------------------------------------------------------------------------------
def test_resume_after_the_controller_is_killed(shared, tmp_path):
    flow = shared["resume"] = Flow(tmp_path, PORTS.pop(0))
    flow.prepare_16()
    # killed during step 1: the new instance is being created (its data directory appears)
    run = flow.start_playbook("upgrade.yml")
    wait_for("the new instance", lambda: run.poll() is not None or
             flow.host.run("test -e %s/PG_VERSION" % NEW_DATA).returncode == 0, timeout=300, interval=0.05)
    assert run.poll() is None, "the playbook ended before step 1"
    flow.kill_playbook(run)
    flow.wait_modules_done()
    # killed during the initial copy: the subscription exists on the new server (temporary port 15432)
    run = flow.start_playbook("upgrade.yml")
    wait_for("the subscription", lambda: run.poll() is not None or
             flow.try_psql("SELECT count(*) FROM pg_subscription", 15432) == "1", timeout=300)
    assert run.poll() is None, "the playbook ended before the copy"
    flow.kill_playbook(run)
    flow.wait_modules_done()
    # killed around the switchover: poll the state file until the cutover began
    run = flow.start_playbook("upgrade.yml")
    hit = wait_for("the cutover", lambda: run.poll() is not None and "exited" or
                   flow.state().get("phase") not in (None, "none", "aborted") and flow.state().get("phase"),
                   timeout=300, interval=0.05)
    flow.kill_playbook(run)
    print("second run killed at phase", hit)
    # the module on the host goes on and finishes its phase (docs/procedure.md): let it
    flow.wait_modules_done()
    flow.ok("upgrade.yml")
    assert flow.psql("SHOW server_version").startswith("18")
    assert slots(flow) == "fleetdb_rollback"
    assert flow.psql("SELECT count(*) FROM pg_subscription") == "0"
    third = flow.ok("upgrade.yml")
    assert changed_count(third) == 0, third[-3000:]
    flow.stop_and_verify("18")
    assert flow.sh("ls -A %s/pg_replslot" % OLD_DATA).strip() == "", "a slot keeps WAL on 16"
    shared["upgraded"] = flow


# -- 2 ----------------------------------------------------------------------------------------
def test_finalize_removes_the_old_release_and_refuses_rollback_afterwards(shared, tmp_path):
    # the host test 4 upgraded (writers stopped, every write verified), or a fresh one when run alone
    flow = shared.get("upgraded")
    if flow is None:
        flow = shared["finalize"] = Flow(tmp_path, PORTS.pop(0))
        flow.prepare_16()
        flow.ok("upgrade.yml")
    first = flow.ok("finalize.yml")
    assert changed_count(first) > 0
    assert flow.host.run("test -e %s" % OLD_DATA).returncode != 0, "the old data directory is still there"
    assert flow.psql("SELECT count(*) FROM pg_replication_slots") == "0"
    assert flow.psql("SELECT count(*) FROM pg_publication") == "0"
    rc, out = flow.playbook("rollback.yml")
    assert rc != 0 and "After finalize the old data directory is gone" in out, out[-3000:]
    again = flow.ok("finalize.yml")
    assert changed_count(again) == 0, again[-3000:]
    asked = ("-e", "online_upgrade_finalize_remove_old_binaries=true")
    removed = flow.ok("finalize.yml", *asked)
    assert changed_count(removed) == 1, removed[-3000:]
    assert flow.host.run("test -e %s" % os.path.dirname(PG16)).returncode != 0, "16's binaries are still there"
    assert changed_count(flow.ok("finalize.yml", *asked)) == 0
    flow.stop_and_verify("18")


# -- 5 ----------------------------------------------------------------------------------------
def test_old_postmaster_killed_during_the_copy_then_rerun(flow):
    flow.prepare_16()
    run = flow.start_playbook("upgrade.yml")
    wait_for("the initial copy", lambda: run.poll() is not None or
             flow.try_psql("SELECT count(*) FROM pg_subscription", 15432) == "1", timeout=300)
    pid = flow.sh("head -1 %s/postmaster.pid" % OLD_DATA).strip()
    flow.sh("kill -9 %s" % pid)
    run.wait(timeout=600)
    assert run.returncode != 0, "the playbook did not notice the old server died"
    # the operator brings 16 back, as it was (once the orphaned backends are gone), then re-runs the upgrade
    start16 = str(flow.tmp / "start16.yml")
    with open(start16, "w") as handle:
        handle.write("---\n- hosts: all\n  gather_facts: false\n  tasks:\n"
                     "    - fleetdb.online_upgrade.server: {data_dir: %s, bin_dir: %s, state: started}\n"
                     % (OLD_DATA, PG16))
    wait_for("16 to start again", lambda: flow.playbook(start16)[0] == 0, timeout=120, interval=2)
    flow.ok("upgrade.yml")
    assert flow.psql("SHOW server_version").startswith("18")
    assert flow.psql("SELECT count(*) FROM pg_subscription") == "0"
    flow.stop_and_verify("18")
    # nothing keeps WAL on 16: no slot in its (stopped) data directory
    assert flow.host.run("test -e %s/postmaster.pid" % OLD_DATA).returncode != 0, "16 still runs"
    assert flow.sh("ls -A %s/pg_replslot" % OLD_DATA).strip() == ""


def test_new_postmaster_killed_during_catch_up_then_rerun(flow):
    """The new server dies while it is copying and catching up; the operator only re-runs the playbook,
    which starts it again on its temporary port and continues from the slot."""
    flow.prepare_16()
    run = flow.start_playbook("upgrade.yml")
    wait_for("the initial copy", lambda: run.poll() is not None or
             flow.try_psql("SELECT count(*) FROM pg_subscription", 15432) == "1", timeout=300)
    pid = flow.sh("head -1 %s/postmaster.pid" % NEW_DATA).strip()
    flow.sh("kill -9 %s" % pid)
    run.wait(timeout=600)
    assert run.returncode != 0, "the playbook did not notice the new server died"
    assert flow.psql("SHOW server_version", bin_dir=PG16).startswith("16"), "16 must keep serving"
    flow.ok("upgrade.yml")
    assert flow.psql("SHOW server_version").startswith("18")
    assert flow.psql("SELECT count(*) FROM pg_subscription") == "0"
    flow.stop_and_verify("18")
    assert flow.sh("ls -A %s/pg_replslot" % OLD_DATA).strip() == ""


def test_an_autovacuum_analyze_inside_the_window_is_told_apart_from_a_write(flow):
    """Autovacuum workers log in through no pg_hba.conf: the fence cannot keep one from starting inside the window,
    and its ANALYZE takes a transaction id, which pg_control then shows past the drain.  Made certain here
    (a one-second naptime, the writers' table analyzed after any change, the window held 5 s after the drain): the
    stopped old server's WAL shows that id wrote statistics only, so the proof holds and the cutover completes,
    every acknowledged write on 18."""
    flow.prepare_16()
    flow.restart16("SET autovacuum_naptime = '1s'")
    flow.psql("ALTER TABLE proof.writes SET (autovacuum_analyze_threshold = 0, autovacuum_analyze_scale_factor = 0)",
              bin_dir=PG16)
    flow.sh("mkdir -p %s && echo 'detach 5' > %s/failpoint" % (os.path.dirname(STATE), os.path.dirname(STATE)))
    flow.ok("upgrade.yml")
    state = flow.state()
    assert state.get("failpoint_reached") == "detach", state
    assert state["statistics_xids"] >= 1, "no ANALYZE ran inside the window: the test proved nothing (%s)" % state
    assert flow.psql("SHOW server_version").startswith("18")
    flow.stop_and_verify("18")
