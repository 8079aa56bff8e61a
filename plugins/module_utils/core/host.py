# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host, for code run outside a module: the little of AnsibleModule that module_utils use.

Everything under module_utils takes ``module`` and asks it only this: run a command (``run_command``, which
``common.run_as`` wraps to run it as a user), find a program, check mode, warnings.  The benchmarks and the
unit tests drive module_utils on this machine with a ``LocalHost`` instead of an AnsibleModule.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess


class LocalHost:
    """Runs commands on this machine for real; collects warnings."""

    def __init__(self, check_mode=False, params=None):
        self.check_mode = check_mode
        self.params = params or {}
        self.warnings = []

    def run_command(self, argv, check_rc=False, cwd=None, environ_update=None, data=None, **_kwargs):
        env = dict(os.environ, **(environ_update or {}))
        proc = subprocess.run(argv, cwd=cwd, env=env, input=data, capture_output=True, text=True, check=False)
        if check_rc and proc.returncode != 0:
            raise RuntimeError("%s failed (rc=%d): %s" % (" ".join(argv), proc.returncode, proc.stderr[-2000:]))
        return proc.returncode, proc.stdout, proc.stderr

    def get_bin_path(self, name, required=False):
        path = shutil.which(name)
        if required and path is None:
            raise RuntimeError("%s is not on PATH" % name)
        return path

    def warn(self, msg):
        self.warnings.append(msg)

    def log(self, msg):
        pass
