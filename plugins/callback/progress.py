# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: progress
type: aggregate
short_description: Print the progress of the upgrade's long steps at default verbosity
description:
  - Prints the C(progress_line) of a task result, one line per host, on every retry of a task that loops until
    it is done (C(until)) and when it ends - for example the initial copy and catch-up of
    M(fleetdb.online_upgrade.replication) with O(fleetdb.online_upgrade.replication#module:poll), as the role
    runs it (every 30 s by default, C(online_upgrade_progress_interval)).
  - Works beside any stdout callback (AWX and ansible-runner included). Enable it with
    C(callbacks_enabled = fleetdb.online_upgrade.progress) in C(ansible.cfg) (this project's does), or
    C(ANSIBLE_CALLBACKS_ENABLED=fleetdb.online_upgrade.progress).
author:
  - fleetdb contributors (@fleetdb)
requirements:
  - enable in configuration
"""

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fleetdb.online_upgrade.progress"
    CALLBACK_NEEDS_ENABLED = True

    def _progress(self, result, ended):
        line = result._result.get("progress_line")
        if line:
            suffix = "" if ended else " ..."
            self._display.display("fleetdb progress [%s]: %s%s" % (result._host.get_name(), line, suffix))

    def v2_runner_retry(self, result):
        self._progress(result, ended=False)

    def v2_runner_on_ok(self, result):
        self._progress(result, ended=True)

    def v2_runner_item_on_ok(self, result):
        self._progress(result, ended=True)
