# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WAL archiving: what a server archives with, a segment switched and waited for until its archiver pushed it.

A new server on its temporary port is started with ``archive_mode = off`` on its command line: its copy of the
data must not push WAL into the old server's archive (a second timeline of the same system identifier there,
or a backup tool that refuses it and fails every few seconds).  Its final start on the production port drops
it: there it archives as its configuration files say, the old server's settings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError, read_text

TEMPORARY_PORT_OPTIONS = ["-c", "archive_mode=off"]

SETTINGS_SQL = """
SELECT current_setting('archive_mode'), current_setting('archive_command'),
       coalesce(current_setting('archive_library', true), ''), pg_is_in_recovery()
"""
SWITCH_SQL = "SELECT pg_walfile_name(pg_switch_wal())"
ARCHIVER_SQL = """
SELECT coalesce(last_archived_wal, ''), archived_count, coalesce(last_failed_wal, ''), failed_count,
       coalesce(to_char(last_failed_time, 'YYYY-MM-DD HH24:MI:SS TZ'), '')
FROM pg_stat_archiver
"""

# How long a switched segment may take to reach the archive.
WAIT_SECONDS = 60
# The archiver tries a segment three times, then waits up to a minute before the next round: three failures
# during the wait are a round given up, whose error is the one to report (not after the rest of the minute).
GIVEN_UP_AFTER_FAILURES = 3


def settings(session):
    """dict(mode, command, library): how the server archives, or None when it archives nothing (archive_mode off,
    a standby without 'always', or neither a command nor a library: archiving paused by its DBA)."""
    mode, command, library, standby = session.query(SETTINGS_SQL).rows[0]
    if mode == "off" or (standby == "t" and mode != "always") or not (command or library):
        return None
    return dict(mode=mode, command=command, library=library)


def status(session):
    """pg_stat_archiver as a dict."""
    last, archived, failed_wal, failed, failed_time = session.query(ARCHIVER_SQL).rows[0]
    return dict(last_archived_wal=last, archived_count=int(archived), last_failed_wal=failed_wal,
                failed_count=int(failed), last_failed_time=failed_time)


def archiver_errors(log_path, lines=200):
    """The archiver's last complaints in the server log (its archive command's own error lines, then
    PostgreSQL's 'archive command failed')."""
    text = read_text(log_path) if log_path else None
    if not text:
        return ""
    tail = text.rstrip("\n").splitlines()[-lines:]
    found = [line for line in tail if "archive" in line.lower() or "ERROR:" in line]
    return "\n".join(found[-6:])


def switch_and_wait(session, what, log_path, fix, timeout=WAIT_SECONDS):
    """Switch to a new WAL segment and wait until the archiver has pushed the one just completed; its name and the
    seconds it took.  Raises OperationError(the archiver's last failure, ``fix``) after ``timeout``."""
    began = time.monotonic()
    segment = session.scalar(SWITCH_SQL)
    before = status(session)
    while True:
        now = status(session)
        if now["last_archived_wal"] >= segment:
            return dict(segment=segment, seconds=round(time.monotonic() - began, 3), **now)
        given_up = now["failed_count"] - before["failed_count"] >= GIVEN_UP_AFTER_FAILURES
        if given_up or time.monotonic() - began > timeout:
            errors = archiver_errors(log_path)
            raise OperationError(
                "%s did not archive WAL segment %s %s: pg_stat_archiver says last archived %s, "
                "%d failures (%d during the wait), the last for %s at %s%s"
                % (what, segment, "(its archiver gave up a round of tries)" if given_up else "within %d s" % timeout,
                   now["last_archived_wal"] or "none", now["failed_count"],
                   now["failed_count"] - before["failed_count"], now["last_failed_wal"] or "none",
                   now["last_failed_time"] or "-",
                   "\nthe archiver's errors in %s:\n%s" % (log_path, errors) if errors else ""),
                fix, archiver=now, segment=segment)
        time.sleep(0.1)
