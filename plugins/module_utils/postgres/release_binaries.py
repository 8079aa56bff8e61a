# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A PostgreSQL release's binaries: its version, and whether they run on this host (a missing shared library
named with the Debian package that provides it)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError, parse_version
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import extensions as pg_extensions


# Binaries an upgrade runs: the server and its control tools, and the client tools migrate uses.
REQUIRED_BINARIES = ("postgres", "initdb", "pg_ctl")
CHECKED_BINARIES = REQUIRED_BINARIES + ("pg_controldata", "pg_dump", "pg_restore", "psql")
C_LOCALE = {"LC_ALL": "C", "LANG": "C"}

# Shared library (name prefix) -> the Debian 12 package that provides it.
DEBIAN_LIBRARY_PACKAGES = (
    ("libicu", "libicu72"),
    ("libreadline", "libreadline8"),
    ("libxml2", "libxml2"),
    ("libxslt", "libxslt1.1"),
    ("libzstd", "libzstd1"),
    ("liblz4", "liblz4-1"),
    ("libssl", "libssl3"),
    ("libcrypto", "libssl3"),
    ("libgssapi_krb5", "libgssapi-krb5-2"),
    ("libldap", "libldap-2.5-0"),
    ("liblber", "libldap-2.5-0"),
    ("libz.", "zlib1g"),
    ("libuuid", "libuuid1"),
    ("libsystemd", "libsystemd0"),
    ("libpam", "libpam0g"),
    ("libselinux", "libselinux1"),
)


def major_of(version):
    """'16' / '16.15' / 'postgres (PostgreSQL) 16.15' -> '16'; '9.6.24' -> '9.6'; None when there is none."""
    match = re.search(r"(\d+)(?:\.(\d+))?", str(version or ""))
    if not match:
        return None
    first = int(match.group(1))
    if first >= 10 or match.group(2) is None:
        return str(first)
    return "%d.%s" % (first, match.group(2))


def requested_release(version):
    """Split the ``version`` option: '16' -> ('16', None); '16.15' -> ('16', '16.15')."""
    text = str(version or "").strip()
    if not re.match(r"^\d+(\.\d+){0,2}$", text):
        raise OperationError("version %r is not a PostgreSQL version" % text,
                             "give a major version such as \"16\" or a full one such as \"16.15\" (quoted in YAML)")
    major = major_of(text)
    return major, (text if text != major else None)


def version_string(text):
    """'postgres (PostgreSQL) 16.15 (Debian 16.15-1.pgdg120+1)' -> '16.15'."""
    parts = parse_version(text)
    return ".".join(str(p) for p in parts) if parts else None


def missing_libraries(ldd_output):
    """Library names ldd could not resolve ('libzstd.so.1 => not found'), in order, once each."""
    missing = []
    for line in (ldd_output or "").splitlines():
        match = re.match(r"^\s*(\S+)\s+=>\s+not found", line)
        if match and match.group(1) not in missing:
            missing.append(match.group(1))
    return missing


def loader_error_library(output):
    """The library named by the dynamic loader when a binary cannot start, or None."""
    match = re.search(r"error while loading shared libraries: ([^:\s]+):", output or "")
    return match.group(1) if match else None


def debian_package_for(library):
    """The Debian 12 package that provides ``library`` (e.g. 'libzstd.so.1' -> 'libzstd1'), or None."""
    for prefix, package in DEBIAN_LIBRARY_PACKAGES:
        if library.startswith(prefix):
            return package
    return None


def describe_missing(libraries):
    """'libzstd.so.1 (Debian package libzstd1), libfoo.so.2' for an error message."""
    described = []
    for library in libraries:
        package = debian_package_for(library)
        described.append("%s (Debian package %s)" % (library, package) if package else library)
    return ", ".join(described)


def install_hint(libraries):
    packages = sorted(set(p for p in (debian_package_for(lib) for lib in libraries) if p))
    unknown = [lib for lib in libraries if not debian_package_for(lib)]
    hints = []
    if packages:
        hints.append("install %s (apt-get install %s, or the equivalent package on this system)"
                     % (", ".join(packages), " ".join(packages)))
    if unknown:
        hints.append("find the package that provides %s (apt-file search / dnf provides) and install it"
                     % ", ".join(unknown))
    return "; ".join(hints) + ", then run again"


class ReleaseBinaries:
    """The probing part of PostgresInstaller."""

    def check_provides(self, bin_dir, major, required):
        """Fail, naming each, when the release in ``bin_dir`` lacks an extension or a library the databases use."""
        missing = pg_extensions.shortfalls(self.module, bin_dir, required)
        if missing:
            raise OperationError("PostgreSQL %s in %s lacks what the old server's databases use (no instance of it "
                                 "exists yet; the old server is unchanged): %s" % (major, bin_dir, "; ".join(missing)),
                                 pg_extensions.shortfall_fix(major), missing=missing)

    def probe(self, bin_dir):
        """dict(version, major, bin_dir) of the release in ``bin_dir``, None when there is none.

        Binaries that exist but do not run raise the error that says why (a missing library).
        """
        if not os.path.isfile(os.path.join(bin_dir, "postgres")):
            return None
        self.check_binaries(bin_dir)
        version = self._binary_version(bin_dir, "postgres")
        return dict(version=version, major=major_of(version), bin_dir=bin_dir)

    def check_binaries(self, bin_dir, lib_dir=None):
        """Run every binary an upgrade needs; a missing library is an error that names it and its package."""
        for name in REQUIRED_BINARIES:
            if not os.path.isfile(os.path.join(bin_dir, name)):
                raise OperationError("%s is missing from %s" % (name, bin_dir),
                                     "install a complete server release (the archive or package is incomplete)")
        missing = []
        for name in CHECKED_BINARIES:
            path = os.path.join(bin_dir, name)
            if os.path.isfile(path):
                missing.extend(lib for lib in self._unresolved_libraries(path, lib_dir) if lib not in missing)
        if missing:
            raise OperationError(
                "the PostgreSQL binaries in %s cannot run: shared librar%s not found: %s"
                % (bin_dir, "y" if len(missing) == 1 else "ies", describe_missing(missing)),
                install_hint(missing), missing_libraries=missing)
        for name in REQUIRED_BINARIES:
            self._binary_version(bin_dir, name, lib_dir)

    def _unresolved_libraries(self, path, lib_dir):
        ldd = self.module.get_bin_path("ldd")
        if not ldd:
            return []
        _rc, out, err = self.module.run_command([ldd, path], environ_update=self._env(lib_dir))
        return missing_libraries(out + err)

    def _binary_version(self, bin_dir, name, lib_dir=None):
        path = os.path.join(bin_dir, name)
        rc, out, err = self.module.run_command([path, "--version"], environ_update=self._env(lib_dir))
        library = loader_error_library(err)
        if library:
            raise OperationError("%s cannot run: shared library %s not found" % (path, describe_missing([library])),
                                 install_hint([library]), missing_libraries=[library])
        version = version_string(out) if rc == 0 else None
        if not version:
            raise OperationError("%s --version failed (rc=%d): %s" % (path, rc, (err or out).strip()),
                                 "check that the binaries match this host's architecture and C library")
        return version

    @staticmethod
    def _env(lib_dir):
        env = dict(C_LOCALE)
        if lib_dir:
            # Binaries checked before their final rename find their own libraries like after it.
            env["LD_LIBRARY_PATH"] = lib_dir
        return env
