# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One PostgreSQL instance on its host: created (initdb, or pg_createcluster for a Debian cluster) and removed.

PostgresInstance is built in layers, each a file: its files and configuration lookups (pg_instance_files), its
settings (pg_instance_settings), its server process (pg_instance_server), its creation here.  The server is set
to start at boot through its service manager (pg_service).  Server commands run as the owner.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, ensure_directory, user_ids)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.cluster_locale import (
    initdb_locale_arguments)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance_server import InstanceServer


DATA_CHECKSUMS_DEFAULT_FROM = 18   # initdb enables data checksums by default from PostgreSQL 18 on


DEFAULT_LOCALE = {"encoding": "UTF8", "locale": "C.UTF-8"}


def initdb_arguments(initdb, data_dir, major, data_checksums=None, locale=None):
    """``locale``: a pg_locale.cluster_locale() dict, DEFAULT_LOCALE when None."""
    argv = [initdb, "-D", data_dir, "--auth-local=peer", "--auth-host=scram-sha-256"]
    argv += initdb_locale_arguments(locale or DEFAULT_LOCALE)
    if data_checksums:
        argv.append("--data-checksums")
    elif data_checksums is False and int(str(major).split(".", maxsplit=1)[0]) >= DATA_CHECKSUMS_DEFAULT_FROM:
        argv.append("--no-data-checksums")
    return argv


class PostgresInstance(InstanceServer):
    """A data directory served by the binaries of ``spec.bin_dir``, run by ``spec.owner``."""

    def create(self, data_checksums=None, locale=None):
        """initdb when there is no data directory yet; returns dict(created, data_checksums)."""
        self.check_owner()
        binaries = self.binaries_major()
        existing = self.major()
        if existing is not None:
            self._check_existing(existing, binaries, data_checksums)
            return dict(created=False, data_checksums=self.data_checksums())
        if os.path.isdir(self.spec.data_dir) and os.listdir(self.spec.data_dir):
            raise OperationError("%s is not empty but is no PostgreSQL data directory (no PG_VERSION)"
                                 % self.spec.data_dir,
                                 "choose an empty or new directory for data_dir; this one is left alone")
        if self.module.check_mode:
            return dict(created=True, data_checksums=data_checksums)
        if self.service.kind == "debian":
            return self._create_cluster(binaries, data_checksums, locale or DEFAULT_LOCALE)
        created_dir = ensure_directory(self.module, self.spec.data_dir, owner=self.spec.owner, mode=0o700)
        argv = initdb_arguments(self._bin("initdb"), self.spec.data_dir, binaries, data_checksums, locale)
        rc, out, err = self._run(argv)
        if rc != 0:
            if created_dir:
                shutil.rmtree(self.spec.data_dir, ignore_errors=True)
            raise OperationError("initdb of %s failed (rc=%d): %s" % (self.spec.data_dir, rc, (err or out).strip()),
                                 "fix the cause shown by initdb (the locale %s must exist on the host, locale -a "
                                 "lists them; a provider's locale must be known to this release)"
                                 % " ".join(initdb_locale_arguments(locale or DEFAULT_LOCALE)))
        if self.service.kind == "systemd":
            self.service.install_unit()  # disabled: the cutover enables it
        return dict(created=True, data_checksums=self.data_checksums())

    def _create_cluster(self, major, data_checksums, locale):
        """A postgresql-common cluster (pg_createcluster, as root), not started and not started at boot
        (start.conf manual) until the cutover makes it the production server."""
        service = self.service
        expected = "/etc/postgresql/%s/%s/postgresql.conf" % (service.version, service.cluster)
        if self.spec.config_file and self.spec.config_file != expected:
            raise OperationError("a postgresql-common cluster keeps its configuration in %s, not %s"
                                 % (expected, self.spec.config_file), "leave config_file unset or set it to %s" % expected)
        if service.version != major:
            raise OperationError("service.version %s is not the release's major version %s" % (service.version, major),
                                 "set service.version to %s" % major)
        argv = ["pg_createcluster", "-u", self.spec.owner, "-d", self.spec.data_dir, "-s", self.spec.socket_dir,
                "--start-conf", "manual"]
        # pg_createcluster's own options for encoding and libc locale (it writes them into postgresql.conf too),
        # initdb's (after --) for the rest
        initdb_options = initdb_arguments("initdb", self.spec.data_dir, major, data_checksums, locale)
        own = ("--encoding=", "--locale=", "--lc-")
        argv += [a for a in initdb_options if a.startswith(own)]
        if self.spec.port:
            argv += ["-p", str(self.spec.port)]
        wanted = [a for a in initdb_options[3:] if not a.startswith(own)]
        argv += [major, service.cluster, "--"] + wanted
        rc, out, err = self.module.run_command(argv, environ_update={"LC_ALL": "C"})
        if rc != 0:
            raise OperationError("pg_createcluster %s %s failed (rc %d): %s"
                                 % (major, service.cluster, rc, (err or out).strip()),
                                 "fix the cause it names; nothing else was changed")
        return dict(created=True, data_checksums=self.data_checksums())

    def remove(self):
        """Stop the server and remove the instance as its layout has it (a Debian cluster with pg_dropcluster, a
        unit file this collection installed, the data directory, its directories in the tablespaces).
        dict(changed, msg)."""
        changed = self.stop("fast")["changed"] if self.postmaster() else False
        changed = self._remove_tablespace_dirs() or changed
        changed = self.service.remove() or changed
        if os.path.isdir(self.spec.data_dir):
            if not self.module.check_mode:
                shutil.rmtree(self.spec.data_dir)
            changed = True
        return dict(changed=changed, msg="removed the instance of %s" % self.spec.data_dir if changed
                    else "there is no instance in %s" % self.spec.data_dir)

    def _remove_tablespace_dirs(self):
        """This instance's own directory (PG_<major>_<catalog version>) in each of its tablespaces: another major
        version's, beside it at the same location, is the other instance's and stays."""
        major, links = self.major(), self._path("pg_tblspc")
        if major is None or not os.path.isdir(links):
            return False
        removed = False
        for name in sorted(os.listdir(links)):
            location = os.path.realpath(os.path.join(links, name))
            for mine in sorted(os.listdir(location)) if os.path.isdir(location) else []:
                if re.match(r"^PG_%s_\d+$" % re.escape(major), mine):
                    if not self.module.check_mode:
                        shutil.rmtree(os.path.join(location, mine))
                    removed = True
        return removed

    def _check_existing(self, existing, binaries, data_checksums):
        if existing != binaries:
            raise OperationError(
                "%s is a data directory of PostgreSQL %s, but bin_dir holds PostgreSQL %s; it is left untouched"
                % (self.spec.data_dir, existing, self.binaries_version()),
                "give each major version its own data_dir (e.g. .../%s/main), or the bin_dir of PostgreSQL %s"
                % (binaries, existing))
        uid, _gid, _home = user_ids(self.spec.owner)
        if os.stat(self.spec.data_dir).st_uid != uid:
            raise OperationError("%s is not owned by %s" % (self.spec.data_dir, self.spec.owner),
                                 "set owner to the user that owns the data directory")
        actual = self.data_checksums()
        if data_checksums is not None and actual is not None and actual != data_checksums:
            raise OperationError(
                "%s has data checksums %s, data_checksums=%s was asked; initdb decides this only once"
                % (self.spec.data_dir, "on" if actual else "off", "true" if data_checksums else "false"),
                "switch them with pg_checksums --%s -D %s while the server is stopped, or drop the option"
                % ("enable" if data_checksums else "disable", self.spec.data_dir))
