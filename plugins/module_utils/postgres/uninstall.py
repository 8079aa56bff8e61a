# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Remove a release's directory (``install state=absent``), never files a package manager owns.

The directory is the parent of the release's ``bin``. It is removed only when it holds
``bin/postgres`` of the major version asked for, its own name carries that version, no
running process executes a binary from it, and neither dpkg nor rpm lists a file of it.
Files a package owns are left to the package manager: nothing is removed, the result
names the packages and the command that removes them, and the module warns.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import pwd
import re
import shutil
import tempfile

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, effective_user, process_info, read_text)

C_LOCALE = {"LC_ALL": "C", "LANG": "C"}
RPM_BATCH = 200   # paths per rpm -qf call


# -- pure helpers ------------------------------------------------------------------

def release_dir_of(bin_dir):
    """'/opt/fleetdb/postgresql/15/bin' -> '/opt/fleetdb/postgresql/15'."""
    path = os.path.normpath(str(bin_dir or ""))
    if not os.path.isabs(path) or os.path.basename(path) != "bin" or os.path.dirname(path) == "/":
        raise OperationError("%s is not the bin directory of a release (an absolute path ending in /bin, "
                             "below a directory of its own)" % bin_dir,
                             "give the release's bin directory, e.g. /opt/fleetdb/postgresql/15/bin")
    return os.path.dirname(path)


def names_major(path, major):
    """Whether the directory's own name carries ``major`` ('15', 'pgsql-15', 'postgresql-15.4'; not '16.15')."""
    return re.search(r"(^|[^0-9.])%s($|[^0-9])" % re.escape(major), os.path.basename(path)) is not None


def dpkg_owners(output):
    """Packages that ``dpkg-query -S`` names ('a, b:amd64: /path' lines; diversions aside), sorted, once each."""
    packages = set()
    for line in (output or "").splitlines():
        if line.startswith("diversion by "):
            continue
        owners, sep, _path = line.partition(": /")
        if sep:
            packages.update(name.strip() for name in owners.split(",") if name.strip())
    return sorted(packages)


def rpm_owners(output):
    """Packages that ``rpm -qf --queryformat '%{NAME}\\n'`` names; its 'file ... is not owned' lines aside."""
    return sorted(set(line.strip() for line in (output or "").splitlines()
                      if line.strip() and not re.search(r"\s", line.strip())))


def removal_command(tool, packages):
    """The package manager's own way to remove ``packages``: 'apt-get remove postgresql-15'."""
    return "%s %s %s" % (tool, "-e" if tool == "rpm" else "remove", " ".join(packages))


def leftovers(release_dir):
    """Directories an interrupted removal of ``release_dir`` left (it is renamed aside before it is deleted)."""
    parent, name = os.path.split(release_dir)
    try:
        entries = os.listdir(parent)
    except OSError:
        return []
    return sorted(os.path.join(parent, e) for e in entries if e.startswith(".%s.removing-" % name))


# -- the host ------------------------------------------------------------------------

def executable(pid):
    """The real path of the binary process ``pid`` runs, or None when it is gone or cannot be read."""
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        pass
    # Root without CAP_SYS_PTRACE (a container) may not read another user's exe: argv[0], else as its owner.
    argv0 = (read_text("/proc/%d/cmdline" % pid) or "").split("\0")[0]
    if os.path.isabs(argv0):
        return os.path.realpath(argv0)
    try:
        owner = pwd.getpwuid(os.stat("/proc/%d" % pid).st_uid).pw_name
        with effective_user(owner):
            return os.readlink("/proc/%d/exe" % pid)
    except (KeyError, OSError):
        return None


def running_from(directory):
    """dict(pid, command, cmdline, user) of each process that runs a binary from ``directory``."""
    inside = os.path.realpath(directory).rstrip("/") + "/"
    found = []
    for entry in sorted((e for e in os.listdir("/proc") if e.isdigit()), key=int):
        path = executable(int(entry))
        if path and path.replace(" (deleted)", "").startswith(inside):
            found.append(process_info(int(entry)))
    return found


class ReleaseRemoval:
    """One ``state=absent`` call; ``identify(bin_dir)`` is dict(version, major) of the postgres in ``bin_dir``."""

    def __init__(self, module, identify):
        self.module = module
        self.identify = identify

    def remove(self, major, bin_dir):
        release_dir = release_dir_of(bin_dir)
        result = dict(changed=False, removed=False, major=major, bin_dir=os.path.join(release_dir, "bin"),
                      install_dir=release_dir, packages=[])
        stale = leftovers(release_dir)
        if stale:
            result["changed"] = True
            if not self.module.check_mode:
                for path in stale:
                    shutil.rmtree(path)
        if not os.path.lexists(release_dir):
            result["msg"] = "%s is not there: nothing to remove" % release_dir
            if stale:
                result["msg"] += "; %s what an interrupted removal left: %s" % (
                    "would remove" if self.module.check_mode else "removed", ", ".join(stale))
            return result
        result["version"] = self._check_release(release_dir, major)
        owners, command = self.package_owners(release_dir)
        if owners:
            result.update(packages=owners, package_remove_command=command, msg=(
                "PostgreSQL %s in %s belongs to the package%s %s: nothing was removed; the package manager "
                "removes it: %s" % (result["version"], release_dir, "s" if len(owners) > 1 else "",
                                    ", ".join(owners), command)))
            self.module.warn(result["msg"])
            return result
        result.update(changed=True, removed=True)
        if self.module.check_mode:
            result["msg"] = "would remove PostgreSQL %s: %s" % (result["version"], release_dir)
            return result
        self._delete(release_dir)
        result["msg"] = "removed PostgreSQL %s: %s" % (result["version"], release_dir)
        return result

    def _check_release(self, release_dir, major):
        """The version of the release in ``release_dir``; OperationError when it is not one to remove."""
        if os.path.islink(release_dir):
            raise OperationError("%s is a symbolic link (to %s); nothing was removed"
                                 % (release_dir, os.path.realpath(release_dir)),
                                 "give the bin directory of the release itself, or remove the link by hand")
        if not os.path.isfile(os.path.join(release_dir, "bin", "postgres")):
            raise OperationError("%s holds no bin/postgres: it is not a PostgreSQL release directory; nothing "
                                 "was removed" % release_dir,
                                 "give the bin directory of the release to remove; remove anything else by hand")
        try:
            found = self.identify(os.path.join(release_dir, "bin"))
        except OperationError as exc:
            raise OperationError("cannot tell which release %s holds (%s); nothing was removed"
                                 % (release_dir, exc.msg),
                                 "remove it by hand once you are sure it is PostgreSQL %s and no server uses it"
                                 % major)
        if found["major"] != major:
            raise OperationError("%s holds PostgreSQL %s, not %s: nothing was removed"
                                 % (release_dir, found["version"], major),
                                 "give the bin directory of PostgreSQL %s (the new release is never removed)" % major)
        if not names_major(release_dir, major):
            raise OperationError("the name of %s does not say PostgreSQL %s (a release directory is named like "
                                 "%s, pgsql-%s or postgresql-%s.4): nothing was removed"
                                 % (release_dir, major, major, major, major),
                                 "remove it by hand if it holds nothing but PostgreSQL %s" % major)
        users = running_from(release_dir)
        if users:
            raise OperationError("PostgreSQL %s in %s is in use by %s; nothing was removed" % (
                found["version"], release_dir, "; ".join("pid %d (%s, user %s)" % (
                    p["pid"], p["cmdline"] or p["command"], p["user"]) for p in users)),
                "stop the servers of PostgreSQL %s first; the release a server runs is never removed" % major,
                processes=users)
        return found["version"]

    # -- package managers -----------------------------------------------------------
    def package_owners(self, release_dir):
        """(packages that own the directory or a file in it, the command that removes them); ([], None): none."""
        real = os.path.realpath(release_dir)
        dpkg = self.module.get_bin_path("dpkg-query")
        if dpkg:
            patterns = []
            for path in sorted(set([release_dir, real])):
                patterns += [path, path + "/*"]
            rc, out, err = self.module.run_command([dpkg, "-S"] + patterns, environ_update=dict(C_LOCALE))
            if rc not in (0, 1):  # 1: some pattern matched no package's file, an answer
                raise self._unanswered("dpkg-query", rc, err or out)
            owners = dpkg_owners(out)
            if owners:
                return owners, removal_command("apt-get", owners)
        rpm = self.module.get_bin_path("rpm")
        if rpm:
            owners = sorted(self._rpm_owners(rpm, real))
            if owners:
                tool = next((t for t in ("dnf", "yum") if self.module.get_bin_path(t)), "rpm")
                return owners, removal_command(tool, owners)
        return [], None

    def _rpm_owners(self, rpm, real):
        paths = [real]
        for top, dirs, files in os.walk(real):
            paths.extend(os.path.join(top, name) for name in sorted(dirs) + sorted(files))
        owners = set()
        for start in range(0, len(paths), RPM_BATCH):
            rc, out, err = self.module.run_command([rpm, "-qf", "--queryformat", "%{NAME}\\n"]
                                                   + paths[start:start + RPM_BATCH], environ_update=dict(C_LOCALE))
            # rpm exits with the number of paths no package owns: only its error lines say it could not answer.
            errors = [line for line in err.splitlines() if line.startswith("error:") and "No such file" not in line]
            if errors:
                raise self._unanswered("rpm", rc, "\n".join(errors))
            owners.update(rpm_owners(out))
        return owners

    @staticmethod
    def _unanswered(tool, rc, text):
        return OperationError("%s cannot say which package owns the files (rc=%d): %s; nothing was removed"
                              % (tool, rc, text.strip()[-1000:]), "repair the package database, then run again")

    @staticmethod
    def _delete(release_dir):
        """Rename the directory aside, then delete it: an interrupted run leaves no half release in its place."""
        parent, name = os.path.split(release_dir)
        aside = None
        try:
            aside = tempfile.mkdtemp(prefix=".%s.removing-" % name, dir=parent)
            os.rename(release_dir, os.path.join(aside, name))
        except OSError as exc:
            if aside:
                os.rmdir(aside)
            raise OperationError("cannot move %s aside to remove it: %s; nothing was removed" % (release_dir, exc),
                                 "check the permissions of %s; a mount point is not removed (unmount it first)" % parent)
        shutil.rmtree(aside)
