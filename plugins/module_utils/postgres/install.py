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
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import zlib

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError, parse_version
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import extensions as pg_extensions
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.uninstall import ReleaseRemoval
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Installer

DEFAULT_PREFIX = "/opt/fleetdb/postgresql"
CHECKSUM_ALGORITHMS = ("sha256", "sha384", "sha512")
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


# -- pure helpers ------------------------------------------------------------------

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


def parse_checksum(checksum):
    """'sha256:<hex>' -> ('sha256', '<hex>' in lower case)."""
    algorithm, sep, digest = str(checksum or "").strip().partition(":")
    algorithm = algorithm.lower()
    digest = digest.strip().lower()
    if not sep or algorithm not in CHECKSUM_ALGORITHMS:
        raise OperationError("checksum %r is not of the form <algorithm>:<hex digest>" % checksum,
                             "write it as sha256:<64 hex digits> (sha384 and sha512 work too)")
    expected_length = hashlib.new(algorithm).digest_size * 2
    if not re.match(r"^[0-9a-f]{%d}$" % expected_length, digest):
        raise OperationError("the %s checksum %r must be %d hexadecimal digits" % (algorithm, digest, expected_length),
                             "copy the digest exactly as published with the archive (sha256sum prints it)")
    return algorithm, digest


def file_digest(path, algorithm="sha256"):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _unreadable(archive, exc):
    """The archive cannot be read to its end: cut short by an interrupted copy, damaged, or no tar at all."""
    return OperationError(
        "%s is not a readable tar archive (%s: %s): it is truncated or corrupt, or not a tar archive; "
        "nothing was installed" % (archive, type(exc).__name__, exc),
        "copy it again from the source (pass checksum so that a damaged copy is refused before unpacking); "
        "give a .tar, .tar.gz, .tar.bz2 or .tar.xz binary distribution")


def member_path(name):
    """An archive member's path without leading './'."""
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def single_top_directory(names):
    """The one directory every member of an archive lives in, or None when there is not exactly one."""
    tops = set()
    for name in names:
        path = member_path(name)
        if path and path != ".":
            tops.add(path.split("/", 1)[0])
    return tops.pop() if len(tops) == 1 else None


def unsafe_member(member):
    """Why an archive member would write outside its directory, or None when it is safe."""
    name = member.name
    if name.startswith("/") or ".." in name.split("/"):
        return "its path %s leaves the archive's directory" % name
    if member.islnk() or member.issym():
        target = member.linkname
        base = os.path.dirname(name) if member.issym() else ""
        resolved = os.path.normpath(os.path.join(base, target))
        if target.startswith("/") or resolved.startswith(".."):
            return "its link %s -> %s points outside the archive's directory" % (name, target)
    if member.isdev():
        return "%s is a device file" % name
    return None


def package_layout(family, major):
    """(package name, bin_dir) of a major release on an OS family ('debian' or 'redhat')."""
    if family == "debian":
        return "postgresql-%s" % major, "/usr/lib/postgresql/%s/bin" % major
    return "postgresql%s-server" % major.replace(".", ""), "/usr/pgsql-%s/bin" % major


# -- the installer -------------------------------------------------------------------

class PostgresInstaller(Installer):
    """Installs PostgreSQL releases side by side; every method returns the module's result dict."""

    def __init__(self, module):
        self.module = module

    # -- probing ---------------------------------------------------------------
    def release_bin_dir(self, method, version, prefix=None):
        """Where ``method`` puts (or put) the release's binaries: known before it is installed."""
        major = requested_release(version)[0]
        if method == "archive":
            return os.path.join(prefix or DEFAULT_PREFIX, major, "bin")
        return package_layout(self._os_family(), major)[1]

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

    # -- archive ---------------------------------------------------------------
    def install_archive(self, module, archive, checksum, prefix, version):
        major, full_version = requested_release(version)
        bin_dir = self.release_bin_dir("archive", version, prefix)
        target = os.path.dirname(bin_dir)
        prefix = os.path.dirname(target)
        installed = self.probe(bin_dir)
        if installed:
            return self._already_installed(installed, major, full_version, "archive", install_dir=target)
        if os.path.lexists(target):
            raise OperationError("%s exists but holds no PostgreSQL release (no bin/postgres)" % target,
                                 "move it away or choose another prefix; it is not overwritten")
        if not archive:
            raise OperationError("PostgreSQL %s is not installed in %s and no archive was given" % (major, target),
                                 "set archive to the path of the binary distribution tarball on the host")
        if not os.path.isfile(archive):
            if module.check_mode:  # a check run did not copy it (the copy task only said it would)
                return dict(changed=True, method="archive", major=major, version=full_version or major,
                            bin_dir=bin_dir, install_dir=target, archive=archive, checksum=checksum,
                            msg="would unpack %s into %s once it is on the host (it is not yet)" % (archive, target))
            raise OperationError("the archive %s does not exist on the host" % archive,
                                 "copy it there first (ansible.builtin.copy) or correct the path")
        result = dict(changed=True, method="archive", major=major, version=full_version or major,
                      bin_dir=bin_dir, install_dir=target, archive=archive,
                      checksum=self._verify_checksum(archive, checksum))
        if module.check_mode:
            result["msg"] = "would unpack %s into %s" % (archive, target)
            return result
        result["version"] = self._unpack(archive, prefix, target, major)
        result["msg"] = "unpacked %s into %s" % (archive, target)
        self._report_minor(result, full_version)
        return result

    def _verify_checksum(self, archive, checksum):
        """Check the archive before anything is written; returns the checksum (its sha256 when none is given)."""
        if not checksum:
            return "sha256:%s" % file_digest(archive, "sha256")
        algorithm, expected = parse_checksum(checksum)
        actual = file_digest(archive, algorithm)
        if actual != expected:
            raise OperationError(
                "the %s checksum of %s is %s, not %s as expected: the archive is corrupt or not the one "
                "you meant; nothing was unpacked" % (algorithm, archive, actual, expected),
                "copy the right archive again, or correct checksum if the archive is right")
        return "%s:%s" % (algorithm, expected)

    def _unpack(self, archive, prefix, target, major):
        created = self._make_prefix(prefix)
        staging = tempfile.mkdtemp(prefix=".%s.unpacking-" % major, dir=prefix)
        try:
            top = self._extract(archive, staging)
            release_dir = os.path.join(staging, top)
            version = self._check_release(archive, release_dir, major)
            os.chmod(release_dir, 0o755)
            os.rename(release_dir, target)
        except Exception:
            shutil.rmtree(staging, ignore_errors=True)
            for directory in reversed(created):
                _remove_if_empty(directory)
            raise
        shutil.rmtree(staging, ignore_errors=True)
        return version

    @staticmethod
    def _make_prefix(prefix):
        """Create ``prefix`` and its missing parents (0755); returns those created, outermost first."""
        created = []
        path = prefix
        while not os.path.isdir(path):
            created.insert(0, path)
            path = os.path.dirname(path)
        for directory in created:
            os.mkdir(directory, 0o755)
        return created

    def _extract(self, archive, staging):
        try:
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                top = single_top_directory(m.name for m in members)
                if not top:
                    raise OperationError(
                        "%s does not hold a single top directory (a PostgreSQL binary distribution has "
                        "one, e.g. postgresql-16.15/bin/...)" % archive,
                        "repack it as <name>/bin, <name>/lib, <name>/share or use method=package")
                for member in members:
                    reason = unsafe_member(member)
                    if reason:
                        raise OperationError("%s is not safe to unpack: %s" % (archive, reason),
                                             "use an archive from a trusted build")
                    # Binaries are owned by root, whoever built the archive.
                    member.uid = member.gid = 0
                    member.uname = member.gname = "root"
                if hasattr(tarfile, "fully_trusted_filter"):
                    tar.extractall(staging, members=members, filter="fully_trusted")
                else:
                    tar.extractall(staging, members=members)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
                raise OperationError("unpacking %s failed: %s" % (archive, exc),
                                     "check free space and permissions under %s" % os.path.dirname(staging))
            raise _unreadable(archive, exc)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise _unreadable(archive, exc)
        return top

    def _check_release(self, archive, release_dir, major):
        bin_dir = os.path.join(release_dir, "bin")
        if not os.path.isfile(os.path.join(bin_dir, "postgres")):
            raise OperationError("%s holds no bin/postgres: it is not a PostgreSQL binary distribution" % archive,
                                 "give the server's binary tarball")
        self.check_binaries(bin_dir, lib_dir=os.path.join(release_dir, "lib"))
        version = self._binary_version(bin_dir, "postgres", os.path.join(release_dir, "lib"))
        if major_of(version) != major:
            raise OperationError("%s holds PostgreSQL %s, not %s as requested; nothing was installed"
                                 % (archive, version, major),
                                 "give the archive of PostgreSQL %s or correct version" % major)
        return version

    # -- package ----------------------------------------------------------------
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

    # -- removal -----------------------------------------------------------------
    def remove(self, module, version, bin_dir):
        """Remove the release whose binaries are in ``bin_dir``, unless a package owns it (pg_uninstall)."""
        def identify(path):
            found = self._binary_version(path, "postgres")
            return dict(version=found, major=major_of(found))
        return ReleaseRemoval(module, identify).remove(requested_release(version)[0], bin_dir)

    # -- both --------------------------------------------------------------------
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


def _remove_if_empty(path):
    try:
        os.rmdir(path)
    except OSError:
        pass
