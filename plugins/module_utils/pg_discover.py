# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find the server that serves a port, as its host runs it, and plan the new instance the same way.

What the running postmaster says is the truth: its socket lock file names its pid and data directory,
its executable names the release, and the server itself (SHOW) names its configuration files.  Its
service manager comes from its cgroup (pg_service.detect).  The new instance follows the old one's layout:

  debian   /etc/postgresql/<new>/<cluster>, /var/lib/postgresql/<new>/<cluster>, binaries in
           /usr/lib/postgresql/<new> (where postgresql-common looks), the unit postgresql@<new>-<cluster>
  systemd  the unit and data directory named like the old ones with the new version (postgresql-16 ->
           postgresql-18, /var/lib/pgsql/16/data -> /var/lib/pgsql/18/data); a unit file is installed
  pg_ctl   the collection's own layout (/var/lib/fleetdb/postgresql/<new>/main)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import pwd
import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.common import (
    OperationError, effective_user, parse_version, port_holder, read_text)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils import pg_service, pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.pg_process import parse_postmaster_pid, process_alive

DEFAULT_PREFIX = "/opt/fleetdb/postgresql"
DEBIAN_PREFIX = "/usr/lib/postgresql"
SETTINGS = ("data_directory", "config_file", "hba_file", "ident_file", "unix_socket_directories",
            "server_version", "port")


def find_postmaster(port, socket_dirs):
    """pid of the postmaster serving ``port``: from the socket lock file, else from who listens on TCP."""
    for directory in socket_dirs:
        info = parse_postmaster_pid(read_text(os.path.join(directory, ".s.PGSQL.%d.lock" % port)))
        if info and process_alive(info["pid"]):
            return info["pid"], directory
    holder = port_holder(port)
    if holder and holder["pid"]:
        return holder["pid"], None
    return None, None


def discover(module, port, socket_dir="/var/run/postgresql", login_user=None, login_password=None):
    """The running old instance: dict(data_dir, bin_dir, owner, port, socket_dir, config_file, hba_file,
    ident_file, version, major, service) or an OperationError that says what to pass instead."""
    dirs = [d for d in (socket_dir, "/var/run/postgresql", "/run/postgresql", "/tmp") if d]
    pid, found_dir = find_postmaster(port, dirs)
    if pid is None:
        raise OperationError("no PostgreSQL server serves port %d on this host (no socket lock file in %s, no TCP "
                             "listener visible)" % (port, ", ".join(dirs)),
                             "start the old server, or set online_upgrade_port to the port it serves, or name it "
                             "with online_upgrade_old_data_dir and online_upgrade_old_bin_dir")
    owner = pwd.getpwuid(os.stat("/proc/%d" % pid).st_uid).pw_name
    exe = _executable(pid, owner)
    values = _show(port, found_dir or socket_dir, owner, login_user, login_password)
    sockets = [d.strip() for d in values["unix_socket_directories"].split(",") if d.strip()]
    data_dir = values["data_directory"]
    config_file = values["config_file"]
    version = parse_version(values["server_version"])
    service = pg_service.detect(pid, config_file)
    return dict(pid=pid, data_dir=data_dir, bin_dir=os.path.dirname(exe), owner=owner, port=port,
                socket_dir=found_dir or (sockets[0] if sockets else socket_dir),
                config_file=None if config_file == os.path.join(data_dir, "postgresql.conf") else config_file,
                hba_file=values["hba_file"], ident_file=values["ident_file"],
                version=".".join(str(p) for p in version), major=str(version[0]), service=service)


def _executable(pid, owner):
    """The postmaster's binary: its command line's first word, else /proc/<pid>/exe read as its owner (root
    without CAP_SYS_PTRACE, in a container, may not read another user's)."""
    argv0 = (read_text("/proc/%d/cmdline" % pid) or "").split("\0")[0]
    if os.path.isabs(argv0) and os.path.isfile(argv0):
        return os.path.realpath(argv0)
    with effective_user(owner):
        return os.path.realpath("/proc/%d/exe" % pid)


def _show(port, socket_dir, owner, login_user, login_password):
    try:
        with effective_user(owner):
            session = pgwire.Connection(host=socket_dir, port=port, user=login_user or owner, dbname="postgres",
                                        password=login_password, connect_timeout=5, io_timeout=10,
                                        application_name="fleetdb.online_upgrade discover")
    except pgwire.PgError as exc:
        raise OperationError("the server on port %d (socket %s) does not let %s in: %s"
                             % (port, socket_dir, login_user or owner, exc),
                             "let the owner in by peer authentication on the local socket, or pass "
                             "online_upgrade_login_user / login_password")
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
        return dict(data_dir="/var/lib/postgresql/%s/%s" % (new_major, cluster),
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
