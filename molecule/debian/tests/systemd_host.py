"""Checks shared by the systemd scenarios (debian, pgdg); imported by their tests.

A server is known by what serves the port, not by where the collection thinks it is: the
postmaster named in the port's socket lock file, its binary (/proc/PID/exe), its data directory
(the lock file's second line) and the systemd unit whose cgroup holds it (/proc/PID/cgroup).
"""
import base64
import importlib.util
import json
import os
import re
import subprocess
import time

ROOT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")
EPHEMERAL = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp")
INVENTORY = os.path.join(EPHEMERAL, "inventory")
PROOF = os.path.join(ROOT, "tools", "fleetdb_proof.py")
APP_PASSWORD = "app-molecule-pw"
SOCKET_DIR = "/run/postgresql"
STATE_DIR = "/var/lib/fleetdb/online_upgrade"
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)

_SPEC = importlib.util.spec_from_file_location("pgwire", os.path.join(ROOT, "plugins", "module_utils", "postgres", "pgwire.py"))
pgwire = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(pgwire)


# -- the application, from the controller ------------------------------------------------------
def proof(port, *args):
    env = dict(os.environ, PGPASSWORD=APP_PASSWORD)
    return subprocess.run(["python3", PROOF, "--port", str(port)] + list(args), env=env, capture_output=True,
                          text=True, check=False)


def stop_and_verify(port, *log_dirs):
    """Stop each load, then the proof of each: {log_dir: report}."""
    reports = {}
    for log_dir in log_dirs:
        stopped = proof(port, "stop", "--log-dir", log_dir)
        assert stopped.returncode == 0, stopped.stderr
    for log_dir in log_dirs:
        verified = proof(port, "verify", "--log-dir", log_dir, "--json")
        assert verified.stdout, "the proof of %s could not run: %s" % (log_dir, verified.stderr)
        print("proof of %s: %s" % (log_dir, verified.stdout))
        reports[log_dir] = json.loads(verified.stdout)
    return reports


def rollback_under_load(host, port, log_dir, upgrade_log_dir, old_major):
    """playbooks/rollback.yml while fresh writers write, then the proof of those and of the upgrade's writers:
    no acknowledged write lost, duplicated or out of order, the old release serving; the play's output."""
    start_load(port, log_dir, first_writer=11)
    rc, out, _recap = playbook("rollback.yml")
    if rc != 0:
        proof(port, "stop", "--log-dir", log_dir)
    assert rc == 0, out[-4000:]
    host.run("sleep 2")   # the writers write to the old release for a while
    reports = stop_and_verify(port, log_dir, upgrade_log_dir)
    for report in reports.values():
        assert report["lost"] == 0 and report["duplicated"] == 0 and report["out_of_order_ids"] == 0, report
        assert report["ok"] and report["server_version"].startswith(old_major), report
    assert reports[log_dir]["acknowledged"] > 100, reports
    return out


def start_load(port, log_dir, first_writer, writers=2, rate=50):
    """Writers on the controller through the published port, like prepare_app.yml starts them."""
    subprocess.run(["rm", "-rf", log_dir], check=True)
    os.makedirs(log_dir)
    env = dict(os.environ, PGPASSWORD=APP_PASSWORD)
    with open(log_dir + ".out", "w") as out:
        # It outlives this call (the load's `stop` ends it): no with-block.
        subprocess.Popen(  # pylint: disable=consider-using-with
            ["python3", PROOF, "--port", str(port), "load", "--writers", str(writers), "--rate", str(rate),
             "--duration", "1800", "--first-writer", str(first_writer), "--log-dir", log_dir],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    first_log = os.path.join(log_dir, "writer-%d.log" % first_writer)
    for _attempt in range(120):
        if os.path.exists(first_log) and os.path.getsize(first_log) > 0:
            return
        time.sleep(0.5)
    with open(log_dir + ".out") as out:
        raise AssertionError("the writers did not start: " + out.read())


def app_query(port, sql, dbname="app"):
    """One value, as the application over TCP from the controller (the published port)."""
    conn = pgwire.Connection(host="127.0.0.1", port=port, user="app", dbname=dbname, password=APP_PASSWORD,
                             connect_timeout=10, application_name="fleetdb-molecule-verify")
    try:
        return conn.scalar(sql)
    finally:
        conn.close()


def wait_app_login(port, timeout=60):
    """The server version once the application logs in over TCP; fails with the last error."""
    deadline, error = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            return app_query(port, "SHOW server_version")
        except (pgwire.PgError, OSError, ValueError) as exc:
            error = exc
            time.sleep(0.5)
    raise AssertionError("the application cannot log in on 127.0.0.1:%d within %d s: %s" % (port, timeout, error))


# -- the host, through the container runtime ---------------------------------------------------
def wait_booted(container, timeout=120):
    """systemd's state once it stops starting things (running or degraded), and the seconds it took."""
    started, state = time.monotonic(), None
    while time.monotonic() - started < timeout:
        proc = subprocess.run(["docker", "exec", container, "systemctl", "is-system-running"],
                              capture_output=True, text=True, check=False)
        state = proc.stdout.strip()
        if state in ("running", "degraded"):
            return state, round(time.monotonic() - started, 1)
        time.sleep(0.2)
    raise AssertionError("systemd in %s is still %r after %d s" % (container, state, timeout))


def reboot(container):
    """docker restart (SIGRTMIN+3: systemd shuts down cleanly), then wait for the boot to finish."""
    started = time.monotonic()
    proc = subprocess.run(["docker", "restart", container], capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    state, _boot_seconds = wait_booted(container)
    seconds = round(time.monotonic() - started, 1)
    print("reboot of %s: %s after %.1f s" % (container, state, seconds))
    return state, seconds


def failed_units(host):
    return host.run("systemctl --failed --no-legend --plain").stdout.strip()


def serving(host, port=5432):
    """What serves ``port`` on the host: dict(pid, data_dir, exe, version, unit), or None."""
    lock = host.run("cat %s/.s.PGSQL.%d.lock" % (SOCKET_DIR, port))
    if lock.rc != 0:
        return None
    lines = lock.stdout.splitlines()
    pid, data_dir = int(lines[0]), lines[1]
    # /proc/PID/exe of another user's process needs CAP_SYS_PTRACE, which a container's root lacks.
    exe = host.run("runuser -u postgres -- readlink /proc/%d/exe" % pid).stdout.strip()
    if not exe:
        return None   # a stale lock file
    version = host.run("%s --version" % exe).stdout.strip().rsplit(" ", 1)[-1]
    cgroup = host.run("cat /proc/%d/cgroup" % pid).stdout
    unit = None
    for line in cgroup.splitlines():
        hierarchy, _controllers, path = line.split(":", 2)
        if hierarchy == "0" or "name=systemd" in line:
            units = [part for part in path.split("/") if part.endswith(".service")]
            unit = units[-1] if units else unit
    return dict(pid=pid, data_dir=data_dir, exe=exe, version=version, unit=unit)


def unit_state(host, unit):
    """(is-active, is-enabled, is-enabled's rc) of a unit."""
    active = host.run("systemctl is-active %s" % unit).stdout.strip()
    enabled = host.run("systemctl is-enabled %s" % unit)
    return active, enabled.stdout.strip(), enabled.rc


def named_in_state(host, unit):
    """Whether the collection's state files name this unit (with or without .service)."""
    name = unit[:-len(".service")] if unit.endswith(".service") else unit
    found = host.run("grep -rlsF -- '\"%s' %s" % (name, STATE_DIR))
    return found.rc == 0


# -- the collection's playbooks, as an operator runs them --------------------------------------
def playbook(name, *args):
    """playbooks/<name> on the Molecule inventory; returns (rc, output, recap)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.pop("ANSIBLE_CONFIG", None)   # the project's ansible.cfg, as from a checkout
    started = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", INVENTORY, os.path.join("playbooks", name)] + list(args),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    recap = {m[0]: dict(ok=int(m[1]), changed=int(m[2]), unreachable=int(m[3]), failed=int(m[4]))
             for m in RECAP.findall(out)}
    print("ansible-playbook %s %s: rc %d in %.1f s, recap %s" % (
        name, " ".join(args), proc.returncode, time.monotonic() - started, recap))
    return proc.returncode, out, recap


# -- what a --check run must leave as it was ---------------------------------------------------
SNAPSHOT = r'''
import hashlib, json, os, subprocess, sys
roots, units = sys.argv[1].split(","), sys.argv[2].split(",")
SKIP_DIRS = {"pg_wal", "pg_stat", "pg_stat_tmp", "log", "pg_log", "pgsql_tmp", ".ansible"}
SKIP_FILES = {"postmaster.pid", "current_logfiles", "pg_internal.init"}
# A running server rewrites these by itself (checkpoints, hint bits, vacuum): names only.
STATE_DIRS = {"base", "global", "pg_xact", "pg_multixact", "pg_subtrans", "pg_commit_ts", "pg_replslot",
              "pg_logical", "pg_snapshots", "pg_notify", "pg_serial", "pg_dynshmem", "pg_twophase", "pg_tblspc"}
snap = dict(files={}, catalog={}, systemd={}, serving=None)
for root in roots:
    if not os.path.lexists(root):
        snap["files"][root] = "absent"
        continue
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not os.path.islink(os.path.join(top, d)))
        parts = top.split("/")
        names_only = any(parts[i] in STATE_DIRS and os.path.exists("/".join(parts[:i] + ["PG_VERSION"]))
                         for i in range(1, len(parts)))
        for name in files + [d for d in os.listdir(top) if os.path.islink(os.path.join(top, d))]:
            path = os.path.join(top, name)
            if name in SKIP_FILES or name.endswith((".log", "_fsm", "_vm")):
                continue
            st = os.lstat(path)
            meta = "%d:%d %o" % (st.st_uid, st.st_gid, st.st_mode)
            if os.path.islink(path):
                snap["files"][path] = "-> " + os.readlink(path)
            elif names_only:
                snap["files"][path] = meta
            else:
                with open(path, "rb") as f:
                    snap["files"][path] = meta + " sha256:" + hashlib.sha256(f.read()).hexdigest()
def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True)
    return p.stdout.strip() + ("" if p.returncode == 0 else " [rc %d]" % p.returncode)
for unit in units:
    snap["systemd"][unit] = run(["systemctl", "is-active", unit]) + " / " + run(["systemctl", "is-enabled", unit])
snap["systemd"]["unit files"] = run(["systemctl", "list-unit-files", "--no-legend", "--plain", "postgresql*"])
if os.path.exists("/usr/bin/pg_lsclusters"):
    snap["systemd"]["pg_lsclusters"] = run(["pg_lsclusters", "-h", "-s"])
try:
    with open("/run/postgresql/.s.PGSQL.5432.lock") as f:
        lock = f.read().splitlines()
    pid = int(lock[0])
    exe = run(["runuser", "-u", "postgres", "--", "readlink", "/proc/%d/exe" % pid])
    exe = exe if exe.startswith("/") else None
    snap["serving"] = dict(pid=pid, data_dir=lock[1], started=lock[2], exe=exe)
except (OSError, ValueError, IndexError):
    exe = None
if exe:
    psql = [os.path.join(os.path.dirname(exe), "psql"), "-h", "/run/postgresql", "-p", "5432", "-XAtq",
            "-v", "ON_ERROR_STOP=1", "-F", " | "]
    def sql(query, db="postgres"):
        return run(["runuser", "-u", "postgres", "--"] + psql + ["-d", db, "-c", query]).splitlines()
    cat = snap["catalog"]
    cat["roles"] = sql("SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, "
                       "rolbypassrls, rolconnlimit, rolvaliduntil, md5(coalesce(rolpassword, '')) FROM pg_authid ORDER BY 1")
    cat["databases"] = sql("SELECT datname, datallowconn, datconnlimit, pg_get_userbyid(datdba) FROM pg_database ORDER BY 1")
    cat["slots"] = sql("SELECT slot_name, plugin, slot_type, database, temporary FROM pg_replication_slots ORDER BY 1")
    cat["subscriptions"] = sql("SELECT subname, subenabled, subslotname, subdbid FROM pg_subscription ORDER BY 1")
    cat["settings"] = sql("SELECT name, setting FROM pg_settings WHERE name IN ('port', 'listen_addresses', "
                          "'wal_level', 'max_connections', 'config_file', 'hba_file', 'data_directory') ORDER BY 1")
    for db in sql("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"):
        cat["publications in " + db] = sql("SELECT p.pubname, p.puballtables, t.schemaname || '.' || t.tablename "
                                           "FROM pg_publication p LEFT JOIN pg_publication_tables t USING (pubname) "
                                           "ORDER BY 1, 3", db)
print(json.dumps(snap, sort_keys=True))
'''


def snapshot(host, roots, units):
    """Files (checksums; names only inside a data directory's own state), catalogs, units, the server on 5432."""
    script = base64.b64encode(SNAPSHOT.encode()).decode()
    proc = host.run("echo %s | base64 -d > /tmp/fleetdb-snapshot.py && python3 /tmp/fleetdb-snapshot.py %s %s" % (
        script, ",".join(roots), ",".join(units)))
    assert proc.rc == 0, proc.stderr
    return json.loads(proc.stdout)


def differences(before, after):
    """Readable differences between two snapshots."""
    found = []
    for section in ("files", "catalog", "systemd"):
        old, new = before[section], after[section]
        for key in sorted(set(old) | set(new)):
            was, now = old.get(key, "absent"), new.get(key, "absent")
            if was == now:
                continue
            if isinstance(was, list) and isinstance(now, list):
                gone, new_rows = [row for row in was if row not in now], [row for row in now if row not in was]
                found.append("%s %s: gone %r, new %r" % (section, key, gone, new_rows))
            else:
                found.append("%s %s: %r -> %r" % (section, key, was, now))
    if before["serving"] != after["serving"]:
        found.append("the server on 5432: %r -> %r" % (before["serving"], after["serving"]))
    return found
