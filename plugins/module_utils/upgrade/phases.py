# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The phases an upgrade of a host goes through, as its record on the host names them: the one list.

The cutover records each phase of its window as it enters it, then how it ended; rollback, finalize and the
offline (dump_restore) method record theirs.  A re-run reads the phase to know what is left to do.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

NONE = "none"   # no cutover recorded on the host

# The client-visible window of the cutover, in order.
WINDOW = ("pause", "fence", "drain", "large_objects", "schema", "sequences", "roles", "detach", "stop", "proof", "start", "resume")
BEFORE_STOP = WINDOW[:WINDOW.index("stop")]

# Timed steps of the cutover outside the window, reported beside its phases (never in its state file): the old
# server's archive backlog pushed before the fence, the new server's archiving verified after the window.
ARCHIVE_DRAIN = "archive_drain"
ARCHIVE_CHECK = "archive_check"

# How a cutover ends.
SWITCHED = "switched"            # the new server serves the production port; the cleanup follows
DONE = "done"
ABORTED = "aborted"              # failed before the old server stopped: it kept serving
RESCUING = "rescuing"            # failed after the stop: the old server is being brought back
RESCUED = "rescued"              # the old server serves the production port again
RESCUE_FAILED = "rescue_failed"
NEW_NOT_READY = "new_not_ready"  # the new server may have taken writes: it is never stopped, the re-run finishes

# What the later playbooks record.
ROLLED_BACK = "rolled_back"
FINALIZED = "finalized"

# Every phase the host's record may name.
ALL = (NONE,) + WINDOW + (SWITCHED, DONE, ABORTED, RESCUING, RESCUED, RESCUE_FAILED, NEW_NOT_READY, ROLLED_BACK,
                          FINALIZED)

# An interrupted cutover may have left its fence on the old server: the re-run lifts it first.
FENCE_MAY_BE_UP = BEFORE_STOP + ("stop", RESCUING, RESCUE_FAILED)
# The old server was told to stop: only the cutover itself resumes.  At "stop" that holds once its pid file is gone.
PAST_STOP = ("proof", "start", NEW_NOT_READY, SWITCHED, DONE, RESCUING, RESCUE_FAILED)
# The old server serves and the new instance is not (yet) the production one: the upgrade begins (again) from
# installing the new release.
BEGINS = (NONE, ABORTED, RESCUED, ROLLED_BACK)
# Nothing is left to do for this upgrade: another upgrade of the host may set its records aside.
FINISHED = (DONE, FINALIZED, ROLLED_BACK)

# The steps of the physical initial copy, in its own state file.
COPY = ("backup", "recover", "upgrade", DONE)
