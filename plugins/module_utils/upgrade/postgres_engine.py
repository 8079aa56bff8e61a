# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL engine: initdb/pg_ctl, pg_dump/pg_restore, logical replication, PgBouncer in front."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Engine
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.install import PostgresInstaller
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance import PostgresInstance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.inventory import inventory
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.migrate import PostgresMigrator
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade import pgbouncer
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.physical_copy import (
    PhysicalCopy, max_rate_problem)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication import PostgresReplication
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.standby import NewStandby, StandbyAccess
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.standby_switch import PostgresStandbySwitch
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import discover as pg_discover
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight import PostgresPreflight
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_standbys import StandbyPreflight
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.switchover import PostgresSwitchover
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.progress import UpgradeProgress


class PostgresEngine(Engine):
    name = "postgresql"

    def installer(self, module):
        return PostgresInstaller(module)

    def instance(self, module, spec):
        return PostgresInstance(module, spec)

    def inventory(self, module, spec):
        return inventory(module, spec)

    def migrator(self, module, spec, tool_bin_dir=None):
        return PostgresMigrator(module, spec, tool_bin_dir)

    def replication(self, module, source, target, dbname, **options):
        return PostgresReplication(module, source, target, dbname, **options)

    def max_rate_problem(self, rate):
        return max_rate_problem(rate)

    def physical_copy(self, module, old, new, databases, **options):
        return PhysicalCopy(module, old, new, databases, **options)

    def preflight(self, module, old, standby_of=None, **options):
        if standby_of:
            return StandbyPreflight(module, old, primary=standby_of, **options)
        return PostgresPreflight(module, old, **options)

    def standby(self, module, new, state="streaming", **options):
        if state == "allowed":
            return StandbyAccess(module, new, **options)
        return NewStandby(module, new, **options)

    def standby_switch(self, module, old, new, **options):
        return PostgresStandbySwitch(module, old, new, **options)

    def switchover(self, module, old, new, databases, **options):
        return PostgresSwitchover(module, old, new, databases, **options)

    def pooler(self, params):
        return pgbouncer.from_params(params)

    def discover(self, module, port, **options):
        return pg_discover.discover(module, port, **options)

    def plan_new(self, old, new_major, prefix=None):
        return pg_discover.plan_new(old, new_major, prefix)

    # -- where the upgrade of a host stands
    def progress(self, module, state_dir):
        return UpgradeProgress(module, state_dir)

    def new_instance_settings(self):
        return {"wal_level": "logical"}   # a rollback replicates out of the new server
