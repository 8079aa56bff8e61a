"""The cutover's promise, attacked: every write the old server acknowledged is on the new server exactly once,
or the cutover aborted and the old server keeps serving with all of them.

Real PostgreSQL 16 -> 18 upgrades through playbooks/upgrade.yml (the Flow of test_upgrade_flows.py), writers
running throughout, the proof of tools/fleetdb_proof.py at the end.  Three hosts:

  writers  (class TestWritersHost, one upgrade shared by its tests) databases app and app2,
           max_prepared_transactions > 0, log_statement = all on both servers, the TCP proof writers and
           one superuser writer per database over the Unix socket (OS user postgres, peer), as fast as it can:
    3. a prepared transaction open at cutover time: the upgrade refuses naming its gid, nothing changes;
       after COMMIT PREPARED the re-run (the upgrade the other tests of the class look at) carries its row
    1. the socket writer in app loses nothing
    2. the socket writer in app2 loses nothing
    6. no password, SCRAM verifier or md5 hash in either server's log or in any -vvv output, with passwords
       changed on the old server after the replication started (the cutover's roles phase copies them)
  storm    5. the new server (max_connections = 15) flooded at its start by 60 reconnecting TCP clients
              (20 of them superusers, so even the reserved slots are taken): nothing acknowledged is lost, and
              a new server that served writes is never killed
  kills    4. the module killed with SIGKILL at fence, drain, sequences, detach, stop, start (failpoint file);
              the fence lifted within seconds while the old server still runs; a plain re-run completes,
              nothing lost, no slot left.
The storm and kills hosts do their whole work in threads from the module's start (seven playbook runs for the
kills, mostly waiting on Ansible's round trips); their tests collect the outcome.

Ports: CUTOVER_PORT_BASE (default 25100) and the next two.  CUTOVER_KEEP=1 leaves the hosts for a look.
"""
import json
import os
import shlex
import subprocess
import sys
import threading
import time

import pytest

from conftest import PGWIRE_FILES, ROOT
from test_upgrade_flows import (APP_PASSWORD, NEW_DATA, OLD_DATA, PG16, PG18, PREPARE, PROOF, STATE, Flow, dist,
                                wait_for)

PORT_BASE = int(os.environ.get("CUTOVER_PORT_BASE", "25100"))
WORK = "/var/lib/fleetdb/online_upgrade"
FAILPOINT = WORK + "/failpoint"
SOCK = "/var/run/postgresql"
TOOL = "/opt/fleetdb-proof/tools/fleetdb_proof.py"   # the proof tool inside a host, run as postgres
REPL_PW = "repl-flows-pw"                              # the Flow inventory's online_upgrade_replication_password
TEMP_PORT = 15432                                      # online_upgrade_temporary_port for port 5432
OLD_PORT_AFTER = 5433
ROWS = 20000                                           # app.events rows of the writers host
SMALL_ROWS = 5000                                      # and of the storm and kills hosts


def _load_proof_module():
    import importlib.util  # pylint: disable=import-outside-toplevel
    spec = importlib.util.spec_from_file_location("fleetdb_proof_tool", PROOF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROOF_SCHEMA = _load_proof_module().SCHEMA


# -- helpers: a host, writers inside it, the state file ------------------------------------------------------------

class CutoverFlow(Flow):
    """A Flow with extra inventory variables, extra settings for 16, and every playbook output kept."""

    def __init__(self, tmp_path, client_port, inventory_vars=None):
        super().__init__(tmp_path, client_port)
        self.outputs = []   # output of every run of the collection's playbooks
        self.notes = []     # what a test running in the background has to say
        with open(self.inventory, "a") as handle:
            for name, value in (inventory_vars or {}).items():
                handle.write("%s=%s\n" % (name, json.dumps(value)))

    def playbook(self, name, *extra, timeout=600):
        rc, out = super().playbook(name, *extra, timeout=timeout)
        if not os.path.isabs(name):  # the collection's playbooks, not the test's own prepare.yml
            self.outputs.append(out)
        return rc, out

    def prepare(self, rows, old_settings=None, writers=True):
        """16 on 5432 (PREPARE of test_upgrade_flows plus ``old_settings``), seeded, the TCP proof writers."""
        text = PREPARE % dict(tarball=dist("16"), data=OLD_DATA, bin=PG16, pw=APP_PASSWORD, locale="C.UTF-8")
        if old_settings:
            anchor = "max_connections: 100}"
            assert anchor in text, "PREPARE of test_upgrade_flows changed: adapt CutoverFlow.prepare"
            text = text.replace(anchor, "max_connections: 100, %s}" % ", ".join(
                "%s: %s" % (k, json.dumps(v)) for k, v in old_settings.items()))
        path = str(self.tmp / "prepare.yml")
        with open(path, "w") as handle:
            handle.write(text)
        self.ok(path)
        seeded = self.proof("seed", "--rows", str(rows))
        assert seeded.returncode == 0, seeded.stderr
        if writers:
            self.start_writers()

    def sql(self, sql, port=5432, bin_dir=PG16, dbname="app"):
        return self.psql(sql, port=port, bin_dir=bin_dir, dbname=dbname)

    def quiet_sql(self, *statements, port=5432, bin_dir=PG16, dbname="postgres"):
        """Statements that carry a password, in one session with log_statement off (the test's own secrets
        must not reach the log whose cleanliness test 6 checks)."""
        argv = ["runuser", "-u", "postgres", "--", "%s/psql" % bin_dir, "-h", SOCK, "-p", str(port), "-d", dbname,
                "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", "SET log_statement = 'none'"]
        for statement in statements:
            argv += ["-c", statement]
        return self.sh(" ".join(shlex.quote(a) for a in argv))

    def serving_version(self):
        """Major version serving port 5432 (over the socket, as postgres), or None."""
        for bin_dir in (PG18, PG16):
            version = self.try_psql("SHOW server_version_num", 5432, bin_dir=bin_dir, dbname="postgres")
            if version:
                return version[:2]
        return None

    def postmaster(self, data_dir):
        """(pid, port) of the postmaster of ``data_dir`` if it runs (its pid file names a live process started
        with that data directory: not a stale file whose pid went to someone else), else None."""
        proc = self.host.run("f=%s/postmaster.pid; test -f $f && tr '\\0' ' ' < /proc/$(head -1 $f)/cmdline "
                             "| grep -qF -- '-D %s' && sed -n '1p;4p' $f" % (data_dir, data_dir))
        lines = proc.stdout.split()
        return (int(lines[0]), int(lines[1])) if proc.returncode == 0 and len(lines) == 2 else None

    def read_state(self):
        try:
            return self.state()
        except ValueError:  # caught mid-write
            return {}

    def failpoint(self, phase):
        if phase:
            self.sh("mkdir -p %s && echo %s > %s" % (WORK, phase, FAILPOINT))
        else:
            self.sh("rm -f %s" % FAILPOINT)

    def new_slots(self):
        out = self.sql("SELECT slot_name FROM pg_replication_slots ORDER BY 1", bin_dir=PG18)
        return out.split()

    def install_proof_tool(self):
        """The proof tool (and the wire client it loads) inside the host, for writers on the Unix socket."""
        self.sh("mkdir -p /opt/fleetdb-proof/tools /opt/fleetdb-proof/plugins/module_utils/postgres")
        self.host.copy_in(PROOF, TOOL)
        for name in PGWIRE_FILES:
            self.host.copy_in(os.path.join(ROOT, "plugins", "module_utils", "postgres", name),
                              "/opt/fleetdb-proof/plugins/module_utils/postgres/" + name)
        self.sh("chmod -R a+rX /opt/fleetdb-proof")


def keep_or_close(flow):
    if os.environ.get("CUTOVER_KEEP"):
        print("kept", flow.host.name)
        flow.host = type(flow.host)("--keep--")
    flow.close()


class Background:
    """Work on a host in a thread, from the module's start, while the tests before its own run (a playbook
    run is mostly waiting on Ansible's round trips); ``join()`` raises the work's failure."""

    def __init__(self, flow, work):
        self.flow, self.error, self.closed = flow, None, False
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work):
        try:
            work(self.flow)
        except BaseException as exc:  # pylint: disable=broad-except  # pytest.fail too: re-raised by join()
            self.error = exc

    def join(self, timeout=1500):
        self._thread.join(timeout=timeout)
        assert not self._thread.is_alive(), "the background work on %s did not end in %d s" % (
            self.flow.host.name, timeout)
        if self.error is not None:
            raise self.error

    def close(self):
        if not self.closed:
            self._thread.join(timeout=1500)
            self.closed = True
            keep_or_close(self.flow)


# A word of a test's name -> (make its host, the work done on the host in the background)
IN_BACKGROUND = {}


@pytest.fixture(scope="module", autouse=True)
def background(request, tmp_path_factory):
    names = [item.name for item in request.session.items if getattr(item, "module", None) is request.module]
    jobs = {}
    try:
        for word, (make, work) in IN_BACKGROUND.items():
            if any(word in name for name in names):
                jobs[word] = Background(make(tmp_path_factory.mktemp(word)), work)
        yield jobs
    finally:
        for job in jobs.values():
            job.close()


@pytest.fixture
def background_job(request, background, tmp_path):
    """The background job of the requesting test (the word of its name it is registered by)."""
    word = next((w for w in IN_BACKGROUND if w in request.node.name), None)
    assert word, "%s is registered in IN_BACKGROUND by no word of its name" % request.node.name
    if word not in background:
        make, work = IN_BACKGROUND[word]
        background[word] = Background(make(tmp_path), work)
    job = background[word]
    try:
        yield job
    finally:
        job.close()


class SocketWriter:
    """tools/fleetdb_proof.py load inside the host as the OS user postgres (a superuser through peer
    authentication) over the Unix socket: one persistent session writing as fast as it can, reconnecting
    after every error, each write logged only after its COMMIT returned."""

    def __init__(self, flow, name, dbname, first_writer, retry_delay=0.02):
        self.flow, self.dbname, self.first_writer, self.retry_delay = flow, dbname, first_writer, retry_delay
        self.log_dir = "/var/tmp/proof-%s" % name
        self.report = None

    def _tool(self, *args):
        return "runuser -u postgres -- python3 %s --host %s --port 5432 --user postgres --dbname %s %s" % (
            TOOL, SOCK, self.dbname, " ".join(args))

    def start(self):
        self.flow.sh("install -d -o postgres -m 0755 %s" % self.log_dir)
        self.flow.sh("nohup %s > %s.out 2>&1 &" % (self._tool(
            "load", "--writers", "1", "--first-writer", str(self.first_writer), "--rate", "0",
            "--retry-delay", str(self.retry_delay), "--log-dir", self.log_dir), self.log_dir))

    def acknowledged(self):
        out = self.flow.host.run("grep -hvc '^#' %s/writer-*.log" % self.log_dir).stdout.split()
        return sum(int(n) for n in out) if out else 0

    def finish(self):
        """Stop the writer (once) and prove its writes against whatever serves port 5432 now."""
        if self.report is None:
            self.flow.sh(self._tool("stop", "--log-dir", self.log_dir))
            proc = self.flow.host.run(self._tool("verify", "--log-dir", self.log_dir, "--json"))
            assert proc.stdout.strip(), "verify of %s gave no report: %s" % (self.log_dir, proc.stderr)
            self.report = json.loads(proc.stdout)
            print("socket writer in %s:" % self.dbname, proc.stdout.strip())
        return self.report


def assert_proof(report, what):
    assert report["lost"] == 0, "%s: %d of %d acknowledged writes are missing (writer, seq_no): %s" % (
        what, report["lost"], report["acknowledged"], report["lost_examples"])
    assert report["duplicated"] == 0 and report["out_of_order_ids"] == 0 and report["ok"], (what, report)


def tcp_report(flow, log_dir=None):
    """The proof (as app, over TCP) for a load of TCP writers: the Flow's own, or the one in ``log_dir``."""
    proc = flow.proof("verify", "--log-dir", log_dir or flow.load_dir, "--json")
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def stop_tcp_load(flow, proc, log_dir):
    if proc is not None and proc.poll() is None:
        stopped = flow.proof("stop", "--log-dir", log_dir)
        assert stopped.returncode == 0, stopped.stderr
        proc.wait(timeout=60)


def start_tcp_load(flow, log_dir, writers, first_writer, rate, retry_delay, user="app", password=APP_PASSWORD):
    return subprocess.Popen([sys.executable, PROOF, "--port", str(flow.client_port), "--user", user,
                             "--password", password, "load", "--writers", str(writers),
                             "--first-writer", str(first_writer), "--rate", str(rate), "--retry-delay",
                             str(retry_delay), "--log-dir", log_dir],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def authid(flow, port=5432, bin_dir=PG16):
    """{role: password hash} of the roles that have one."""
    out = flow.sql("SELECT rolname, rolpassword FROM pg_authid WHERE rolpassword IS NOT NULL ORDER BY 1",
                   port=port, bin_dir=bin_dir, dbname="postgres")
    return dict(line.split("\t", 1) for line in out.splitlines() if line.strip())


# == the writers host (tests 3, 1, 2, 6) ===========================================================================

OTHER_PW = ("other-Before-3c1d", "other-After-8e2f")     # scram-sha-256, changed after the replication started
LEGACY_PW = ("legacy-Before-5a7b", "legacy-After-0d94")  # md5, the same
SECRETS = (APP_PASSWORD, REPL_PW) + OTHER_PW + LEGACY_PW


class WritersHost:
    """The state of the writers host the tests of TestWritersHost share."""

    def __init__(self, flow):
        self.flow = flow
        self.upgrade_result = None     # (rc, output) of the upgrade.yml run that did (or refused) the cutover
        self.hashes = {}               # every password hash any role had on the old server
        self.socket = {}               # dbname -> SocketWriter
        self.module_outputs = []

    def upgrade(self):
        """The upgrade the tests of the class look at (run once)."""
        if self.upgrade_result is None:
            # a prepared transaction test 3 left behind (it failed half-way) would stop this run as well
            for gid, dbname in (line.split("\t") for line in self.flow.sql(
                    "SELECT gid, database FROM pg_prepared_xacts", dbname="postgres").splitlines()):
                self.flow.sql("COMMIT PREPARED '%s'" % gid, dbname=dbname)
            self.upgrade_result = self.flow.playbook("upgrade.yml", "-vvv")
        return self.upgrade_result


@pytest.fixture(scope="class")
def writers_host(tmp_path_factory):
    flow = CutoverFlow(tmp_path_factory.mktemp("writers"), PORT_BASE, inventory_vars=dict(
        online_upgrade_databases=["app", "app2"], online_upgrade_new_settings={"log_statement": "all"}))
    shared = WritersHost(flow)
    try:
        flow.prepare(ROWS, old_settings={"max_prepared_transactions": 4})
        flow.quiet_sql("CREATE ROLE other LOGIN PASSWORD '%s'" % OTHER_PW[0],
                       "SET password_encryption = 'md5'",
                       "CREATE ROLE legacy LOGIN PASSWORD '%s'" % LEGACY_PW[0],
                       "CREATE DATABASE app2 OWNER app")
        flow.sql(PROOF_SCHEMA, dbname="app2")
        # log_statement = all from here on, on the old server (postgresql.auto.conf, which the new one inherits)
        flow.sql("ALTER SYSTEM SET log_statement = 'all'; SELECT pg_reload_conf()", dbname="postgres")
        shared.hashes.update(("%s-before" % k, v) for k, v in authid(flow).items())
        # steps 1 and 2 only: the replication runs, the cutover has not started
        flow.ok("upgrade.yml", "-vvv", "--skip-tags", "cutover,retire")
        flow.quiet_sql("ALTER ROLE other PASSWORD '%s'" % OTHER_PW[1], "SET password_encryption = 'md5'",
                       "ALTER ROLE legacy PASSWORD '%s'" % LEGACY_PW[1])
        shared.hashes.update(("%s-after" % k, v) for k, v in authid(flow).items())
        assert shared.hashes["other-before"] != shared.hashes["other-after"]
        assert shared.hashes["legacy-after"].startswith("md5"), shared.hashes
        flow.install_proof_tool()
        for dbname, first in (("app", 101), ("app2", 201)):
            shared.socket[dbname] = SocketWriter(flow, "socket-" + dbname, dbname, first)
            shared.socket[dbname].start()
        for writer in shared.socket.values():
            wait_for("the socket writer in %s" % writer.dbname, lambda w=writer: w.acknowledged() > 200, timeout=60)
        yield shared
    finally:
        keep_or_close(flow)


def switchover_args(databases):
    """The switchover module's arguments as roles/online_upgrade/tasks/cutover.yml passes them for a Flow host."""
    def instance(data_dir, bin_dir, port):
        return dict(data_dir=data_dir, bin_dir=bin_dir, owner="postgres", socket_dir=SOCK, port=port)
    return dict(old=instance(OLD_DATA, PG16, 5432), new=instance(NEW_DATA, PG18, TEMP_PORT),
                databases=list(databases), old_port_after=OLD_PORT_AFTER, drain_timeout=30,
                state_file=STATE)


class TestWritersHost:

    # -- 3 ----------------------------------------------------------------------------------------------------------
    def test_a_prepared_transaction_makes_the_upgrade_refuse_and_its_row_survives_the_rerun(
            self, writers_host, run_module):
        shared = writers_host
        flow = shared.flow
        if shared.upgrade_result is not None:
            pytest.fail("the upgrade already ran before this test")
        gid = "fleetdb-test-pending-%d" % os.getpid()
        flow.sql("BEGIN; INSERT INTO app.events (kind, body) VALUES ('%s', '{}'); PREPARE TRANSACTION '%s'"
                 % (gid, gid))
        assert flow.sql("SELECT gid FROM pg_prepared_xacts", dbname="postgres") == gid
        postmaster = flow.postmaster(OLD_DATA)
        hba = flow.sh("cat %s/pg_hba.conf" % OLD_DATA)
        acked = flow.acknowledged()

        rc, out = flow.playbook("upgrade.yml", "-vvv")
        if rc == 0:
            shared.upgrade_result = (rc, out)  # the cutover ran: the tests after this one look at it
            pytest.fail("upgrade.yml switched to %s with prepared transaction %s open on the old server: the "
                        "transaction is stranded in the stopped old data directory, its row is not on the new "
                        "server (%s rows)" % (flow.serving_version(), gid, flow.sql(
                            "SELECT count(*) FROM app.events WHERE kind = '%s'" % gid, bin_dir=PG18)))
        assert gid in out, "the refusal does not name the prepared transaction %s:\n%s" % (gid, out[-4000:])
        # nothing changed: the same old postmaster serves, unfenced, replication still attached
        assert flow.read_state().get("phase") in (None, "aborted"), flow.read_state()
        assert flow.postmaster(OLD_DATA) == postmaster
        assert flow.sh("cat %s/pg_hba.conf" % OLD_DATA) == hba
        assert flow.serving_version() == "16"
        assert flow.try_psql("SELECT string_agg(subenabled::text, ',') FROM pg_subscription",
                             TEMP_PORT) == "true,true", "the subscriptions are no longer enabled"
        wait_for("the TCP writers to keep writing to 16", lambda: flow.acknowledged() > acked + 100, timeout=30)
        # the module on its own refuses too (a transaction prepared after preflight)
        refused = run_module(flow.host, "fleetdb.online_upgrade.switchover", switchover_args(["app", "app2"]),
                             verbosity=3)
        shared.module_outputs.append(refused.pop("_output", "") + repr(refused))
        assert refused.get("failed") and gid in refused.get("msg", ""), refused
        assert flow.serving_version() == "16" and flow.postmaster(OLD_DATA) == postmaster
        assert flow.sh("cat %s/pg_hba.conf" % OLD_DATA) == hba

        flow.sql("COMMIT PREPARED '%s'" % gid)
        rc, out = shared.upgrade()
        assert rc == 0, "the re-run after COMMIT PREPARED failed (rc=%d):\n%s" % (rc, out[-6000:])
        assert flow.serving_version() == "18"
        assert flow.sql("SELECT count(*) FROM app.events WHERE kind = '%s'" % gid, bin_dir=PG18) == "1"

    # -- 1 ----------------------------------------------------------------------------------------------------------
    def _socket_writer_kept_everything(self, shared, dbname):
        flow = shared.flow
        rc, out = shared.upgrade()
        report = shared.socket[dbname].finish()
        if rc == 0:
            assert flow.serving_version() == "18", out[-3000:]
            where = "the new server"
        else:
            # the only other outcome the promise allows: the cutover aborted, the old server serves them all
            phase = flow.read_state().get("phase")
            assert phase in ("aborted", "rescued"), "upgrade failed (rc=%d) in phase %s:\n%s" % (
                rc, phase, out[-4000:])
            assert flow.serving_version() == "16", "the cutover failed and 16 is not serving port 5432"
            where = "the old server after an aborted cutover"
        assert_proof(report, "superuser writer on the Unix socket in database %s, on %s" % (dbname, where))
        assert report["acknowledged"] > 1000, report
        if rc == 0:
            assert report["failed_attempts"] > 0, "the writer was never cut off: %s" % report
        # the TCP writers beside it lost nothing either
        tcp = tcp_report(flow)
        assert_proof(tcp, "TCP writers")

    def test_a_superuser_writer_on_the_unix_socket_loses_nothing(self, writers_host):
        self._socket_writer_kept_everything(writers_host, "app")

    # -- 2 ----------------------------------------------------------------------------------------------------------
    def test_a_superuser_writer_in_a_second_database_loses_nothing(self, writers_host):
        self._socket_writer_kept_everything(writers_host, "app2")

    # -- 6 ----------------------------------------------------------------------------------------------------------
    def test_no_password_or_password_hash_in_the_server_logs_or_the_verbose_output(self, writers_host):
        shared = writers_host
        flow = shared.flow
        rc, out = shared.upgrade()
        assert rc == 0, out[-4000:]
        assert flow.sql("SHOW log_statement", bin_dir=PG18) == "all"
        # the roles phase copied the changed passwords (so the statements that carry them did run)
        new_hashes = authid(flow, bin_dir=PG18)
        assert new_hashes.get("other") == shared.hashes["other-after"], "other's new password was not copied"
        assert new_hashes.get("legacy") == shared.hashes["legacy-after"], "legacy's new password was not copied"
        hashes = set(shared.hashes.values()) | set(new_hashes.values())
        secrets = dict((s, "a password") for s in SECRETS)
        secrets.update((h, "the password hash of %s" % ",".join(sorted(
            k for k, v in list(shared.hashes.items()) + list(new_hashes.items()) if v == h))) for h in hashes)
        logs = flow.sh("find /var/lib/fleetdb/postgresql -path '*/log/*' -type f").split()
        assert any("/16/" in p for p in logs) and any("/18/" in p for p in logs), logs
        # both servers logged every statement (the writers' ones, for a start)
        for major in ("16", "18"):
            assert flow.host.run("grep -qF 'statement: BEGIN; INSERT INTO proof.writes' %s" % " ".join(
                p for p in logs if "/%s/" % major in p)).returncode == 0, "%s logged no statement" % major
        assert all("ESTABLISH DOCKER CONNECTION" in text for text in flow.outputs), "not all outputs are -vvv"
        assert len(flow.outputs) >= 2, len(flow.outputs)
        found = []
        for secret, what in sorted(secrets.items()):
            hits = flow.host.run("grep -rlF -- %s %s" % (shlex.quote(secret), " ".join(logs))).stdout.split()
            found += ["%s in %s" % (what, path) for path in hits]
            for index, text in enumerate(flow.outputs + shared.module_outputs):
                if secret in text:
                    line = next(l for l in text.splitlines() if secret in l)
                    found.append("%s in the -vvv output of run %d: %s" % (what, index, line.strip()[:300]))
        assert not found, "secrets leaked:\n  " + "\n  ".join(found)


# == 5: the new server cannot take every client when it starts =====================================================

STORM_APP, STORM_ADMIN = 40, 20
ADMIN_PASSWORD = "dba-storm-pw"


def make_storm_host(tmp_path):
    return CutoverFlow(tmp_path, PORT_BASE + 2,
                       inventory_vars=dict(online_upgrade_new_settings={"max_connections": 15}))


def storm(flow):
    """40 application clients and 20 superuser clients (an admin pool, a monitoring agent) on TCP, each one
    persistent session, reconnecting 1-2 ms after every failure: more than max_connections = 15 of the new
    server, its reserved superuser slots included, when it starts on the production port.  The storm lasts
    15 s from the moment the new server holds the port."""
    flow.prepare(SMALL_ROWS, writers=False)
    flow.quiet_sql("CREATE ROLE dba SUPERUSER LOGIN PASSWORD '%s'" % ADMIN_PASSWORD)
    dirs = dict(app=str(flow.tmp / "storm-app"), dba=str(flow.tmp / "storm-dba"))
    loads = dict(app=start_tcp_load(flow, dirs["app"], STORM_APP, 1, 5, 0.002),
                 dba=start_tcp_load(flow, dirs["dba"], STORM_ADMIN, 101, 5, 0.001, "dba", ADMIN_PASSWORD))
    served = {}   # the first postmaster of the new data directory seen on port 5432
    done = threading.Event()

    def watch():
        while not done.is_set():
            postmaster = flow.postmaster(NEW_DATA)
            if postmaster and postmaster[1] == 5432 and "pid" not in served:
                served.update(pid=postmaster[0], at=time.monotonic())
            if "at" in served and time.monotonic() > served["at"] + 15:
                break
            time.sleep(0.2)
        for name, proc in loads.items():
            stop_tcp_load(flow, proc, dirs[name])
    try:
        wait_for("the storm clients", lambda: len(list(flow.tmp.glob("storm-*/writer-*.log"))) == STORM_APP + STORM_ADMIN,
                 timeout=60)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        rc, out = flow.playbook("upgrade.yml")
        watcher.join(timeout=60)
    finally:
        done.set()
        for name, proc in loads.items():
            stop_tcp_load(flow, proc, dirs[name])
    assert "pid" in served, "the new server never served port 5432 (rc=%d):\n%s" % (rc, out[-4000:])
    assert flow.host.run("grep -qE 'too many clients|connection slots are reserved' %s/log/*"
                         % NEW_DATA).returncode == 0, "the storm never exceeded max_connections"
    reports = dict((name, tcp_report(flow, dirs[name])) for name in dirs)
    alive = flow.postmaster(NEW_DATA)
    assert alive and alive[0] == served["pid"], (
        "the new server (postmaster %d) that served port 5432 was killed (rc=%d, state %s, now %s serves "
        "5432); the proof of the storm clients against what serves now: app %s, dba %s\n%s" % (
            served["pid"], rc, flow.read_state().get("phase"), flow.serving_version(),
            dict((k, reports["app"][k]) for k in ("lost", "acknowledged", "lost_examples")),
            dict((k, reports["dba"][k]) for k in ("lost", "acknowledged", "lost_examples")), out[-3000:]))
    if rc != 0:
        # failing is allowed, as long as the server that served writes is left serving: a re-run finishes
        flow.notes.append("first run failed (rc=%d, state %s), re-running" % (rc, flow.read_state().get("phase")))
        flow.ok("upgrade.yml")
        reports = dict((name, tcp_report(flow, dirs[name])) for name in dirs)
        alive = flow.postmaster(NEW_DATA)
        assert alive and alive[0] == served["pid"], "the re-run restarted the new server"
    assert flow.serving_version() == "18"
    assert flow.sql("SHOW max_connections", bin_dir=PG18) == "15"
    for name, report in reports.items():
        flow.notes.append("storm %s: %s" % (name, json.dumps(report)))
        assert_proof(report, "storm clients (%s)" % name)
        assert report["acknowledged"] > 100 and report["server_version"].startswith("18"), report


IN_BACKGROUND["storm"] = (make_storm_host, storm)


def test_a_reconnect_storm_on_a_new_server_with_few_connections_loses_nothing(background_job):
    try:
        background_job.join()
    finally:
        print("\n".join(background_job.flow.notes))


# == 4: the module killed at every phase (in the background from the module's start: 8 playbook runs) ============

KILL_PHASES = ("fence", "drain", "schema", "sequences", "detach", "stop", "start")
BEFORE_STOP = ("fence", "drain", "schema", "sequences", "detach")


def make_kills_host(tmp_path):
    return CutoverFlow(tmp_path, PORT_BASE + 1)


def kill_at_every_phase(flow):
    """Failpoint X, upgrade.yml in the background, state phase X, kill -9 the module's pid, failpoint at the next
    phase, the fence gone within seconds while the old server runs, the modules ended, the next run; at the end a
    plain run to completion."""
    flow.prepare(SMALL_ROWS)
    killed = set()
    for index, phase in enumerate(KILL_PHASES):
        flow.failpoint(phase)
        started = time.monotonic()
        run = flow.start_playbook("upgrade.yml")

        def reached(phase=phase, run=run):
            state = flow.read_state()
            if state.get("phase") == phase and state.get("pid") and int(state["pid"]) not in killed:
                return state
            return run.poll() is not None and "ended"
        hit = wait_for("the module to reach phase %s" % phase, reached, timeout=600, interval=0.05)
        if hit == "ended":
            log = sorted(flow.tmp.glob("upgrade.yml-*.log"))[-1].read_text()
            pytest.fail("run %d ended (rc=%s) without the module stopping at the failpoint %s; state %s:\n%s"
                        % (index + 1, run.returncode, phase, flow.read_state(), log[-4000:]))
        pid = int(hit["pid"])
        flow.sh("kill -9 %d" % pid)
        killed.add(pid)
        killed_at = time.monotonic()
        acked = flow.acknowledged()
        flow.failpoint(KILL_PHASES[index + 1] if index + 1 < len(KILL_PHASES) else None)
        run.wait(timeout=120)
        assert run.returncode != 0, "the playbook did not notice its module was killed at %s" % phase
        note = "run %d: killed at %s after %.1f s" % (index + 1, phase, killed_at - started)
        if phase in BEFORE_STOP:
            # the guardian lifts the fence: the old server takes writes again within seconds
            wait_for("writes to 16 after the kill at %s" % phase, lambda a=acked: flow.acknowledged() > a + 20,
                     timeout=15, interval=0.1)
            note += ", writes again %.2f s after the kill" % (time.monotonic() - killed_at)
            assert flow.serving_version() == "16", "after the kill at %s 16 does not serve" % phase
        flow.wait_modules_done()
        flow.notes.append(note)
    flow.failpoint(None)
    flow.ok("upgrade.yml")
    assert flow.serving_version() == "18"
    assert flow.read_state().get("phase") == "done", flow.read_state()
    flow.notes.append("proof: %s" % flow.stop_and_verify("18"))
    assert flow.postmaster(OLD_DATA) is None, "16 still runs"
    assert flow.sh("ls -A %s/pg_replslot" % OLD_DATA).strip() == "", "a slot keeps WAL on the old data directory"
    slots = flow.new_slots()
    assert slots and all(s.startswith("fleetdb_rollback") for s in slots), slots


IN_BACKGROUND["killed"] = (make_kills_host, kill_at_every_phase)


def test_the_module_killed_at_every_phase_then_a_plain_rerun_completes(background_job):
    try:
        background_job.join()
    finally:
        print("\n".join(background_job.flow.notes))
