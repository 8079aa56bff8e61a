# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One PostgreSQL instance on its host as its files show it: data directory, versions, configuration lookups.

The bottom of PostgresInstance (pg_instance): where its files are, what the configuration files say (postgres -C,
through pg_server_control), its postmaster.pid, its sessions, and the commands run as the owner.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, ensure_directory, parse_version, read_text, run_as, user_ids)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Instance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.conf import MANAGED_FILE, with_socket_dir
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.install import major_of
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import (
    ControlDataError, controldata, postmaster)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.hba import hba_path
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.server_control import (
    ServerControl, log_file, reload)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.service import manager as service_manager
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect as pg_connect


class InstanceFiles(Instance):
    """The files of a data directory served by the binaries of ``spec.bin_dir``, run by ``spec.owner``."""

    def __init__(self, module, spec):
        super(InstanceFiles, self).__init__(module, spec)
        self._contexts = None
        self._binaries_version = None
        self.service = service_manager(module, spec)
        self.control = ServerControl(module, spec)

    # -- paths ------------------------------------------------------------------

    def _path(self, *names):
        return os.path.join(self.spec.data_dir, *names)

    @property
    def conf_file(self):
        """fleetdb.conf, beside postgresql.conf (which includes it)."""
        return os.path.join(os.path.dirname(self.main_conf), MANAGED_FILE)

    @property
    def main_conf(self):
        return self.spec.config_file or self._path("postgresql.conf")

    def hba_path(self):
        return hba_path(self.module, self.spec)

    def ident_path(self):
        return self.show_configured("ident_file") or self._path("pg_ident.conf")

    @property
    def log_file(self):
        return log_file(self.spec)

    def _bin(self, name):
        return os.path.join(self.spec.bin_dir, name)

    # -- commands as the owner -------------------------------------------------------

    def _run(self, argv, **kwargs):
        # cwd=/ : the owner may not be allowed into the module's working directory (root's home).
        return run_as(self.module, self.spec.owner, argv, cwd="/", **kwargs)

    def check_owner(self):
        """The server never runs as root; a module not running as root can only act as itself."""
        owner = self.spec.owner
        if owner == "root":
            raise OperationError("PostgreSQL refuses to run as root and so does this module",
                                 "set owner to the unprivileged user that owns the data directory (e.g. postgres)")
        uid, _gid, _home = user_ids(owner)
        if os.geteuid() not in (0, uid):
            raise OperationError("the module runs as uid %d and cannot act as %s" % (os.geteuid(), owner),
                                 "run it with become: true, or as %s" % owner)

    def binaries_version(self):
        """'16.15' from ``postgres --version`` of ``bin_dir``."""
        if self._binaries_version is None:
            postgres = self._bin("postgres")
            if not os.path.isfile(postgres):
                raise OperationError("%s has no postgres binary" % self.spec.bin_dir,
                                     "install the release first (fleetdb.online_upgrade.install) and pass its bin_dir")
            rc, out, err = self.module.run_command([postgres, "--version"], environ_update={"LC_ALL": "C"})
            parts = parse_version(out) if rc == 0 else None
            if not parts:
                raise OperationError("%s --version failed: %s" % (postgres, (err or out).strip()),
                                     "check the installation with fleetdb.online_upgrade.install")
            self._binaries_version = ".".join(str(p) for p in parts)
        return self._binaries_version

    def binaries_major(self):
        return major_of(self.binaries_version())

    # -- what is there ---------------------------------------------------------------

    def major(self):
        """Major version of the data directory (PG_VERSION), None when it is no data directory."""
        text = read_text(self._path("PG_VERSION"))
        return text.strip() if text else None

    def postmaster(self):
        """postmaster.pid of a running server, None when the server is not running (or the file is stale)."""
        return postmaster(self.spec.data_dir)

    def configured_port(self):
        """The port the configuration files set (what the server takes when started without -p)."""
        value = self.show_configured("port")
        if value and value.isdigit():
            return int(value)
        return None

    def show_configured(self, name):
        """``postgres -C name``: a setting's value from the configuration files, None when they do not load."""
        if self.major() is None:
            return None
        rc, out, _err = self.control.postgres_c(name)
        return out.strip() if rc == 0 else None

    def _config_error(self, settings=None):
        """The error postgres reports when loading the configuration files (with ``settings`` given as -c
        options, which it checks like the files' values), None when they load."""
        rc, out, err = self.control.postgres_c("port", settings)
        if rc == 0:
            return None
        # Drop the log line prefix ('2026-01-01 10:00:00.000 UTC [123] '): the messages are what matters.
        lines = [re.sub(r"^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] ", "", line)
                 for line in (err or out).splitlines() if line.strip()]
        return " ".join(lines[-4:]) or "postgres -C port failed with rc=%d" % rc

    def _require_data_dir(self):
        if self.major() is None:
            raise OperationError("%s is not a PostgreSQL data directory" % self.spec.data_dir,
                                 "create the instance first (fleetdb.online_upgrade.instance)")
        if self.major() != self.binaries_major():
            raise OperationError("%s is a data directory of PostgreSQL %s, bin_dir holds PostgreSQL %s"
                                 % (self.spec.data_dir, self.major(), self.binaries_version()),
                                 "pass the bin_dir of PostgreSQL %s" % self.major())

    def data_checksums(self):
        """Whether the data directory has page checksums (pg_controldata), None when unknown."""
        if self.major() is None or not os.path.isfile(self._bin("pg_controldata")):
            return None
        try:
            version = controldata([self.spec])[0].get("Data page checksum version")
        except ControlDataError:
            return None
        return None if version is None else version != "0"

    def socket_directories(self):
        """Every directory the server is to serve its socket in: spec.socket_directories and socket_dir."""
        return with_socket_dir(self.spec.socket_directories or [], self.spec.socket_dir)

    def ensure_socket_dir(self):
        """The socket directories, created owner-owned 2775 like postgresql-common does; True when one was created.
        Abstract sockets (@name) and relative entries (under the data directory) need no directory here."""
        created = False
        for directory in self.socket_directories():
            if directory.startswith("/"):
                created = ensure_directory(self.module, directory, owner=self.spec.owner, mode=0o2775) or created
        return created

    def reload(self):
        """Make a running server read its configuration files again; False when it is not running."""
        if self.module.check_mode:
            return self.postmaster() is not None
        return reload(self.spec.data_dir)

    def connect(self, dbname=None, port=None):
        info = self.postmaster()
        return pg_connect(self.spec, dbname=dbname, port=port or (info["port"] if info else None))
