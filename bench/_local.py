"""Throw-away PostgreSQL clusters on this host for the benchmarks (no Ansible, no Docker).

The collection's module_utils are driven directly with a tiny stand-in for AnsibleModule,
as bench/initial_copy.py does.  Servers run as the ``postgres`` OS user when we are root,
on a Unix socket in the work directory and on TCP 127.0.0.1.
"""
import glob
import os
import shutil
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "unit"))
import conftest  # noqa: E402,F401 pylint: disable=unused-import

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (  # noqa: E402
    release_environment)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import InstanceSpec  # noqa: E402
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.host import LocalHost  # noqa: E402
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect  # noqa: E402

OWNER = "postgres" if os.geteuid() == 0 else None
PROOF = os.path.join(ROOT, "tools", "fleetdb_proof.py")
APP_PASSWORD = "bench-app"


class Module(LocalHost):
    """The host as module_utils see it (core/host.py), printing warnings as they come."""

    def warn(self, msg):
        print("warning:", msg, file=sys.stderr)


def run(argv, cwd=None, check=True):
    """Run a release's program as the cluster owner, with the release's libraries on LD_LIBRARY_PATH."""
    env = dict(os.environ, LC_ALL="C", **release_environment(argv[0]))
    argv = (["runuser", "-u", OWNER, "--"] if OWNER else []) + list(argv)
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (rc=%d): %s" % (
            " ".join(argv), proc.returncode, (proc.stderr or proc.stdout)[-3000:]))
    return proc


def chown(path):
    if OWNER:
        shutil.chown(path, OWNER, OWNER)


def unpack(dist, major, work):
    """bin directory of release ``major`` unpacked from the cached tarball into ``work``."""
    found = glob.glob(os.path.join(work, "postgresql-%s.*" % major, "bin"))
    if found:
        return found[0]
    archive = glob.glob(os.path.join(dist, "postgresql-%s.*.tar.gz" % major))[0]
    with tarfile.open(archive) as tar:
        tar.extractall(work)
    return glob.glob(os.path.join(work, "postgresql-%s.*" % major, "bin"))[0]


def version(bin_dir):
    return run([os.path.join(bin_dir, "postgres"), "--version"]).stdout.split()[-1]


class Cluster:
    """One data directory served by one release; ``port`` is the port it is configured for."""

    def __init__(self, work, bin_dir, name, port):
        self.work = work
        self.bin_dir = bin_dir
        self.data = os.path.join(work, name)
        self.log = os.path.join(work, name + ".log")
        self.sock = os.path.join(work, "sock")
        self.port = port
        if not os.path.isdir(self.sock):
            os.makedirs(self.sock)
            chown(self.sock)

    def tool(self, name):
        return os.path.join(self.bin_dir, name)

    def spec(self, port=None):
        return InstanceSpec(data_dir=self.data, bin_dir=self.bin_dir, owner=OWNER or os.environ.get("USER"),
                            port=port or self.port, socket_dir=self.sock, log_file=self.log,
                            login_user="postgres", dbname="postgres")

    def initdb(self, checksums=None):
        argv = [self.tool("initdb"), "-D", self.data, "-U", "postgres", "--auth-local=peer",
                "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"]
        if checksums is True:
            argv.append("--data-checksums")
        elif checksums is False and int(version(self.bin_dir).split(".")[0]) >= 18:
            argv.append("--no-data-checksums")
        run(argv)
        self.configure()
        return self

    def configure(self):
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"
                       "wal_level = logical\nmax_replication_slots = 20\nmax_wal_senders = 20\n"
                       "max_connections = 100\nshared_buffers = 256MB\nmax_wal_size = 4GB\n"
                       "checkpoint_timeout = 30min\n"
                       # pg_dump locks every table and sequence at once: 20,000 in the 10,000-table scenario
                       "max_locks_per_transaction = 512\n" % (self.port, self.sock))

    def clone(self, name, port=None):
        """A copy of this (stopped) cluster's data directory."""
        other = Cluster(self.work, self.bin_dir, name, port or self.port)
        subprocess.run(["cp", "-a", self.data, other.data], check=True)
        return other

    def start(self, port=None, options=()):
        """``options``: more server options (-c name=value), for this start only."""
        argv = [self.tool("pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "300", "start"]
        if port or options:
            argv += ["-o", " ".join((["-p %d" % port] if port else []) + list(options))]
        run(argv)

    def stop(self, mode="fast", check=True):
        run([self.tool("pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop"], check=check)

    def running(self):
        return os.path.exists(os.path.join(self.data, "postmaster.pid"))

    def execute(self, sql, dbname="postgres", port=None):
        session = connect(self.spec(port), dbname=dbname)
        try:
            return session.execute(sql)
        finally:
            session.close()

    def scalar(self, sql, dbname="postgres", port=None):
        session = connect(self.spec(port), dbname=dbname)
        try:
            return session.scalar(sql)
        finally:
            session.close()


def make_work(prefix="fleetdb-gap-"):
    import tempfile
    work = tempfile.mkdtemp(prefix=prefix)
    os.chmod(work, 0o755)
    os.makedirs(os.path.join(work, "sock"))
    chown(work)
    chown(os.path.join(work, "sock"))
    return work


def proof(port, *args, check=True):
    """tools/fleetdb_proof.py against 127.0.0.1:port as the app role."""
    argv = [sys.executable, PROOF, "--host", "127.0.0.1", "--port", str(port), "--user", "app",
            "--password", APP_PASSWORD, "--dbname", "app"] + [str(a) for a in args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (rc=%d): %s" % (" ".join(argv[2:]), proc.returncode, proc.stderr[-3000:]))
    return proc


def start_load(port, log_dir, writers=4):
    argv = [sys.executable, PROOF, "--host", "127.0.0.1", "--port", str(port), "--user", "app",
            "--password", APP_PASSWORD, "--dbname", "app", "load", "--writers", str(writers), "--log-dir", log_dir]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class PgBouncer:
    """Debian's pgbouncer in front of ``port``: transaction pooling, the app database, an admin user."""
    ADMIN_PASSWORD = "bench-pgbouncer-admin"

    def __init__(self, work, listen_port, server_port):
        self.dir = os.path.join(work, "pgbouncer")
        self.port = listen_port
        os.makedirs(self.dir)
        chown(self.dir)
        ini = os.path.join(self.dir, "pgbouncer.ini")
        with open(ini, "w") as handle:
            handle.write("[databases]\napp = host=127.0.0.1 port=%d dbname=app\n\n[pgbouncer]\n"
                         "listen_addr = 127.0.0.1\nlisten_port = %d\nunix_socket_dir =\n"
                         "auth_type = scram-sha-256\nauth_file = %s/userlist.txt\nadmin_users = fleetdb_admin\n"
                         "pool_mode = transaction\ndefault_pool_size = 10\nmax_client_conn = 100\n"
                         "logfile = %s/pgbouncer.log\npidfile = %s/pgbouncer.pid\n"
                         % (server_port, listen_port, self.dir, self.dir, self.dir))
        with open(os.path.join(self.dir, "userlist.txt"), "w") as handle:
            handle.write('"app" "%s"\n"fleetdb_admin" "%s"\n' % (APP_PASSWORD, self.ADMIN_PASSWORD))
        for name in os.listdir(self.dir):
            chown(os.path.join(self.dir, name))
        run([shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", "-d", ini])

    def pooler(self):
        from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.pgbouncer import (
            PgBouncer as Pooler)
        return Pooler("127.0.0.1", self.port, "fleetdb_admin", self.ADMIN_PASSWORD)

    def stop(self):
        try:
            with open(os.path.join(self.dir, "pgbouncer.pid")) as handle:
                os.kill(int(handle.read()), 15)
        except (OSError, ValueError):
            pass
