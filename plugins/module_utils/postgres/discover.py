# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find the server that serves a port, as its host runs it, and plan the new instance the same way.

What the running postmaster says is the truth: its socket lock file names its pid and data directory (with
its socket in another directory, or none, its postmaster.pid does: a postmaster works in its data directory),
its executable names the release, and the server itself (SHOW) names its configuration files and every socket
directory.  Every session of an upgrade is a peer-authenticated one on a socket, so a server without a socket
in a directory is refused here, with the fix.  Its service manager comes from its cgroup (pg_service.detect).
The new instance follows the old one's layout:

  debian   /etc/postgresql/<new>/<cluster>, /var/lib/postgresql/<new>/<cluster>, binaries in
           /usr/lib/postgresql/<new> (where postgresql-common looks), the unit postgresql@<new>-<cluster>
  systemd  the unit and data directory named like the old ones with the new version (postgresql-16 ->
           postgresql-18, /var/lib/pgsql/16/data -> /var/lib/pgsql/18/data); a unit file is installed
  pg_ctl   the collection's own layout (/var/lib/fleetdb/postgresql/<new>/main)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import grp
import os
import pwd
import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, effective_user, parse_version, port_holder, read_text)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import service as pg_service, pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.conf import (
    join_directories, split_directories)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import (
    parse_postmaster_pid, postmaster, process_alive, server_log)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import login

DEFAULT_PREFIX = "/opt/fleetdb/postgresql"
DEBIAN_PREFIX = "/usr/lib/postgresql"
SETTINGS = ("data_directory", "config_file", "hba_file", "ident_file", "unix_socket_directories",
            "server_version", "port")


def find_postmaster(port, socket_dirs):
    """The postmaster serving ``port``: dict(pid, data_dir, lock_dir, pid_file) - from a socket lock file in one
    of ``socket_dirs`` (lock_dir), else from the running postmasters' own postmaster.pid (any socket directory,
    or none), else pid alone from who listens on TCP; None when nothing serves it."""
    for directory in socket_dirs:
        info = parse_postmaster_pid(read_text(os.path.join(directory, ".s.PGSQL.%d.lock" % port)))
        if info and process_alive(info["pid"]):
            return dict(pid=info["pid"], data_dir=info["data_dir"], lock_dir=directory,
                        pid_file=parse_postmaster_pid(read_text(os.path.join(info["data_dir"], "postmaster.pid"))))
    for pid, data_dir in _postmasters():
        info = parse_postmaster_pid(read_text(os.path.join(data_dir, "postmaster.pid")))
        if info and info["pid"] == pid and info["port"] == port:
            return dict(pid=pid, data_dir=info["data_dir"], lock_dir=None, pid_file=info)
    holder = port_holder(port)
    if holder and holder["pid"]:
        return dict(pid=holder["pid"], data_dir=None, lock_dir=None, pid_file=None)
    return None


def _postmasters():
    """(pid, working directory) of each running postgres process: a postmaster works in its data directory.
    The directory is read as the process's owner: root without CAP_SYS_PTRACE (a container) may not."""
    seen = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or (read_text("/proc/%s/comm" % entry) or "").strip() not in ("postgres", "postmaster"):
            continue
        try:
            owner = pwd.getpwuid(os.stat("/proc/%s" % entry).st_uid).pw_name
            with effective_user(owner):
                cwd = os.readlink("/proc/%s/cwd" % entry)
        except (KeyError, OSError):
            continue
        if cwd not in seen:  # a server's other processes work there too
            seen.add(cwd)
            yield int(entry), cwd


def discover(module, port, socket_dir="/var/run/postgresql", login_user=None, login_password=None):
    """The running old instance: dict(data_dir, bin_dir, owner, port, socket_dir, socket_directories, config_file,
    hba_file, ident_file, version, major, service) or an OperationError that says what to pass instead."""
    dirs = [d for d in (socket_dir, "/var/run/postgresql", "/run/postgresql", "/tmp") if d]
    found = find_postmaster(port, dirs)
    if found is None:
        raise OperationError("no PostgreSQL server serves port %d on this host (no socket lock file in %s, no "
                             "postmaster with that port in its postmaster.pid, no TCP listener visible)"
                             % (port, ", ".join(dirs)),
                             "start the old server, or set online_upgrade_port to the port it serves",
                             reason="not_found")
    pid = found["pid"]
    owner = pwd.getpwuid(os.stat("/proc/%d" % pid).st_uid).pw_name
    exe = _executable(pid, owner)
    session_dir = found["lock_dir"] or _socket_of(found["pid_file"])
    if session_dir is None and found["pid_file"]:
        raise no_socket_error(port, found, owner, os.path.dirname(exe), socket_dir)
    try:
        values = _show(port, session_dir or socket_dir, owner, login_user, login_password)
    except pgwire.PgError as exc:
        user = login_user or owner
        raise OperationError("the server on port %d (socket %s) does not let %s in: %s"
                             % (port, session_dir or socket_dir, user, exc),
                             "let %s in by peer authentication on the Unix socket, as the upgrade's own sessions log "
                             "in: a line 'local all %s peer' above the other local lines of its pg_hba.conf (SHOW "
                             "hba_file), then reload it (runuser -u %s -- %s reload -D %s, or SELECT pg_reload_conf())"
                             % (user, user, owner, os.path.join(os.path.dirname(exe), "pg_ctl"),
                                found["data_dir"] or "<its data directory>"), reason="login")
    sockets = split_directories(values["unix_socket_directories"])
    data_dir = values["data_directory"]
    config_file = values["config_file"]
    version = parse_version(values["server_version"])
    service = pg_service.detect(pid, config_file)
    return dict(pid=pid, data_dir=data_dir, bin_dir=os.path.dirname(exe), owner=owner, port=port,
                socket_dir=session_dir or socket_dir, socket_directories=sockets,
                config_file=None if config_file == os.path.join(data_dir, "postgresql.conf") else config_file,
                hba_file=values["hba_file"], ident_file=values["ident_file"],
                version=".".join(str(p) for p in version), major=str(version[0]), service=service)


def no_socket_error(port, found, owner, bin_dir, socket_dir):
    """The refusal of a server this collection cannot log in to: it serves no Unix socket in a directory, and
    every session of the upgrade is one, by peer authentication as the owner.  The fix is the one statement and
    the one restart that give it one (``socket_dir``), in this host's words."""
    pid_file, data_dir = found["pid_file"], found["data_dir"]
    served = pid_file["socket_dir"]
    value = join_directories(([served] if served else []) + [socket_dir])
    steps = []
    if not os.path.isdir(socket_dir):
        group = grp.getgrgid(pwd.getpwnam(owner).pw_gid).gr_name
        steps.append("create the directory: install -d -o %s -g %s -m 2775 %s" % (owner, group, socket_dir))
    argv = _argv(found["pid"])
    if any(a.startswith("-k") or "unix_socket_directories" in a for a in argv[1:]):
        steps.append("its command line sets the socket directories (%s): make that unix_socket_directories='%s' "
                     "where the server is started" % (" ".join(argv), value))
    else:
        steps.append("give the server a socket in %s, as a superuser over TCP: %s -h %s -p %d -U %s -d postgres -c "
                     "\"ALTER SYSTEM SET unix_socket_directories = '%s'\""
                     % (socket_dir, os.path.join(bin_dir, "psql"), _tcp_host(pid_file["listen_address"]), port,
                        owner, value.replace("'", "''")))
    steps.append("restart it (its sessions end once): %s" % restart_command(found, argv, owner, bin_dir))
    return OperationError(
        "the server on port %d (pid %d, %s) serves no Unix-domain socket in a directory (unix_socket_directories "
        "%s), and every session of the upgrade logs in as %s by peer authentication on one; nothing was changed"
        % (port, found["pid"], data_dir, "begins with %s" % served if served else "is empty: TCP only", owner),
        "; then ".join(steps) + "; then run again", reason="no_socket", data_dir=data_dir)


def socket_problem(spec):
    """Why this collection's sessions cannot reach the running server of ``spec`` (an InstanceSpec) on its Unix
    socket in ``spec.socket_dir``, as an OperationError; None when they can, or when it does not run."""
    info = postmaster(spec.data_dir)
    if info is None:
        return None
    if _socket_of(info) is None:
        return no_socket_error(info["port"], dict(pid=info["pid"], data_dir=spec.data_dir, pid_file=info),
                               spec.owner, spec.bin_dir, spec.socket_dir)
    if not os.path.exists(os.path.join(spec.socket_dir, ".s.PGSQL.%d" % info["port"])):
        return OperationError("the server of %s serves no Unix socket in %s (its first socket directory is %s)"
                              % (spec.data_dir, spec.socket_dir, info["socket_dir"]),
                              "set online_upgrade_socket_dir (old.socket_dir) to %s" % info["socket_dir"])
    return None


def _tcp_host(listen_address):
    """Where to reach a server over TCP on its own host, from the first of its listen_addresses."""
    if listen_address in (None, "*", "0.0.0.0"):
        return "127.0.0.1"
    return "::1" if listen_address == "::" else listen_address


def _argv(pid):
    return (read_text("/proc/%d/cmdline" % pid) or "").rstrip("\0").split("\0")


def restart_command(found, argv, owner, bin_dir):
    """How the host restarts the postmaster ``found`` (its command line ``argv``): through its service manager,
    else pg_ctl as its owner, with the log file it writes now (without -l the server would write to, and stay
    tied to, the terminal that restarted it)."""
    config = [a.split("=", 1)[1] for a in argv if a.startswith(("config_file=", "--config_file=", "--config-file="))]
    service = pg_service.detect(found["pid"], config[-1] if config else None)
    if service["kind"] == "debian":
        return "pg_ctlcluster %s %s restart" % (service["version"], service["cluster"])
    if service["kind"] == "systemd":
        return "systemctl restart %s" % service["unit"]
    log = server_log(found["data_dir"], owner)
    pg_ctl = os.path.join(bin_dir, "pg_ctl")
    return "runuser -u %s -- %s restart -D %s -m fast%s" % (owner, pg_ctl, found["data_dir"], " -l %s" % log if log else "")


def _socket_of(pid_file):
    """The socket directory a postmaster.pid names (its first), None when it names none this collection can
    connect in (unix_socket_directories empty, or an abstract @name first)."""
    directory = pid_file and pid_file["socket_dir"]
    return directory if directory and directory.startswith("/") else None


def _executable(pid, owner):
    """The postmaster's binary: its command line's first word, else /proc/<pid>/exe read as its owner (root
    without CAP_SYS_PTRACE, in a container, may not read another user's)."""
    argv0 = _argv(pid)[0]
    if os.path.isabs(argv0) and os.path.isfile(argv0):
        return os.path.realpath(argv0)
    with effective_user(owner):
        return os.path.realpath("/proc/%d/exe" % pid)


def _show(port, socket_dir, owner, login_user, login_password):
    """The SETTINGS of the server, read over its socket in ``socket_dir``; pgwire.PgError when it refuses the login."""
    if not os.path.exists(os.path.join(socket_dir, ".s.PGSQL.%d" % port)):
        raise OperationError("the server on port %d has no Unix socket in %s" % (port, socket_dir),
                             "set online_upgrade_socket_dir (the discover module's socket_dir) to a directory of "
                             "its unix_socket_directories", reason="no_socket")
    with effective_user(owner):
        session = login(socket_dir, port, login_user or owner, "postgres", password=login_password,
                        connect_timeout=5, io_timeout=10, application_name="fleetdb.online_upgrade discover")
    try:
        return dict((name, session.scalar("SELECT current_setting($1)", [name])) for name in SETTINGS)
    finally:
        session.close()


def plan_new(old, new_major, prefix=None):
    """Where the new instance goes and who runs it, following ``old``'s layout."""
    kind = old["service"]["kind"]
    new_major = str(new_major)
    if kind == "debian":
        cluster = old["service"].get("cluster") or "main"
        # Beside the old one, when a DBA moved it (data_directory = '/srv/pg/15/main': to a disk of its own).
        data_dir = _with_version(old["data_dir"], old["major"], new_major)
        if data_dir == old["data_dir"]:
            data_dir = "/var/lib/postgresql/%s/%s" % (new_major, cluster)
        return dict(data_dir=data_dir,
                    config_file="/etc/postgresql/%s/%s/postgresql.conf" % (new_major, cluster),
                    prefix=prefix or DEBIAN_PREFIX,
                    service=dict(kind="debian", version=new_major, cluster=cluster,
                                 unit="postgresql@%s-%s.service" % (new_major, cluster)))
    if kind == "systemd":
        unit = _with_version(old["service"]["unit"], old["major"], new_major)
        if unit == old["service"]["unit"]:
            unit = "postgresql-%s.service" % new_major
        data_dir = _with_version(old["data_dir"], old["major"], new_major)
        if data_dir == old["data_dir"]:
            data_dir = "%s-%s" % (old["data_dir"].rstrip("/"), new_major)
        return dict(data_dir=data_dir, config_file=None, prefix=prefix or DEFAULT_PREFIX,
                    service=dict(kind="systemd", unit=unit))
    return dict(data_dir="/var/lib/fleetdb/postgresql/%s/main" % new_major, config_file=None,
                prefix=prefix or DEFAULT_PREFIX, service=dict(kind="pg_ctl"))


def _with_version(text, old_major, new_major):
    """``text`` with the old major version, as a whole path or name component, replaced by the new one."""
    return re.sub(r"(?<![0-9.])%s(?![0-9])" % re.escape(str(old_major)), str(new_major), text)
