# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A release from the operating system's package (Debian: postgresql-<major>, RPM: postgresql<major>-server from
the PGDG repository)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.release_binaries import C_LOCALE, requested_release


def package_layout(family, major):
    """(package name, bin_dir) of a major release on an OS family ('debian' or 'redhat')."""
    if family == "debian":
        return "postgresql-%s" % major, "/usr/lib/postgresql/%s/bin" % major
    return "postgresql%s-server" % major.replace(".", ""), "/usr/pgsql-%s/bin" % major


class PackageInstall:
    """The package part of PostgresInstaller."""

    def install_package(self, module, version, update_cache=False):
        major, full_version = requested_release(version)
        family = self._os_family()
        package, bin_dir = package_layout(family, major)
        installed = self.probe(bin_dir)
        if installed:
            return self._already_installed(installed, major, full_version, "package", package=package)
        result = dict(changed=True, method="package", major=major, version=full_version or major,
                      bin_dir=bin_dir, package=package)
        if module.check_mode:
            result["msg"] = "would install the package %s" % package
            return result
        if family == "debian":
            result["dropped_cluster"] = self._apt_install(package, major, update_cache)
        else:
            self._dnf_install(package, update_cache)
        installed = self.probe(bin_dir)
        if not installed:
            raise OperationError("the package %s installed, but %s holds no postgres binary" % (package, bin_dir),
                                 "check which files the package installed (dpkg -L / rpm -ql %s)" % package)
        result["version"] = installed["version"]
        result["msg"] = "installed the package %s" % package
        self._report_minor(result, full_version)
        return result

    def _os_family(self):
        if self.module.get_bin_path("apt-get"):
            return "debian"
        if self.module.get_bin_path("dnf") or self.module.get_bin_path("yum"):
            return "redhat"
        raise OperationError("this host has neither apt-get nor dnf/yum",
                             "use method=archive with a binary distribution tarball")

    def _apt_install(self, package, major, update_cache):
        apt = self.module.get_bin_path("apt-get", required=True)
        env = dict(C_LOCALE, DEBIAN_FRONTEND="noninteractive")
        if update_cache:
            self._run_package_manager([apt, "update"], env, package)
        cluster_conf = "/etc/postgresql/%s/main" % major
        had_cluster = os.path.isdir(cluster_conf)
        self._run_package_manager([apt, "install", "-y", "--no-install-recommends", package], env, package)
        if not had_cluster and os.path.isdir(cluster_conf):
            # postgresql-common's postinst made (and started) an empty N/main on the next free port: it is not
            # the instance the upgrade creates, and it would hold the port the old server moves to.
            rc, out, err = self.module.run_command(["pg_dropcluster", "--stop", major, "main"],
                                                   environ_update=dict(C_LOCALE))
            if rc != 0:
                raise OperationError("the package created the cluster %s/main and dropping it failed: %s"
                                     % (major, (err or out).strip()), "drop it: pg_dropcluster --stop %s main" % major)
            self.module.warn("the package %s created the empty cluster %s/main; it was dropped (set "
                             "create_main_cluster = false in /etc/postgresql-common/createcluster.conf to avoid it)"
                             % (package, major))
            return "%s/main" % major
        return None

    def _dnf_install(self, package, update_cache):
        dnf = self.module.get_bin_path("dnf") or self.module.get_bin_path("yum", required=True)
        if update_cache:
            self._run_package_manager([dnf, "makecache"], dict(C_LOCALE), package)
        self._run_package_manager([dnf, "install", "-y", package], dict(C_LOCALE), package)

    def _run_package_manager(self, argv, env, package):
        rc, out, err = self.module.run_command(argv, environ_update=env)
        if rc == 0:
            return
        text = (err or out).strip()
        if re.search(r"Unable to locate package|No match for argument|has no installation candidate", text):
            raise OperationError("no package %s is available from this host's repositories" % package,
                                 "add the PostgreSQL (PGDG) repository, or set update_cache=true if it is "
                                 "configured, or use method=archive")
        raise OperationError("%s failed (rc=%d): %s" % (" ".join(argv[:2]), rc, text[-2000:]),
                             "fix the package manager's problem shown above and run again")
