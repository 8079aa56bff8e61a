# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A PostgreSQL server seen from its files: postmaster.pid, pg_control, its process.

The one place that reads ``postmaster.pid``, tells whether a postmaster lives,
signals it and reads ``pg_controldata``.  What a stopped server's own files say
is the proof the cutover relies on (see ``controldata_xid``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import signal
import struct
import subprocess
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    effective_user, process_argvs, read_text, release_environment)

# Line 8 of postmaster.pid (PostgreSQL 10 and later).
STATUS_READY = "ready"
STATUS_STARTING = "starting"
STATUS_STOPPING = "stopping"


def parse_postmaster_pid(text):
    """postmaster.pid -> dict(pid, data_dir, start_time, port, socket_dir, listen_address, status) or None."""
    lines = (text or "").splitlines()
    if not lines or not lines[0].strip().isdigit():
        return None
    fields = lines + [""] * (8 - len(lines))
    port = fields[3].strip()
    return dict(pid=int(fields[0]), data_dir=fields[1].strip(), start_time=fields[2].strip(),
                port=int(port) if port.isdigit() else None, socket_dir=fields[4].strip() or None,
                listen_address=fields[5].strip() or None, status=fields[7].strip() or None)


def process_alive(pid):
    """True while ``pid`` exists and is not a zombie (EPERM: it exists, but is someone else's)."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    try:
        # A process that exits between the two calls makes this read fail with ESRCH: it is gone.
        with open("/proc/%d/stat" % pid) as stat:
            return ") Z " not in stat.read()
    except OSError:
        return False


def postmaster(data_dir):
    """postmaster.pid of the live postmaster of ``data_dir``, None when none runs (or the file is stale)."""
    info = parse_postmaster_pid(read_text(os.path.join(data_dir, "postmaster.pid")))
    if info and process_alive(info["pid"]):
        return info
    return None


def postmaster_pid(data_dir):
    info = postmaster(data_dir)
    return info["pid"] if info else None


def server_log(data_dir, owner):
    """The file the postmaster of ``data_dir`` writes its log to (its stderr: ``pg_ctl -l``, ``pg_ctlcluster``),
    or None (not running, or logging to the journal or a collector).  Read as its ``owner``: root without
    CAP_SYS_PTRACE (a container) may not look at another user's file descriptors."""
    pid = postmaster_pid(data_dir)
    if pid is None:
        return None
    try:
        with effective_user(owner):
            path = os.readlink("/proc/%s/fd/2" % pid)
    except OSError:
        return None
    return path if path and path.startswith("/") and os.path.isfile(path) else None


def signal_postmaster(data_dir, signum):
    """Send ``signum`` to the postmaster of ``data_dir``; its pid, or None when it was not running."""
    pid = postmaster_pid(data_dir)
    if pid is None:
        return None
    try:
        os.kill(pid, signum)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise
        return None  # it exited between the check and the signal
    return pid


def fast_shutdown(data_dir):
    """Ask for a fast shutdown (SIGINT) without waiting; the pid signalled, or None."""
    return signal_postmaster(data_dir, signal.SIGINT)


def wait_exit(pids, timeout):
    """Wait until every pid in ``pids`` has exited; False at the deadline."""
    deadline = time.monotonic() + timeout
    while any(process_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def kill_working_on(dirs, program=None, timeout=30):
    """SIGKILL every process (only ``program``, if given) whose arguments name one of ``dirs``: what a killed run
    left working on a copy, whose work is thrown away.  Waits until they are gone; returns how many there were."""
    pids = [pid for pid, argv in process_argvs()
            if (program is None or os.path.basename(argv[0]) == program) and any(a.rstrip("/") in dirs for a in argv)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    wait_exit(pids, timeout)
    return len(pids)


def parse_controldata(text):
    """``pg_controldata`` output -> {label: value}."""
    values = {}
    for line in (text or "").splitlines():
        label, sep, value = line.partition(":")
        if sep:
            values[label.strip()] = value.strip()
    return values


class ControlDataError(Exception):
    pass


def controldata(specs):
    """[{label: value}] of ``pg_controldata`` for each spec (bin_dir, data_dir), the programs run side by side.
    pg_control is readable by root and its owner; no server needs to run."""
    procs = []
    for spec in specs:
        argv = [os.path.join(spec.bin_dir, "pg_controldata"), "-D", spec.data_dir]
        env = dict(os.environ, LC_ALL="C", **release_environment(argv[0]))
        procs.append((argv, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                             universal_newlines=True)))
    results = []
    for argv, proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise ControlDataError("%s failed (rc %d): %s" % (" ".join(argv), proc.returncode, (err or out).strip()))
        results.append(parse_controldata(out))
    return results


def system_identifier(data_dir):
    """The database system identifier of a data directory (the first field of global/pg_control), or None.
    It names the server in its subscriptions' table-sync slots on the publisher."""
    try:
        with open(os.path.join(data_dir, "global", "pg_control"), "rb") as control:
            head = control.read(8)
    except (IOError, OSError):
        return None
    return struct.unpack("=Q", head)[0] if len(head) == 8 else None


def controldata_xid(values):
    """The full (epoch-extended) next transaction id of the latest checkpoint, or None."""
    text = values.get("Latest checkpoint's NextXID", "")
    epoch, sep, xid = text.partition(":")
    if not sep or not epoch.strip().isdigit() or not xid.strip().isdigit():
        return None
    return (int(epoch) << 32) | int(xid)


def cleanly_shut_down(values):
    return values.get("Database cluster state") == "shut down"
