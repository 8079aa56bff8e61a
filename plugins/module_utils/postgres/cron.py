# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_cron: its jobs held back on a server that must not run them, paused and given back on one that did.

The launcher (a background worker) runs the jobs of ``cron.job`` in the database ``cron.database_name``;
its tables replicate like any other.  A new server on its temporary port is started with
``cron.launch_active_jobs = off`` on its command line (pg_cron 1.6 and later), which a reload cannot undo and
its final start on the production port drops: there it runs with what its configuration files say, the old
server's settings.  On the old server the jobs are paused instead (``active = false``, the ids kept to give
them back), just before the fence: that works with every pg_cron, Debian 12's 1.4 has no such setting.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError

LAUNCHER = "pg_cron launcher"
JOB_WORKER = "pg_cron"   # a job run by a background worker (cron.use_background_workers = on)
HOLD_JOBS = "cron.launch_active_jobs"
HOLD_JOBS_SINCE = (1, 6)

# The database of pg_cron's tables, when the library is loaded and the extension exists there.
DATABASE_SQL = "SELECT current_setting('cron.database_name', true)"
INSTALLED_SQL = "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'"

ACTIVE_SQL = "SELECT jobid FROM cron.job WHERE active ORDER BY jobid FOR UPDATE"
PAUSE_SQL = "UPDATE cron.job SET active = false WHERE jobid = ANY($1::bigint[])"
RESUME_SQL = "UPDATE cron.job SET active = true WHERE jobid = ANY($1::bigint[]) AND NOT active"

# Runs not finished: their row in job_run_details (cron.log_run) or their session, as a worker or over libpq.
RUNNING_SQL = """
SELECT (SELECT count(*) FROM cron.job_run_details WHERE status NOT IN ('succeeded', 'failed'))
     + (SELECT count(*) FROM pg_stat_activity WHERE backend_type = $1 OR application_name = 'pg_cron')
"""

# How long the launcher may take to read a change of cron.job (it wakes at least once a second).
LAUNCHER_WAKE = 1.5


def _version(text):
    return tuple(int(part) for part in re.findall(r"\d+", text or "")[:2])


def holds_jobs(version):
    """Whether pg_cron ``version`` knows cron.launch_active_jobs."""
    return version is not None and _version(version) >= HOLD_JOBS_SINCE


def temporary_port_options(release_version):
    """Command-line settings of a server started on a temporary port, with pg_cron ``release_version`` (None: no
    pg_cron) in its release: no pg_cron job runs there."""
    return ["-c", "%s=off" % HOLD_JOBS] if holds_jobs(release_version) else []


def database(session):
    """The database of pg_cron's jobs if the server runs its launcher (the library is loaded), else None."""
    return session.scalar(DATABASE_SQL) or None


def installed(session):
    """pg_cron's version in the database of ``session``, or None."""
    return session.scalar(INSTALLED_SQL)


def pause_jobs(session, record):
    """Mark every active job inactive; ``record(ids)`` keeps their ids, to give them back, before the pause
    commits (a kill in between leaves them active, or paused and recorded)."""
    session.execute("BEGIN")
    try:
        job_ids = [int(row[0]) for row in session.query(ACTIVE_SQL).rows]
        record(job_ids)
        session.query(PAUSE_SQL, [job_ids])
        session.execute("COMMIT")
    except Exception:
        if not session.closed:
            session.execute("ROLLBACK")
        raise
    return job_ids


def resume_jobs(session, job_ids):
    """Mark the jobs ``job_ids`` active again (those still there)."""
    if job_ids:
        session.query(RESUME_SQL, [list(job_ids)])


def wait_jobs_ended(session, timeout, since):
    """Once the launcher has seen the pause (``since``: when it was made), wait until no run is left: the launcher
    writes a run's end into job_run_details, which must happen before the drain."""
    time.sleep(max(0.0, since + LAUNCHER_WAKE - time.monotonic()))
    deadline = time.monotonic() + timeout
    while True:
        running = int(session.scalar(RUNNING_SQL, [JOB_WORKER]))
        if not running:
            return
        if time.monotonic() > deadline:
            raise OperationError("%d pg_cron job runs did not end within %d s of their jobs' pause" % (running, timeout),
                                 "see cron.job_run_details (status running) and pg_stat_activity (application_name "
                                 "pg_cron) on the old server; run again when they end or raise drain_timeout (the "
                                 "jobs were given back)")
        time.sleep(0.05)
