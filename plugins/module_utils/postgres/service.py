# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who runs a PostgreSQL server on its host, and how it comes back at boot: the service managers.

Three kinds, found from the running postmaster (``detect``) and followed for the new instance:

  debian   a postgresql-common cluster (/etc/postgresql/N/NAME, start.conf, pg_ctlcluster), run by the
           systemd unit postgresql@N-NAME when systemd runs, else by pg_ctlcluster; boot: start.conf
  systemd  a unit of its own (PGDG's postgresql-16, or one this collection installs); boot: enabled
  pg_ctl   a bare postmaster (no service manager); boot: nothing

Starting is asynchronous everywhere (the cutover polls postmaster.pid for ``ready``, which is faster than
any manager's own wait): ``start`` returns at once and ``wait_started`` settles the manager's state.
Stopping in the cutover is a signal to the postmaster (pg_process.fast_shutdown): a unit whose main
process exits cleanly becomes inactive by itself; ``disable`` keeps it down at the next boot.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, read_text, release_environment, user_ids, write_file)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.server_control import (
    ServerControl, start_debian_cluster, unit_commands)

KINDS = ("pg_ctl", "systemd", "debian")
DEBIAN_CONF_ROOT = "/etc/postgresql"
UNIT_DIR = "/etc/systemd/system"
_DEBIAN_UNIT = re.compile(r"^postgresql@(?P<version>[0-9.]+)-(?P<cluster>.+)\.service$")

UNIT_TEMPLATE = """# Installed by fleetdb.online_upgrade for PostgreSQL %(major)s from %(bin_dir)s.
[Unit]
Description=PostgreSQL %(major)s database server (%(data_dir)s)
After=network-online.target
Wants=network-online.target

[Service]
Type=forking
User=%(owner)s
Group=%(group)s
Environment=PGDATA=%(data_dir)s
%(environment)sOOMScoreAdjust=-900
# '-': a server already running (started by the cutover itself) is adopted through its PID file.
ExecStart=-%(start)s
ExecStop=%(stop)s
ExecReload=%(reload)s
PIDFile=%(data_dir)s/postmaster.pid
KillMode=mixed
KillSignal=SIGINT
TimeoutSec=0

[Install]
WantedBy=multi-user.target
"""


def systemd_running():
    """True when systemd is this host's init (what ``systemctl`` needs to work)."""
    return os.path.isdir("/run/systemd/system")


def unit_of_pid(pid):
    """The systemd service unit whose cgroup holds ``pid``, or None (/proc/<pid>/cgroup)."""
    for line in (read_text("/proc/%d/cgroup" % pid) or "").splitlines():
        path = line.split(":", 2)[-1]
        for part in reversed(path.split("/")):
            if part.endswith(".service"):
                return part
    return None


def debian_cluster_of(config_file):
    """(version, cluster) when ``config_file`` is /etc/postgresql/<version>/<cluster>/postgresql.conf."""
    match = re.match(r"^%s/([0-9.]+)/([^/]+)/postgresql\.conf$" % re.escape(DEBIAN_CONF_ROOT), config_file or "")
    return (match.group(1), match.group(2)) if match else None


def detect(pid, config_file):
    """dict(kind, unit, version, cluster) of the manager that runs postmaster ``pid``."""
    unit = unit_of_pid(pid) if systemd_running() else None
    cluster = debian_cluster_of(config_file)
    if unit and _DEBIAN_UNIT.match(unit):
        match = _DEBIAN_UNIT.match(unit)
        return dict(kind="debian", unit=unit, version=match.group("version"), cluster=match.group("cluster"))
    if unit and unit not in ("init.scope",) and not unit.startswith(("session-", "user@", "docker", "ssh")):
        return dict(kind="systemd", unit=unit, version=None, cluster=None)
    if cluster:
        return dict(kind="debian", unit=None, version=cluster[0], cluster=cluster[1])
    return dict(kind="pg_ctl", unit=None, version=None, cluster=None)


class ServiceManager:
    """The manager of one instance (``spec``: an InstanceSpec whose ``service`` says the kind)."""

    kind = "pg_ctl"

    def __init__(self, module, spec):
        self.module = module
        self.spec = spec
        self.service = dict(spec.service or {})

    def describe(self):
        return dict(kind=self.kind, unit=self.unit)

    @property
    def unit(self):
        return self.service.get("unit")

    def start(self, port=None):
        """Begin starting the server, on ``port`` or the configured one; return at once."""
        ServerControl(self.module, self.spec).start(port)

    def wait_started(self, timeout=60):
        """Settle the manager's own state once the server is up (outside the window)."""
        return None

    def enabled(self):
        """Whether the server starts at boot: None when nothing starts it (no manager)."""
        return None

    def set_enabled(self, enabled):
        """Make the server start at boot or not; returns True when something changed."""
        return False

    def remove(self):
        """Forget the instance as a service (its unit, its cluster registration); True when something changed."""
        return False

    def settle_stopped(self):
        """Clear what the manager says about a server the cutover stopped by a signal; True when it did."""
        return False

    def _systemctl(self, *args, **kwargs):
        systemctl = self.module.get_bin_path("systemctl", required=True)
        rc, out, err = self.module.run_command([systemctl] + list(args))
        if rc != 0 and kwargs.get("check", True):
            raise OperationError("systemctl %s failed (rc %d): %s" % (" ".join(args), rc, (err or out).strip()),
                                 "see journalctl -u %s" % (self.unit or "the unit"))
        return rc, out


class PgCtl(ServiceManager):
    kind = "pg_ctl"


class SystemdUnit(ServiceManager):
    """A unit of its own; the server is started through it (``--no-block``) so systemd supervises it."""

    kind = "systemd"

    def start(self, port=None):
        if port is not None or not systemd_running():
            return ServerControl(self.module, self.spec).start(port)  # a temporary port: not the unit's server (yet)
        self._systemctl("start", "--no-block", self.unit)

    def wait_started(self, timeout=60):
        if not systemd_running():
            return None
        self._systemctl("start", self.unit)  # waits for the queued job; a server already up is adopted
        return self._systemctl("is-active", self.unit, check=False)[1].strip()

    def enabled(self):
        if not systemd_running():
            return None
        rc, out = self._systemctl("is-enabled", self.unit, check=False)
        return rc == 0 and out.strip() == "enabled"

    def set_enabled(self, enabled):
        if not systemd_running() or self.enabled() == enabled:
            return False
        if not self.module.check_mode:
            self._systemctl("enable" if enabled else "disable", self.unit)
        return True

    def settle_stopped(self):
        """After the cutover stopped the server by a signal, its unit ran ExecStop on a server already gone and may
        say failed: clear that (monitoring reads it).  True when something was cleared."""
        if not systemd_running() or self.unit is None:
            return False
        if self._systemctl("is-failed", "--quiet", self.unit, check=False)[0] != 0:
            return False
        if not self.module.check_mode:
            self._systemctl("reset-failed", self.unit)
        return True

    def remove(self):
        """Disable the unit and remove the unit file when this collection installed it."""
        changed = self.set_enabled(False) if self.enabled() else False
        path = os.path.join(UNIT_DIR, self.unit or "")
        if self.unit and "fleetdb.online_upgrade" in (read_text(path) or ""):
            if not self.module.check_mode:
                os.unlink(path)
                if systemd_running():
                    self._systemctl("daemon-reload")
            changed = True
        return changed

    def install_unit(self, group=None):
        """Write the unit file of an instance this collection created; returns (changed, diff)."""
        env = release_environment(os.path.join(self.spec.bin_dir, "postgres"))
        environment = "".join("Environment=%s=%s\n" % item for item in sorted(env.items()))
        if group is None:
            group = _group_of(self.spec.owner)
        text = UNIT_TEMPLATE % dict(major=os.path.basename(os.path.dirname(self.spec.bin_dir.rstrip("/"))),
                                    bin_dir=self.spec.bin_dir, data_dir=self.spec.data_dir, owner=self.spec.owner,
                                    group=group, environment=environment, **unit_commands(self.spec))
        path = os.path.join(UNIT_DIR, self.unit)
        changed, diff = write_file(self.module, path, text, owner=None, mode=0o644)
        if changed and not self.module.check_mode and systemd_running():
            self._systemctl("daemon-reload")
        return changed, diff


class DebianCluster(SystemdUnit):
    """A postgresql-common cluster.  At boot the generator starts the clusters whose start.conf says auto."""

    kind = "debian"

    @property
    def version(self):
        return self.service.get("version")

    @property
    def cluster(self):
        return self.service.get("cluster") or "main"

    @property
    def unit(self):
        return self.service.get("unit") or "postgresql@%s-%s.service" % (self.version, self.cluster)

    @property
    def start_conf(self):
        return os.path.join(DEBIAN_CONF_ROOT, self.version, self.cluster, "start.conf")

    def describe(self):
        return dict(kind=self.kind, unit=self.unit, version=self.version, cluster=self.cluster,
                    start_conf=self.start_conf, start=self.start_mode())

    def start(self, port=None):
        if port is not None:
            return ServerControl(self.module, self.spec).start(port)
        if systemd_running():
            return self._systemctl("start", "--no-block", self.unit)
        return start_debian_cluster(self.version, self.cluster)

    def wait_started(self, timeout=60):
        if systemd_running():
            return super(DebianCluster, self).wait_started(timeout)
        return None

    def remove(self):
        """pg_dropcluster: the cluster's configuration in /etc/postgresql and its data directory."""
        if not os.path.isdir(os.path.dirname(self.start_conf)):
            return False
        if not self.module.check_mode:
            rc, out, err = self.module.run_command(["pg_dropcluster", "--stop", self.version, self.cluster],
                                                   environ_update={"LC_ALL": "C"})
            if rc != 0:
                raise OperationError("pg_dropcluster %s %s failed: %s" % (self.version, self.cluster, (err or out).strip()),
                                     "see pg_lsclusters; drop it by hand")
        return True

    def start_mode(self):
        text = read_text(self.start_conf) or "auto"
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        return next((line for line in lines if line), "auto")

    def enabled(self):
        return self.start_mode() == "auto"

    def set_enabled(self, enabled):
        """start.conf auto or manual (the generator reads it at boot; daemon-reload now)."""
        mode = "auto" if enabled else "manual"
        if self.start_mode() == mode:
            return False
        text = read_text(self.start_conf) or ""
        lines = [line for line in text.splitlines() if line.strip().startswith("#") or not line.strip()]
        write_file(self.module, self.start_conf, "\n".join(lines + [mode]) + "\n", owner=self.spec.owner, mode=0o644)
        if not self.module.check_mode and systemd_running():
            if not enabled and self._systemctl("is-enabled", self.unit, check=False)[1].strip() == "enabled":
                self._systemctl("disable", self.unit)  # enabled by hand: it would start at boot whatever start.conf says
            self._systemctl("daemon-reload")
        return True


def manager(module, spec):
    kind = (spec.service or {}).get("kind") or "pg_ctl"
    return {"pg_ctl": PgCtl, "systemd": SystemdUnit, "debian": DebianCluster}[kind](module, spec)


def _group_of(user):
    import grp  # pylint: disable=import-outside-toplevel
    _uid, gid, _home = user_ids(user)
    return grp.getgrgid(gid).gr_name
