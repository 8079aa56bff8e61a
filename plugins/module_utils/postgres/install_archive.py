# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A release from a binary distribution tarball: the checksum verified before anything is written, unpacked
beside ``<prefix>/<major>`` and renamed into place once its binaries run."""

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

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.release_binaries import major_of, requested_release


CHECKSUM_ALGORITHMS = ("sha256", "sha384", "sha512")


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


class ArchiveInstall:
    """The tarball part of PostgresInstaller."""

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


def _remove_if_empty(path):
    try:
        os.rmdir(path)
    except OSError:
        pass
