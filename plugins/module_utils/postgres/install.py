# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Step 1: put a PostgreSQL release on the host, beside the releases already there.

Two ways, one result (a ``bin_dir`` whose binaries run):
  archive   a binary distribution tarball unpacked into ``<prefix>/<major>``;
            the checksum is verified before anything is written, the tarball is
            unpacked into a temporary directory beside the target and renamed
            into place once its binaries are known to run;
  package   the operating system's package (Debian: postgresql-<major>,
            RPM: postgresql<major>-server from the PGDG repository).

Removal (``remove``, in pg_uninstall) takes away only what no package owns.

One file each: the tarball (install_archive.py), the package (install_package.py), and the check that a
release's binaries run (release_binaries.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Installer
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.install_archive import ArchiveInstall
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.install_package import (
    PackageInstall, package_layout)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.release_binaries import (
    ReleaseBinaries, major_of, requested_release)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.uninstall import ReleaseRemoval

DEFAULT_PREFIX = "/opt/fleetdb/postgresql"


class PostgresInstaller(ReleaseBinaries, ArchiveInstall, PackageInstall, Installer):
    """Installs PostgreSQL releases side by side; every method returns the module's result dict."""

    def __init__(self, module):
        self.module = module

    def release_bin_dir(self, method, version, prefix=None):
        """Where ``method`` puts (or put) the release's binaries: known before it is installed."""
        major = requested_release(version)[0]
        if method == "archive":
            return os.path.join(prefix or DEFAULT_PREFIX, major, "bin")
        return package_layout(self._os_family(), major)[1]

    # -- removal -----------------------------------------------------------------
    def remove(self, module, version, bin_dir):
        """Remove the release whose binaries are in ``bin_dir``, unless a package owns it (pg_uninstall)."""
        def identify(path):
            found = self._binary_version(path, "postgres")
            return dict(version=found, major=major_of(found))
        return ReleaseRemoval(module, identify).remove(requested_release(version)[0], bin_dir)

    # -- archive and package ------------------------------------------------------
    def _already_installed(self, installed, major, full_version, method, **extra):
        if installed["major"] != major:
            raise OperationError("%s holds PostgreSQL %s, not %s" % (installed["bin_dir"], installed["version"], major),
                                 "it is left alone; use another prefix for PostgreSQL %s" % major)
        result = dict(changed=False, method=method, major=major, version=installed["version"],
                      bin_dir=installed["bin_dir"], msg="PostgreSQL %s is installed in %s"
                      % (installed["version"], installed["bin_dir"]))
        result.update(extra)
        self._report_minor(result, full_version)
        return result

    def _report_minor(self, result, full_version):
        """A different minor release is reported, never replaced: binaries under a running server stay put."""
        if full_version and result["version"] != full_version:
            result["requested_version"] = full_version
            self.module.warn("PostgreSQL %s was asked for, %s is installed in %s; minor releases are not "
                             "replaced by this module (stop the servers using it and update it on purpose)"
                             % (full_version, result["version"], result["bin_dir"]))
