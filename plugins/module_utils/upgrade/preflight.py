# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks before an online upgrade: each finding says what is wrong and what to do.  Nothing changes.

The checks come in groups, one file each: the host (preflight_host.py), the old server and what the new
release must provide (preflight_server.py), what the online method needs (preflight_replication.py), and the
old server's WAL archiving (preflight_archiving.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import parse_version
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Preflight
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import extensions as pg_extensions
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.cluster_locale import (
    cluster_locale, icu_databases)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.conf import split_directories
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_host import Findings, HostChecks
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_replication import ReplicationChecks
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_standbys import StandbyChecks
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_server import ServerChecks
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_archiving import ArchivingChecks


class PostgresPreflight(HostChecks, ServerChecks, ReplicationChecks, StandbyChecks, ArchivingChecks, Preflight):
    def __init__(self, module, old, new_version, new_data_dir, databases, method, temporary_port,
                 old_port_after, tables_without_key="fail", replication_password_set=True,
                 min_free_disk_ratio=1.2, max_transaction_age=300, unlogged_tables="fail", pooler=None,
                 copy_method="logical", physical_copy_max_rate=None, new_install_method="archive", new_prefix=None,
                 standbys=(), inventory_host=None):
        self.module = module
        self.old = old
        self.new_version_text = "" if new_version is None else str(new_version)
        self.new_major = parse_version(self.new_version_text)
        self.new_data_dir = new_data_dir
        self.databases = list(databases or [])
        self.method = method
        self.temporary_port = temporary_port
        self.old_port_after = old_port_after
        self.tables_without_key = tables_without_key
        self.replication_password_set = replication_password_set
        self.min_free_disk_ratio = min_free_disk_ratio
        self.max_transaction_age = max_transaction_age
        self.unlogged_tables = unlogged_tables
        self.pooler = pooler  # pgbouncer.PgBouncer or None
        self.copy_method = copy_method
        self.physical_copy_max_rate = physical_copy_max_rate
        self.new_install_method = new_install_method
        self.new_prefix = new_prefix
        self.standbys = list(standbys or [])  # the inventory's hosts for this primary's standbys
        self.inventory_host = inventory_host
        self.findings = Findings()
        self.facts = {}

    def run(self):
        f = self.findings
        if not self._old_server_reachable():
            return self._result()
        session = connect(self.old, timeout=5)
        try:
            self._versions(session)
            self._databases_left_out(session)
            self.databases = self.databases or self._all_databases(session)
            self._disk(session)
            self._ports()
            self._transactions(session)
            self.facts["old_settings"] = self._inheritable_settings(session)
            self.facts["old_locale"] = cluster_locale(session)
            self.facts["old_socket_directories"] = split_directories(session.scalar("SHOW unix_socket_directories"))
            if self.method == "replication":
                self._replication_settings(session)
                self._fence_blockers(session)
                self._subscriptions(session)
                self._pg_cron_jobs(session)
                self._other_replication(session)
                if self.copy_method == "physical":
                    self._physical_copy(session)
                if not self.replication_password_set:
                    f.problem("replication_password", "no password is set for the replication role",
                              "set online_upgrade_replication_password (from a vault)")
            self._ha_managers()
            self._archiving(session)
            preload = pg_extensions.preload_libraries(session.scalar("SHOW shared_preload_libraries"))
            icu = icu_databases(session)
        finally:
            session.close()
        used = {}
        for db in self.databases:
            session = connect(self.old, dbname=db, timeout=5)
            try:
                used[db] = dict((name, version) for name, version in session.query(pg_extensions.USED_SQL).rows)
                self._lock_table(db, session)
                if self.method == "replication":
                    self._what_replication_carries(db, session)
            finally:
                session.close()
        self._new_release_provides(used, preload, icu)
        if self.method == "replication":
            self._pooler()
        return self._result()

    def _result(self):
        result = dict(problems=self.findings.problems, warnings=self.findings.warnings,
                      databases=self.databases, ok=not self.findings.problems)
        result.update(self.facts)
        return result
