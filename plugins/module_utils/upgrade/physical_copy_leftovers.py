# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an interrupted physical copy leaves: its processes, directories and slots, removed before it starts over."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import process as pg_process
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.slots import drop_unused_slot

PHYSICAL_SLOT = "fleetdb_physical_copy"


class CopyLeftovers:
    """The starting over of PhysicalCopy."""

    def _start_over(self):
        """An interrupted copy: its copy, staged directory, physical slot and logical slots go (no subscription
        uses them yet: the replication step comes after the copy is done)."""
        self._kill_leftovers()
        for path in (self.copy_dir, self.staged_dir, os.path.join(os.path.dirname(self.staged_dir),
                                                                  ".fleetdb-pg_upgrade")):
            shutil.rmtree(path, ignore_errors=True)
        self._drop_physical_slot()
        session = connect(self.old, dbname=self.databases[0])
        try:
            for slot in (self.state.get("slots") or {}).values():
                drop_unused_slot(session, slot)
        finally:
            session.close()
        self.result["started_over_from"] = self.state.get("phase")
        self.state.clear()

    def _kill_leftovers(self):
        """What a killed run left running on the copy or the staged directory: pg_basebackup, pg_upgrade, the
        copy's postmaster and the servers pg_upgrade started (SIGKILL: their work is thrown away)."""
        self.result["leftovers_killed"] = pg_process.kill_working_on((self.copy_dir, self.staged_dir))

    def _drop_physical_slot(self):
        session = connect(self.old)
        try:
            drop_unused_slot(session, PHYSICAL_SLOT)
        finally:
            session.close()
