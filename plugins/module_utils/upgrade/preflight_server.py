# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight checks of the old server: versions, databases, long transactions, the lock table pg_dump needs,
the settings the new server inherits, and the extensions the new release must provide."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError, parse_version
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import extensions as pg_extensions
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.cluster_objects import DATABASES_SQL
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.install import PostgresInstaller
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication import (
    SOURCE_VERSION_FIX, source_version_problem)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.ssl_files import SSL_FILE_SETTINGS


# The way to give the old server a setting it lacks (a command that works on every layout).
PREPARE_FIX = ("run ansible-playbook fleetdb.online_upgrade.prepare (playbooks/prepare.yml) with this inventory and "
               "-e online_upgrade_prepare_restart=true when clients may see a restart: it sets %s (and whatever else "
               "preflight names of the old server) with ALTER SYSTEM, then restarts the old server; without that "
               "variable it restarts nothing and says what waits for a restart")

# Settings that describe where and how this instance runs, not what the new one should inherit.  The lc_*
# categories, TimeZone and default_text_search_config are inherited: applications read times and search text
# through them.
NOT_INHERITED = frozenset([
    "port", "data_directory", "config_file", "hba_file", "ident_file", "external_pid_file", "cluster_name",
    "include", "include_dir", "include_if_exists", "wal_level", "max_replication_slots", "max_wal_senders",
    "dynamic_shared_memory_type", "data_sync_retry", "synchronous_standby_names",
])

# What pg_dump locks (ACCESS SHARE, all in its one transaction): every table and sequence it reads, counted
# with the views, materialized views and foreign tables for a bound from above.
LOCKED_BY_PG_DUMP_SQL = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
"""

# The shared lock table holds max_locks_per_transaction locks per server process and prepared transaction.
LOCK_TABLE_SQL = """
SELECT current_setting('max_locks_per_transaction')::int,
       (SELECT sum(setting::int) FROM pg_settings WHERE name IN ('max_connections', 'autovacuum_max_workers',
        'max_worker_processes', 'max_wal_senders', 'max_prepared_transactions')) + 1
"""


class ServerChecks:
    """The old server's part of PostgresPreflight."""

    def _new_release_provides(self, used, preload, icu):
        """The extensions (``used``: per database, name -> version) and preload libraries the databases use,
        checked against the new release's files when it is on the host already; otherwise the install step checks
        them, before any new instance exists."""
        needs = pg_extensions.needs(used, preload, self.method == "replication" and self.copy_method == "physical", icu)
        self.facts["new_release_needs"] = needs
        installer = PostgresInstaller(self.module)
        try:
            bin_dir = installer.release_bin_dir(self.new_install_method, self.new_version_text, self.new_prefix)
        except OperationError:
            return  # no package manager: the install step says so
        self.facts["new_release_checked"] = bool(installer.probe(bin_dir))
        if not self.facts["new_release_checked"]:
            return
        missing = pg_extensions.shortfalls(self.module, bin_dir, needs)
        if missing:
            major = (self.new_major or ("?",))[0]
            self.findings.problem("extensions", "PostgreSQL %s in %s lacks what the databases use: %s"
                                  % (major, bin_dir, "; ".join(missing)), pg_extensions.shortfall_fix(major))

    def _versions(self, session):
        old = parse_version(session.scalar("SHOW server_version"))
        self.facts["old_version"] = ".".join(str(p) for p in old)
        self.facts["new_version"] = ".".join(str(p) for p in self.new_major or ())
        if not self.new_major:
            self.findings.problem("versions", "the new version %r is not a version number" % self.new_version_text,
                                  "set online_upgrade_new_version (new_version) to the major version to upgrade "
                                  "to, e.g. 18")
        elif self.new_major[0] <= old[0]:
            self.findings.problem(
                "versions", "the new version %s is not newer than the running %s" % (self.facts["new_version"],
                                                                                     self.facts["old_version"]),
                "an online upgrade goes to a newer major version; downgrades are not supported")
        too_old = source_version_problem(old[0]) if self.method == "replication" else None
        if too_old:
            self.findings.problem("versions", "the old server runs " + too_old, SOURCE_VERSION_FIX)

    def _old_server_needs(self, name, value):
        """A setting the old server must have (playbooks/prepare.yml sets them: old_server_needs)."""
        needs = self.facts.setdefault("old_server_needs", {})
        needs[name] = max(needs.get(name, value), value) if isinstance(value, int) else value

    def _databases_left_out(self, session):
        """A database not upgraded would be missing once the new server takes the port (postgres is always
        there, made by initdb)."""
        left_out = [db for db in self._all_databases(session) if db not in self.databases and db != "postgres"]
        if self.databases and left_out:
            self.findings.problem(
                "databases", "online_upgrade_databases leaves out %s: the new server would take the production port "
                "without them" % ", ".join(left_out),
                "add them to online_upgrade_databases (or leave it empty: every database), or drop them on the old "
                "server")

    def _all_databases(self, session):
        return [r[0] for r in session.query(DATABASES_SQL).rows]

    def _transactions(self, session):
        rows = session.query(
            "SELECT pid, usename, datname, round(extract(epoch FROM now() - xact_start))::int AS age "
            "  FROM pg_stat_activity WHERE xact_start < now() - make_interval(secs => $1) "
            "   AND backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY xact_start",
            [self.max_transaction_age]).dicts()
        if rows:
            listed = ", ".join("pid %(pid)s (%(usename)s on %(datname)s, %(age)s s)" % r for r in rows[:10])
            self.findings.problem(
                "long_transactions", "transactions open for more than %d s: %s" % (self.max_transaction_age, listed),
                "end them, or wait for them to end: a replication slot cannot be created while they run (to end "
                "them, as a superuser on the old server: SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid IN (%s))" % ", ".join(str(r["pid"]) for r in rows))

    def _lock_table(self, db, session):
        """pg_dump (the schema migrate, dump/restore, pg_upgrade) holds a lock on every table and sequence of a
        database at once: they must fit in the old server's shared lock table beside the clients' locks."""
        needed = int(session.scalar(LOCKED_BY_PG_DUMP_SQL))
        per_process, processes = [int(v) for v in session.query(LOCK_TABLE_SQL).rows[0]]
        if needed * 5 > per_process * processes * 4:   # more than 80 %
            wanted = -(-needed * 3 // (2 * processes * 64)) * 64   # half as much again, in steps of 64
            self.findings.problem(
                "lock_table", "pg_dump would lock the %d tables and sequences of database %s at once; the old "
                "server's lock table holds about %d (max_locks_per_transaction %d x %d server processes and "
                "prepared transactions): it would fail with 'out of shared memory'"
                % (needed, db, per_process * processes, per_process, processes),
                PREPARE_FIX % ("max_locks_per_transaction = %d (the new server inherits it)"
                               % max(wanted, per_process * 2)))
            self._old_server_needs("max_locks_per_transaction", max(wanted, per_process * 2))

    def _inheritable_settings(self, session):
        rows = session.query("SELECT name, setting, unit FROM pg_settings WHERE source = 'configuration file'").rows
        settings = {}
        for name, setting, unit in rows:
            if name == "synchronous_standby_names":
                # Not inherited: the new primary's commits would wait for standbys still switching, or for none at
                # all; it is given back once they have switched (docs/layouts.md).
                self.facts["synchronous_standby_names"] = setting
            if name in NOT_INHERITED:
                continue
            settings[name] = _with_unit(setting, unit)
        if session.scalar("SHOW ssl") == "on":
            # Their defaults (server.crt, server.key in the data directory) too: the new instance's data
            # directory holds no such files until the instance module copies them there.
            settings.update((name, value) for name, value in session.query(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])", [list(SSL_FILE_SETTINGS)]).rows
                if value)
        return settings


def _with_unit(setting, unit):
    """pg_settings gives '16384' and unit '8kB'; keep it unambiguous for postgresql.conf."""
    if not unit or not setting.isdigit():
        return setting
    if unit == "8kB":
        return "%dkB" % (int(setting) * 8)
    return setting + unit
