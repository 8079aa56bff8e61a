# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_cron's jobs at the cutover (pg_switchover): no job runs twice, none inside the window.

The new server has run with its jobs held back since it was started on its temporary port (postgres/cron.py).
Just before the window the old server's active jobs are paused (their ids kept in the state file) and the
cutover waits, at most ``drain_timeout``, until their runs have ended, so that the launcher writes nothing
after the drain.  Inside the window, once drained and before the rollback slot exists, the same jobs are
made active on the new server: they run there from its start on the production port, and a rollback does not
replay it to the old server.  A cutover that fails, at any point the old server serves again, gives the old
server its jobs back; so does the re-run of one that was killed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import cron as pg_cron, pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.schema_check import SchemaCheck

PAUSED = "pg_cron_paused_jobs"
DATABASE = "pg_cron_database"


class CronJobs:
    """pg_cron's part of PostgresSwitchover."""

    def _find_cron_jobs(self, schemas_not_compared):
        """The database of the old server's pg_cron jobs, if it has them among the upgraded ones; jobs an interrupted
        run paused are given back first.  The cron schema is the extension's own: its version on the new release
        may differ (jobname is text since 1.5), so it is left out of the schema check."""
        database = pg_cron.database(self._old(self.databases[0]))
        if database not in self.databases or not pg_cron.installed(self._old(database)):
            return
        self._cron_db = database
        self._schema = SchemaCheck(tuple(schemas_not_compared) + ("cron",))
        self.report["pg_cron"] = dict(database=database)
        if self.state.data.get(PAUSED) and not self.module.check_mode:
            self._give_jobs_back(self._old(database))

    def _pause_cron_jobs(self):
        if not self._cron_db:
            return
        old = self._old(self._cron_db)
        paused = pg_cron.pause_jobs(old, self._record_paused)
        self.report["pg_cron"]["paused_jobs"] = paused
        try:
            pg_cron.wait_jobs_ended(old, self.drain_timeout, time.monotonic())
        except Exception:
            self._give_jobs_back(old)
            raise

    def _record_paused(self, job_ids):
        self.state.data.update({PAUSED: job_ids, DATABASE: self._cron_db})
        self.state.save()

    def _give_jobs_to_new(self):
        """Inside the window, drained, before the rollback slot: the new server runs them once on its port."""
        if self._cron_db:
            pg_cron.resume_jobs(self._new(self._cron_db), self.state.data.get(PAUSED) or [])

    def _give_jobs_back(self, session):
        pg_cron.resume_jobs(session, self.state.data.get(PAUSED) or [])
        self.state.data.pop(PAUSED, None)
        self.state.save()

    def _give_jobs_back_to_old(self):
        """The old server serves again (an abort, a rescue): its jobs run there again."""
        database = self.state.data.get(DATABASE)
        if not self.state.data.get(PAUSED) or not database:
            return
        try:
            session = connect(self.old, dbname=database, port=self.production_port, timeout=10)
            try:
                self._give_jobs_back(session)
            finally:
                session.close()
        except (OperationError, pgwire.PgError) as failure:
            self.report.setdefault("abort_warnings", []).append(
                "pg_cron jobs %s of database %s stay paused on the old server (%s): a re-run of the cutover gives "
                "them back" % (self.state.data.get(PAUSED), database, failure))

    def _jobs_given(self):
        """The new server serves: the pause belongs to the past."""
        self.state.data.pop(PAUSED, None)
