# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL engine: initdb/pg_ctl, pg_dump/pg_restore, logical replication."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engine import Engine
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.pg_install import PostgresInstaller
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.pg_instance import PostgresInstance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.pg_migrate import PostgresMigrator
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.pg_replication import PostgresReplication


class PostgresEngine(Engine):
    name = "postgresql"
    default_port = 5432

    def installer(self, module):
        return PostgresInstaller(module)

    def instance(self, module, spec):
        return PostgresInstance(module, spec)

    def migrator(self, module, spec, tool_bin_dir=None):
        return PostgresMigrator(module, spec, tool_bin_dir)

    def replication(self, module, source, target, dbname, **options):
        return PostgresReplication(module, source, target, dbname, **options)
