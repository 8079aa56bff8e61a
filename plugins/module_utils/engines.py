# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry of engines.  Imports are static so that Ansible ships them with each module."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.postgres_engine import PostgresEngine

DEFAULT = PostgresEngine.name

ENGINES = {
    PostgresEngine.name: PostgresEngine,
}


def engine_option():
    """The module option ``engine`` (doc fragment ``engine``): one of the registered engines."""
    return dict(type="str", default=DEFAULT, choices=sorted(ENGINES))


def get_engine(name):
    try:
        return ENGINES[name]()
    except KeyError:
        raise ValueError("unknown engine %r; known engines: %s" % (name, ", ".join(sorted(ENGINES))))
