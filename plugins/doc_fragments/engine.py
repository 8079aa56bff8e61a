# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine option, for modules that do not take the single-instance options (which include it)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  engine:
    description:
      - The database engine. Only C(postgresql) is implemented.
    type: str
    default: postgresql
    choices: [postgresql]
"""
