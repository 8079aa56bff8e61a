# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight checks of the host: the old server's binaries, data directory and socket, the disk for a second
copy, the ports, cluster managers."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError, human_bytes, port_holder, process_argvs, read_text
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.discover import socket_problem
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import postmaster, postmaster_pid
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect


# Cluster managers this procedure must not run under, and what to do instead.
HA_MANAGERS = (
    ("patroni", "upgrade with Patroni's own major-upgrade procedure, or take the node out of Patroni first"),
    ("repmgrd", "stop repmgrd and unregister the node (repmgr standby/primary unregister) for the upgrade"),
    ("pg_autoctl", "upgrade with pg_auto_failover's procedure, or drop the node from its formation first"),
)


class Findings:
    """What a preflight found: problems (each with its fix), and warnings."""

    def __init__(self):
        self.problems = []
        self.warnings = []

    def problem(self, check, msg, fix):
        self.problems.append(dict(check=check, msg=msg, fix=fix))

    def warning(self, check, msg):
        self.warnings.append(dict(check=check, msg=msg))


class HostChecks:
    """The host's part of PostgresPreflight."""

    def _old_server_reachable(self):
        if not os.path.isfile(os.path.join(self.old.bin_dir, "postgres")):
            self.findings.problem("old_binaries", "no postgres binary in %s" % self.old.bin_dir,
                                  "set online_upgrade_old_bin_dir to the bin directory of the running release")
            return False
        if not os.path.isdir(self.old.data_dir):
            self.findings.problem("old_data_dir", "the old data directory %s does not exist" % self.old.data_dir,
                                  "set online_upgrade_old_data_dir (old.data_dir) to the data directory of the "
                                  "running server (SHOW data_directory on it)")
            return False
        if read_text(os.path.join(self.old.data_dir, "PG_VERSION")) is None:
            self.findings.problem("old_data_dir", "%s is not a PostgreSQL data directory (no PG_VERSION)"
                                  % self.old.data_dir,
                                  "set online_upgrade_old_data_dir (old.data_dir) to the data directory of the "
                                  "running server (SHOW data_directory on it)")
            return False
        if postmaster_pid(self.old.data_dir) is None:
            self.findings.problem("old_server", "the old server (%s) is not running" % self.old.data_dir,
                                  "start it: the online upgrade copies from the running server")
            return False
        refused = socket_problem(self.old)
        if refused:
            self.findings.problem("old_server", refused.msg, refused.fix)
            return False
        try:
            connect(self.old, timeout=5).close()
        except OperationError as exc:
            fix = exc.fix
            if "password authentication failed" in exc.msg or "asks for a password" in exc.msg:
                fix = ("correct login_password of %s (old.login_password, from a vault), or log in as the owner "
                       "%s by peer authentication on the local socket (leave login_user unset)"
                       % (self.old.login_user, self.old.owner))
            self.findings.problem("old_server", exc.msg, fix)
            return False
        return True

    def _disk(self, session):
        """A second copy of the data fits: the default tablespace's share on the new data directory's file system,
        each other tablespace's on its own (the new server's files go beside the old ones, in PG_<version>_*)."""
        size = int(session.scalar("SELECT sum(pg_database_size(datname))::bigint FROM pg_database"))
        spaces = [(name, location, int(used)) for name, location, used in session.query(
            "SELECT spcname, pg_tablespace_location(oid), pg_tablespace_size(oid) FROM pg_tablespace "
            "WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1").rows]
        probe = self.new_data_dir
        while probe and not os.path.exists(probe):
            probe = os.path.dirname(probe)
        places = [("the new data directory", probe or "/", size - sum(used for _n, _l, used in spaces))]
        places += [("tablespace %s" % name, location, used) for name, location, used in spaces]
        by_device = {}
        for what, path, used in places:
            entry = by_device.setdefault(os.stat(path).st_dev, dict(path=path, what=[], used=0))
            entry["what"].append(what)
            entry["used"] += used
        stat = os.statvfs(places[0][1])
        self.facts.update(old_size_bytes=size, free_bytes=stat.f_bavail * stat.f_frsize,
                          tablespaces=[dict(name=n, location=loc, size_bytes=u) for n, loc, u in spaces])
        if os.path.exists(os.path.join(self.new_data_dir, "PG_VERSION")):
            return  # the copy is (being) made: its space is taken already
        for entry in by_device.values():
            stat = os.statvfs(entry["path"])
            free = stat.f_bavail * stat.f_frsize
            needed = int(entry["used"] * self.min_free_disk_ratio)
            if free < needed:
                self.findings.problem(
                    "disk", "%s has %d bytes free (%s); a second copy of what %s holds (%d bytes, %s) "
                    "with min_free_disk_ratio %g needs %d bytes (%s)"
                    % (entry["path"], free, human_bytes(free), " and ".join(entry["what"]), entry["used"],
                       human_bytes(entry["used"]), self.min_free_disk_ratio, needed, human_bytes(needed)),
                    "free %d bytes there, or set online_upgrade_new_data_dir to a larger file system, or lower "
                    "online_upgrade_min_free_disk_ratio (default 1.2) if the copy needs less" % (needed - free))

    def _ports(self):
        ports = dict(production=self.old.port, temporary=self.temporary_port, old_after=self.old_port_after)
        if len(set(ports.values())) != 3:
            self.findings.problem("ports", "the production, temporary and old-after ports must differ: %s" % ports,
                                  "choose distinct online_upgrade_temporary_port and online_upgrade_old_port_after")
            return
        old_pid = postmaster_pid(self.old.data_dir)
        holder = port_holder(self.old.port)
        if holder and holder["pid"] not in (None, old_pid):
            self.findings.problem("ports", "port %d is held by pid %s (%s), not the old server"
                                  % (self.old.port, holder["pid"], holder["cmdline"]),
                                  "point online_upgrade_port at the old server's port")
        new_pid = postmaster_pid(self.new_data_dir) if os.path.isdir(self.new_data_dir) else None
        # Without CAP_SYS_PTRACE (a container) root cannot see the sockets of the postgres user's processes:
        # the port a running postmaster recorded in its postmaster.pid tells who holds it.
        own_ports = set(p for p in (_postmaster_port(self.old.data_dir), _postmaster_port(self.new_data_dir)) if p)
        for name in ("temporary", "old_after"):
            holder = port_holder(ports[name])
            if holder and holder["pid"] is None and ports[name] in own_ports:
                continue
            if holder and (holder["pid"] is None or holder["pid"] not in (new_pid, old_pid)):
                who = ("pid %s (%s)" % (holder["pid"], holder["cmdline"]) if holder["pid"] is not None
                       else "a process this module cannot see (not the old or the new server)")
                self.findings.problem("ports", "the %s port %d is held by %s"
                                      % (name.replace("_", "-"), ports[name], who),
                                      "stop that process or choose another online_upgrade_%s_port"
                                      % ("temporary" if name == "temporary" else "old_port_after"))
        self.facts["ports"] = ports

    def _ha_managers(self):
        """A cluster manager would restart the server the cutover stops, or fail over to a standby."""
        for pid, argv in process_argvs():
            cmdline = " ".join(argv)
            for name, fix in HA_MANAGERS:
                if re.search(r"(^|/)%s(\s|$)" % re.escape(name), cmdline.split(" --", 1)[0]):
                    self.findings.problem("ha_manager", "%s manages PostgreSQL on this host (pid %s: %s)"
                                          % (name, pid, cmdline.strip()[:120]), fix)
                    return


def _postmaster_port(data_dir):
    """The port a running postmaster of ``data_dir`` listens on (line 4 of postmaster.pid), or None."""
    info = postmaster(data_dir) if data_dir else None
    return info["port"] if info else None
