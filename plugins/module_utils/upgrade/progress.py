# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the upgrade of a host stands, from what its runs recorded in the state directory.

The cutover's state file (cutover_state.StateFile) holds the phase it reached; rollback, finalize and the
offline method record theirs in it too.  Beside it, the versions of the upgrade the host is in: a run of other
versions is another upgrade, which sets these records aside in history/ once this one is finished.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import read_text, write_file
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Progress
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade import phases

CUTOVER = "switchover.json"          # the cutover's state file, then the phase of rollback and finalize
ROLLBACK = "rollback.json"           # the state file of the cutover back
PHYSICAL_COPY = "physical_copy.json"
DISCOVERY = "discovery.json"         # where the old server lives, for the runs after the cutover stopped it
STANDBY = "standby.json"             # a standby host's copy of its new standby (begun, made)
STANDBYS = "standbys.json"           # a primary's standbys as preflight saw them, for their switch after its cutover
VERSIONS = "upgrade.json"
WORK = "work"                        # the migrate files
HISTORY = "history"

# What a rollback leaves behind for the next upgrade to start afresh, and what another upgrade sets aside.
CUTOVERS = (CUTOVER, ROLLBACK, PHYSICAL_COPY)
SET_ASIDE = CUTOVERS + (DISCOVERY, VERSIONS, WORK, STANDBY, STANDBYS)
# What the cutover recorded that the later runs use.
CUTOVER_FACTS = ("databases", "rollback_slots", "method")


def _load(path):
    return json.loads(read_text(path) or "{}")


class UpgradeProgress(Progress):
    def __init__(self, module, state_dir):
        self.module = module
        self.state_dir = state_dir

    def _path(self, name):
        return os.path.join(self.state_dir, name)

    def _recorded(self):
        """The versions of the upgrade the host is in; a host upgraded before they were recorded has only the
        new version, which finalize wrote into the cutover's record."""
        recorded = _load(self._path(VERSIONS))
        if "new_version" not in recorded and _load(self._path(CUTOVER)).get("new_version"):
            recorded["new_version"] = _load(self._path(CUTOVER))["new_version"]
        return recorded

    def read(self, old_version, new_version, old_data_dir, port=None):
        cutover = _load(self._path(CUTOVER))
        phase = cutover.get("phase") or phases.NONE
        recorded = self._recorded()
        another = (recorded.get("new_version", "") not in ("", new_version)
                   or recorded.get("old_version", old_version) != old_version)
        # Two servers of one host with one state directory: the records of the one would steer the other's runs
        # (its phase, its rollback, its discovery).  A server keeps its port across its upgrades; two never share one.
        other_server = None
        if port is not None and recorded.get("port") not in (None, port):
            other_server = dict(port=recorded["port"], old_data_dir=recorded.get("old_data_dir"))
        # At "stop" the old server was told to stop; past it once its postmaster is gone.
        stopped = not os.path.exists(os.path.join(old_data_dir, "postmaster.pid"))
        return dict(
            phase=phase,
            # The cutover back's own phase: "done" while phase is still "done", a rollback whose cutover back
            # finished and whose end (the backup after it, the record) a re-run completes.
            rollback_phase=_load(self._path(ROLLBACK)).get("phase") or phases.NONE,
            recorded=recorded,
            another_upgrade=another,
            other_server=other_server,
            past_stop=phase in phases.PAST_STOP or (phase == "stop" and stopped),
            # A standby host's switch, after its primary's cutover, stops the old standby once the new one is made.
            standby_switch_begun=_load(self._path(STANDBY)).get("copy") == "made" and stopped,
            fence_may_be_up=phase in phases.FENCE_MAY_BE_UP,
            finished=phase in phases.FINISHED,
            in_progress=phase not in phases.FINISHED + (phases.NONE,),
            cutover=dict((name, cutover[name]) for name in CUTOVER_FACTS if name in cutover),
            records=dict(cutover=self._path(CUTOVER), rollback=self._path(ROLLBACK),
                         physical_copy=self._path(PHYSICAL_COPY), discovery=self._path(DISCOVERY),
                         standby=self._path(STANDBY), standbys=self._path(STANDBYS)),
            phases=dict(window=list(phases.WINDOW), fence_may_be_up=list(phases.FENCE_MAY_BE_UP),
                        past_stop=list(phases.PAST_STOP), begins=list(phases.BEGINS),
                        finished=list(phases.FINISHED), all=list(phases.ALL)),
        )

    def begin(self, old_version, new_version, port=None, old_data_dir=None):
        record = dict(old_version=old_version, new_version=new_version)
        record.update((name, value) for name, value in (("port", port), ("old_data_dir", old_data_dir)) if value)
        return self._write(VERSIONS, record)

    def start_over(self):
        gone = [name for name in CUTOVERS if os.path.exists(self._path(name))]
        if not self.module.check_mode:
            for name in gone:
                os.unlink(self._path(name))
        return dict(changed=bool(gone), removed=[self._path(name) for name in gone])

    def set_aside(self):
        recorded = self._recorded()
        history_dir = self._path(os.path.join(HISTORY, "%s-to-%s-%s" % (
            recorded.get("old_version", "unknown"), recorded.get("new_version", "unknown"),
            time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))))
        moved = [name for name in SET_ASIDE if os.path.exists(self._path(name))]
        if moved and not self.module.check_mode:
            os.makedirs(history_dir, 0o755)
            for name in moved:
                shutil.move(self._path(name), os.path.join(history_dir, name))
        return dict(changed=bool(moved), history_dir=history_dir if moved else None, moved=moved)

    def record(self, phase, **details):
        if phase not in (phases.DONE, phases.ROLLED_BACK, phases.FINALIZED):
            raise ValueError("%s is not a phase recorded outside the cutover" % phase)
        record = dict(details, phase=phase)
        return self._write(CUTOVER, record)

    def _write(self, name, record):
        if not os.path.isdir(self.state_dir) and not self.module.check_mode:
            os.makedirs(self.state_dir, 0o755)
        changed, diff = write_file(self.module, self._path(name), json.dumps(record, indent=1, sort_keys=True) + "\n",
                                   owner=None, mode=0o644)
        return dict(changed=changed, diff=diff, path=self._path(name))
