# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The option engine of every module (``engines.engine_option()``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  engine:
    description:
      - The database engine, one of those registered in C(plugins/module_utils/engines.py).
      - The role C(fleetdb.online_upgrade.online_upgrade) sets it for every module from C(online_upgrade_engine).
    type: str
    default: postgresql
    choices: [postgresql]
"""
