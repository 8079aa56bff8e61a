# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-side helpers shared by every engine: users, files with diff, ports, timings."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import grp
import os
import pwd
import re
import socket
import tempfile
import time


def human_bytes(size):
    """1234567 -> '1.2 MB' (binary units), for messages."""
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1024 or unit == "PB":
            return "%d bytes" % size if unit == "bytes" else "%.1f %s" % (value, unit)
        value /= 1024
    return str(size)


class OperationError(Exception):
    """A failure the operator can act on: ``msg`` says what happened, ``fix`` what to do."""

    def __init__(self, msg, fix=None, **details):
        super(OperationError, self).__init__(msg)
        self.msg = msg
        self.fix = fix
        self.details = details

    def as_result(self):
        text = self.msg if not self.fix else "%s. Fix: %s" % (self.msg.rstrip("."), self.fix)
        result = dict(msg=text)
        result.update(self.details)
        return result


class DatabaseError(Exception):
    """An error the database server reported, or its connection: an engine's client raises a subclass."""


def parse_version(text):
    """'postgres (PostgreSQL) 16.15 (Debian 16.15-1)' -> (16, 15), '18' -> (18,); None when there is no version."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not match:
        match = re.search(r"(\d+)(?:devel|beta|rc)", text or "")
        if match:
            return (int(match.group(1)), 0)
        match = re.match(r"\s*(\d+)\s*$", text or "")
        return (int(match.group(1)),) if match else None
    return tuple(int(part) for part in match.groups() if part is not None)


def user_ids(user):
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise OperationError("the operating system user %s does not exist" % user,
                             "create it first (ansible.builtin.user) or name an existing owner")
    return entry.pw_uid, entry.pw_gid, entry.pw_dir


def release_environment(binary):
    """Environment a release's program needs to find its own shared libraries.

    Relocatable binary distributions find libpq through ``$ORIGIN/../lib``, but the
    libraries the server loads later (libpqwalreceiver for a subscription) carry the
    build's prefix as RUNPATH.  With the release's lib directory on LD_LIBRARY_PATH the
    server finds them wherever the release was unpacked.
    """
    lib_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(binary))), "lib")
    if os.path.exists(os.path.join(lib_dir, "libpq.so.5")):
        return {"LD_LIBRARY_PATH": lib_dir}
    return {}


def run_as(module, user, argv, check_rc=False, **kwargs):
    """Run ``argv`` as ``user`` (via runuser when we are root and someone else)."""
    if argv and os.path.isabs(argv[0]):
        env = release_environment(argv[0])
        env.update(kwargs.get("environ_update") or {})
        kwargs["environ_update"] = env
    if user and os.geteuid() == 0 and user != "root":
        argv = ["runuser", "-u", user, "--"] + list(argv)
    return module.run_command(argv, check_rc=check_rc, **kwargs)


@contextlib.contextmanager
def effective_user(user):
    """Temporarily take ``user``'s uid so that peer authentication on a Unix socket sees it."""
    if not user or os.geteuid() != 0 or user == "root":
        yield
        return
    uid, gid, _home = user_ids(user)
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def read_text(path):
    """The file's text, or None when it does not exist - or, under /proc, when its process exited while it was
    read (the read then fails with ESRCH: a process scan must not fail on a backend that just ended)."""
    try:
        with open(path) as handle:
            return handle.read()
    except IOError as exc:
        if exc.errno in (errno.ENOENT, errno.ESRCH):
            return None
        raise


def write_file(module, path, content, owner=None, mode=0o600):
    """Write ``content`` atomically when it differs.  Returns (changed, diff) and honours check mode."""
    before = read_text(path)
    diff = {"before_header": path, "after_header": path, "before": before or "", "after": content}
    if before == content:
        return False, diff
    if not module.check_mode:
        replace_file(path, content.encode("utf-8"), owner, mode)
    return True, diff


def replace_file(path, data, owner=None, mode=0o600):
    """Put ``data`` (bytes) at ``path`` at once: written beside it with its mode and owner, then renamed."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".fleetdb-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        if owner and os.geteuid() == 0:
            uid, gid, _home = user_ids(owner)
            os.chown(tmp, uid, gid)
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def ensure_directory(module, path, owner=None, mode=0o700):
    """Create ``path`` (and parents) owned by ``owner``.  Returns True when it was created."""
    if os.path.isdir(path):
        return False
    if not module.check_mode:
        os.makedirs(path, mode)
        os.chmod(path, mode)
        if owner and os.geteuid() == 0:
            uid, gid, _home = user_ids(owner)
            os.chown(path, uid, gid)
    return True


def _listening_inodes(port):
    """Socket inodes listening on TCP ``port`` (IPv4 and IPv6), from /proc/net."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        text = read_text(table) or ""
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A = LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_holder(port):
    """Who listens on TCP ``port``: None, or dict(pid, command, cmdline, user).

    ``pid`` is None when the port is held but the process is not visible to us
    (another user's process while we are not root, or another namespace).
    """
    inodes = _listening_inodes(int(port))
    if not inodes:
        return None
    wanted = set("socket:[%s]" % inode for inode in inodes)
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        fd_dir = "/proc/%s/fd" % pid
        try:
            for fd in os.listdir(fd_dir):
                if os.readlink(os.path.join(fd_dir, fd)) in wanted:
                    return process_info(int(pid))
        except OSError:
            continue
    return dict(pid=None, command=None, cmdline=None, user=None)


def process_argvs():
    """(pid, argv) of every process on the host that is still there once read, this one excepted."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            cmdline = read_text("/proc/%s/cmdline" % entry)
            if cmdline:
                yield int(entry), cmdline.rstrip("\0").split("\0")


def process_info(pid):
    """dict(pid, command, cmdline, user) of a process, from /proc (fields None or empty once it is gone)."""
    cmdline = (read_text("/proc/%d/cmdline" % pid) or "").replace("\0", " ").strip()
    command = (read_text("/proc/%d/comm" % pid) or "").strip()
    try:
        user = pwd.getpwuid(os.stat("/proc/%d" % pid).st_uid).pw_name
    except (KeyError, OSError):
        user = None
    return dict(pid=pid, command=command, cmdline=cmdline, user=user)


def port_accepts(host, port, timeout=0.5):
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except (OSError, socket.error):
        return False


def group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class PhaseTimer:
    """Measures named phases; ``timings`` maps phase -> seconds (3 decimals), ``order`` lists them as they began
    (a result's dict loses its order on the way to the controller), ``started`` maps phase -> wall-clock start
    (epoch seconds: to set a client's stall beside the phase it fell in)."""

    def __init__(self):
        self.timings = {}
        self.order = []
        self.started = {}
        self._start = time.monotonic()

    @contextlib.contextmanager
    def phase(self, name):
        began = time.monotonic()
        self.order.append(name)
        self.started[name] = round(time.time(), 3)
        try:
            yield
        finally:
            self.timings[name] = round(time.monotonic() - began, 3)

    def mark(self):
        return time.monotonic()

    def since(self, mark):
        return round(time.monotonic() - mark, 3)

    @property
    def total(self):
        return round(time.monotonic() - self._start, 3)
