# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the cutover leaves on the host for whoever comes next: the state file, and the guardian.

The state file records the phase reached (and what a re-run needs: the slots,
the drain point), so that a re-run after an interruption continues.  The
guardians are child processes that lift the fence if the module dies (SIGKILL,
OOM killer) before it told the old server to stop, and RESUME a paused
PgBouncer whenever it dies, so that clients are not locked out until someone
re-runs.  A failpoint file stops the module at a
phase, for the tests that kill it there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import signal
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import read_text, write_file
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.fence import FENCE
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade import phases

FAILPOINT_FILE = "failpoint"


class StateFile:
    """Which phase the cutover reached, kept on the host so that a re-run knows.  ``known``: the phases it may
    record (phases.py: the runs after it read them by these names)."""

    def __init__(self, module, path, known=phases.ALL):
        self.module = module
        self.path = path
        self.known = known
        self.data = json.loads(read_text(path) or "{}") if path else {}
        # "<phase>": wait there until killed; "<phase> <seconds>": wait that long, then go on.
        failpoint = ((read_text(os.path.join(os.path.dirname(path), FAILPOINT_FILE)) if path else None) or "").split()
        self.failpoint = failpoint[0] if failpoint else None
        self.failpoint_seconds = float(failpoint[1]) if len(failpoint) > 1 else None
        self.data.pop("failpoint_reached", None)   # of an earlier run: a test waits for this run's

    @property
    def phase(self):
        return self.data.get("phase")

    def set(self, phase, **extra):
        if phase not in self.known:
            raise ValueError("phase %r is not one of phases.py's %s" % (phase, ", ".join(self.known)))
        self.data["phase"] = phase
        self.data["pid"] = os.getpid()
        self.data["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.data.update(extra)
        self.save()
        self.reached(phase)

    def reached(self, point):
        """Stop at ``point`` when the failpoint file names it (a phase, or a point that is not one)."""
        if point == self.failpoint and not self.module.check_mode:
            self.data["failpoint_reached"] = point
            self.save()
            if self.failpoint_seconds is not None:
                time.sleep(self.failpoint_seconds)
                return
            while True:  # a test kills this process here
                time.sleep(3600)

    def save(self):
        if self.path and not self.module.check_mode:
            if not os.path.isdir(os.path.dirname(self.path)):
                os.makedirs(os.path.dirname(self.path), 0o755)
            write_file(self.module, self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n",
                       owner=None, mode=0o644)


class Guardian:
    """A child process that runs ``action`` when this process dies before ``disarm()``."""

    def __init__(self, action):
        self.action = action
        self.pid = None
        self._fd = None

    def start(self):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the guardian
            try:
                os.close(write_end)
                os.setsid()
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                # Nothing of the module's: not its stdout (Ansible waits for it to close), not its sessions.
                os.closerange(3, read_end)
                os.closerange(read_end + 1, 65536)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                if os.read(read_end, 1) == b"":
                    self.action()
            finally:
                os._exit(0)  # pylint: disable=protected-access
        os.close(read_end)
        self.pid, self._fd = pid, write_end
        return pid

    def disarm(self):
        if self._fd is None:
            return
        os.write(self._fd, b"d")
        os.close(self._fd)
        self._fd = None
        try:
            os.waitpid(self.pid, os.WNOHANG)
        except OSError:
            pass


class FenceGuardian(Guardian):
    """Lifts the fence from ``hba`` (the old server's pg_hba.HbaFile) and reloads the old server when the module
    dies before ``disarm()`` (which the cutover calls just before it stops the old server)."""

    def __init__(self, hba):
        super(FenceGuardian, self).__init__(self._lift)
        self.hba = hba

    def _lift(self):
        if self.hba.remove_block(FENCE)[0]:
            self.hba.reload()
