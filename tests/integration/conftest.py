"""Real test hosts: containers from the fleetdb-test/pghost image, driven through Ansible.

Fixtures:
  pghost      a fresh container for the test module (``.name``, ``.run(cmd)``, ``.copy_in(src, dest)``)
  run_module  run_module(host, "fleetdb.online_upgrade.x", {args}, check=False, diff=False) -> result dict
  pg_dists    {"16": "/var/cache/.../postgresql-16.15.0.tar.gz", ...} on the controller
"""
import json
import os
import subprocess
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("FLEETDB_CACHE", "/var/cache/fleetdb-online-upgrade")
IMAGE = os.environ.get("FLEETDB_PGHOST_IMAGE", "fleetdb-test/pghost:latest")
BIN = os.path.join(ROOT, ".venv", "bin")
# The wire client as tools load it, a file of its own (plugins/module_utils/postgres), and the files it loads beside it.
PGWIRE_FILES = ("pgwire.py", "scram.py", "wire_messages.py", "wire_tls.py")


class Host:
    """A test host container."""

    def __init__(self, name):
        self.name = name

    def run(self, cmd, user="root", timeout=600):
        return subprocess.run(["docker", "exec", "-u", user, self.name, "bash", "-c", cmd],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def check(self, cmd, user="root"):
        """Run ``cmd``; its stdout, or a test failure that shows its stderr."""
        proc = self.run(cmd, user=user)
        assert proc.returncode == 0, "%s on %s: rc=%d\n%s%s" % (
            cmd, self.name, proc.returncode, proc.stdout, proc.stderr)
        return proc.stdout

    def psql(self, sql, port=5432, dbname="postgres", bin_dir="/opt/fleetdb/postgresql/16/bin"):
        """One value or rows (tab-separated) from ``sql`` as the postgres user over the socket."""
        cmd = "%s/psql -h /var/run/postgresql -p %d -d %s -XAtq -v ON_ERROR_STOP=1 -F '\t'" % (bin_dir, port, dbname)
        proc = subprocess.run(["docker", "exec", "-i", "-u", "postgres", self.name, "bash", "-c", cmd],
                              input=sql, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, "%s: %s" % (sql, proc.stderr)
        return proc.stdout.strip()

    def write_file(self, path, text):
        proc = subprocess.run(["docker", "exec", "-i", self.name, "bash", "-c", "cat > %s" % path], input=text,
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, "writing %s: %s" % (path, proc.stderr)

    def copy_in(self, src, dest):
        subprocess.run(["docker", "cp", src, "%s:%s" % (self.name, dest)], check=True, capture_output=True)


def start_host(prefix, extra=()):
    name = "fleetdb-it-%s-%s" % (prefix, uuid.uuid4().hex[:6])
    proc = subprocess.run(["docker", "run", "-d", "--name", name, "--hostname", name[:60], "--shm-size", "256m",
                           "--label", "fleetdb-test=1"] + list(extra) + [IMAGE],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail("cannot start a test host from %s (run `make setup` to build it): %s" % (IMAGE, proc.stderr))
    return Host(name)


def remove_host(host):
    subprocess.run(["docker", "rm", "-f", "-v", host.name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def pghost(request):
    host = start_host(request.module.__name__.rsplit(".", 1)[-1].replace("test_", "")[:20].replace("_", "-"))
    yield host
    remove_host(host)


def ansible_env():
    env = dict(os.environ)
    env.update(ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3", ANSIBLE_NOCOLOR="1",
               PATH=BIN + os.pathsep + env.get("PATH", ""))
    return env


def module_result(stdout, host_name):
    """The module's result for ``host_name`` from the ansible.posix.json callback's output."""
    data = json.loads(stdout[stdout.index("{"):])
    return data["plays"][0]["tasks"][0]["hosts"][host_name]


@pytest.fixture(scope="session")
def run_module():
    def run(host, module, args, check=False, diff=False, verbosity=0):
        argv = [os.path.join(BIN, "ansible"), "all", "-i", host.name + ",", "-c", "community.docker.docker",
                "-m", module, "-a", json.dumps(args)]
        argv += ["--check"] if check else []
        argv += ["--diff"] if diff else []
        argv += ["-" + "v" * verbosity] if verbosity else []
        proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(), cwd=ROOT, timeout=1800, check=False)
        try:
            result = module_result(proc.stdout, host.name)
        except (ValueError, KeyError, IndexError):
            pytest.fail("ansible gave no result for %s (rc=%d):\n%s\n%s" % (
                module, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
        if verbosity:
            result["_output"] = proc.stdout + proc.stderr
        return result
    return run


@pytest.fixture(scope="session")
def pg_dists():
    dists = {}
    with open(os.path.join(ROOT, "tests", "postgres-distributions.txt")) as listing:
        for line in listing:
            fields = line.split()
            if fields and not fields[0].startswith("#"):
                path = os.path.join(CACHE, "dist", "postgresql-%s.tar.gz" % fields[1])
                if not os.path.exists(path):
                    pytest.fail("%s is missing: run scripts/fetch-postgres.sh (make setup)" % path)
                dists[fields[0]] = path
    return dists
