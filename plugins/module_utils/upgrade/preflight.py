# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks before an online upgrade: each finding says what is wrong and what to do.  Nothing changes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, human_bytes, parse_version, port_holder, process_argvs, read_text)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Preflight
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import extensions as pg_extensions
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.cluster_objects import DATABASES_SQL
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.conf import split_directories
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.discover import socket_problem
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.fence import fence_blockers
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.install import PostgresInstaller
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.cluster_locale import (
    cluster_locale, icu_databases)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.physical_copy import (
    COPY_APPLICATION_NAME, max_rate_problem)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.sizing import (
    copy_parallelism, host_resources)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import (
    postmaster, postmaster_pid, system_identifier)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect
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
    "dynamic_shared_memory_type", "data_sync_retry",
])

UNLOGGED_TABLES_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'u' ORDER BY 1
"""

TABLES_WITHOUT_KEY_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) AS table_name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
   AND c.relreplident IN ('d', 'n')
   AND (c.relreplident = 'n' OR NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
 ORDER BY 1
"""

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


# Cluster managers this procedure must not run under, and what to do instead.
HA_MANAGERS = (
    ("patroni", "upgrade with Patroni's own major-upgrade procedure, or take the node out of Patroni first"),
    ("repmgrd", "stop repmgrd and unregister the node (repmgr standby/primary unregister) for the upgrade"),
    ("pg_autoctl", "upgrade with pg_auto_failover's procedure, or drop the node from its formation first"),
)


class Findings:
    def __init__(self):
        self.problems = []
        self.warnings = []

    def problem(self, check, msg, fix):
        self.problems.append(dict(check=check, msg=msg, fix=fix))

    def warning(self, check, msg):
        self.warnings.append(dict(check=check, msg=msg))


class PostgresPreflight(Preflight):
    def __init__(self, module, old, new_version, new_data_dir, databases, method, temporary_port,
                 old_port_after, tables_without_key="fail", replication_password_set=True,
                 min_free_disk_ratio=1.2, max_transaction_age=300, unlogged_tables="fail", pooler=None,
                 copy_method="logical", physical_copy_max_rate=None, new_install_method="archive", new_prefix=None):
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
                self._other_replication(session)
                if self.copy_method == "physical":
                    self._physical_copy(session)
                if not self.replication_password_set:
                    f.problem("replication_password", "no password is set for the replication role",
                              "set online_upgrade_replication_password (from a vault)")
            self._ha_managers()
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

    # -- the checks -------------------------------------------------------------
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

    def _pooler(self):
        """PgBouncer's admin console answers, its pool mode lets PAUSE finish, its client limits outlast the pause."""
        if self.pooler is None:
            return
        problems = self.pooler.problems(self.old.port, self.databases)
        for msg, fix in problems:
            self.findings.problem("pooler", msg, fix)
        if not problems:
            self.facts["pooler"] = dict(version=self.pooler.version(), databases=[
                row["name"] for row in self.pooler.entries(self.old.port, self.databases)])

    def _old_server_reachable(self):
        if not os.path.isfile(os.path.join(self.old.bin_dir, "postgres")):
            self.findings.problem("old_binaries", "no postgres binary in %s" % self.old.bin_dir,
                                  "set online_upgrade_old_bin_dir to the bin directory of the running release")
            return False
        if not os.path.isdir(self.old.data_dir):
            self.findings.problem("old_data_dir", "the old data directory %s does not exist" % self.old.data_dir,
                                  "set online_upgrade_old_data_dir (old.data_dir) to the data directory of the "
                                  "running server (SHOW data_directory on it)")
            return False
        if read_text(os.path.join(self.old.data_dir, "PG_VERSION")) is None:
            self.findings.problem("old_data_dir", "%s is not a PostgreSQL data directory (no PG_VERSION)"
                                  % self.old.data_dir,
                                  "set online_upgrade_old_data_dir (old.data_dir) to the data directory of the "
                                  "running server (SHOW data_directory on it)")
            return False
        if postmaster_pid(self.old.data_dir) is None:
            self.findings.problem("old_server", "the old server (%s) is not running" % self.old.data_dir,
                                  "start it: the online upgrade copies from the running server")
            return False
        refused = socket_problem(self.old)
        if refused:
            self.findings.problem("old_server", refused.msg, refused.fix)
            return False
        try:
            connect(self.old, timeout=5).close()
        except OperationError as exc:
            fix = exc.fix
            if "password authentication failed" in exc.msg or "asks for a password" in exc.msg:
                fix = ("correct login_password of %s (old.login_password, from a vault), or log in as the owner "
                       "%s by peer authentication on the local socket (leave login_user unset)"
                       % (self.old.login_user, self.old.owner))
            self.findings.problem("old_server", exc.msg, fix)
            return False
        return True

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

    def _physical_copy(self, session):
        """What fleetdb.online_upgrade.physical_copy cannot carry (its room is the disk check's second copy)."""
        spaces = [r[0] for r in session.query(
            "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1").rows]
        if max_rate_problem(self.physical_copy_max_rate):
            self.findings.problem("copy_method", max_rate_problem(self.physical_copy_max_rate),
                                  "set online_upgrade_physical_copy_max_rate to e.g. 200M, or empty for no limit")
        if spaces:
            self.findings.problem("copy_method", "the physical copy does not carry tablespaces yet: %s"
                                  % ", ".join(spaces), "use online_upgrade_copy_method: logical")
        provider = session.scalar("SELECT datlocprovider::text FROM pg_database WHERE datname = 'template0'")
        if provider != "c":
            self.findings.problem("copy_method", "template0 uses the locale provider %s; the physical copy "
                                  "handles libc only" % provider, "use online_upgrade_copy_method: logical")

    def _disk(self, session):
        """A second copy of the data fits: the default tablespace's share on the new data directory's file system,
        each other tablespace's on its own (the new server's files go beside the old ones, in PG_<version>_*)."""
        size = int(session.scalar("SELECT sum(pg_database_size(datname))::bigint FROM pg_database"))
        spaces = [(name, location, int(used)) for name, location, used in session.query(
            "SELECT spcname, pg_tablespace_location(oid), pg_tablespace_size(oid) FROM pg_tablespace "
            "WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1").rows]
        probe = self.new_data_dir
        while probe and not os.path.exists(probe):
            probe = os.path.dirname(probe)
        places = [("the new data directory", probe or "/", size - sum(used for _n, _l, used in spaces))]
        places += [("tablespace %s" % name, location, used) for name, location, used in spaces]
        by_device = {}
        for what, path, used in places:
            entry = by_device.setdefault(os.stat(path).st_dev, dict(path=path, what=[], used=0))
            entry["what"].append(what)
            entry["used"] += used
        stat = os.statvfs(places[0][1])
        self.facts.update(old_size_bytes=size, free_bytes=stat.f_bavail * stat.f_frsize,
                          tablespaces=[dict(name=n, location=loc, size_bytes=u) for n, loc, u in spaces])
        if os.path.exists(os.path.join(self.new_data_dir, "PG_VERSION")):
            return  # the copy is (being) made: its space is taken already
        for entry in by_device.values():
            stat = os.statvfs(entry["path"])
            free = stat.f_bavail * stat.f_frsize
            needed = int(entry["used"] * self.min_free_disk_ratio)
            if free < needed:
                self.findings.problem(
                    "disk", "%s has %d bytes free (%s); a second copy of what %s holds (%d bytes, %s) "
                    "with min_free_disk_ratio %g needs %d bytes (%s)"
                    % (entry["path"], free, human_bytes(free), " and ".join(entry["what"]), entry["used"],
                       human_bytes(entry["used"]), self.min_free_disk_ratio, needed, human_bytes(needed)),
                    "free %d bytes there, or set online_upgrade_new_data_dir to a larger file system, or lower "
                    "online_upgrade_min_free_disk_ratio (default 1.2) if the copy needs less" % (needed - free))

    def _ports(self):
        ports = dict(production=self.old.port, temporary=self.temporary_port, old_after=self.old_port_after)
        if len(set(ports.values())) != 3:
            self.findings.problem("ports", "the production, temporary and old-after ports must differ: %s" % ports,
                                  "choose distinct online_upgrade_temporary_port and online_upgrade_old_port_after")
            return
        old_pid = postmaster_pid(self.old.data_dir)
        holder = port_holder(self.old.port)
        if holder and holder["pid"] not in (None, old_pid):
            self.findings.problem("ports", "port %d is held by pid %s (%s), not the old server"
                                  % (self.old.port, holder["pid"], holder["cmdline"]),
                                  "point online_upgrade_port at the old server's port")
        new_pid = postmaster_pid(self.new_data_dir) if os.path.isdir(self.new_data_dir) else None
        # Without CAP_SYS_PTRACE (a container) root cannot see the sockets of the postgres user's processes:
        # the port a running postmaster recorded in its postmaster.pid tells who holds it.
        own_ports = set(p for p in (_postmaster_port(self.old.data_dir), _postmaster_port(self.new_data_dir)) if p)
        for name in ("temporary", "old_after"):
            holder = port_holder(ports[name])
            if holder and holder["pid"] is None and ports[name] in own_ports:
                continue
            if holder and (holder["pid"] is None or holder["pid"] not in (new_pid, old_pid)):
                who = ("pid %s (%s)" % (holder["pid"], holder["cmdline"]) if holder["pid"] is not None
                       else "a process this module cannot see (not the old or the new server)")
                self.findings.problem("ports", "the %s port %d is held by %s"
                                      % (name.replace("_", "-"), ports[name], who),
                                      "stop that process or choose another online_upgrade_%s_port"
                                      % ("temporary" if name == "temporary" else "old_port_after"))
        self.facts["ports"] = ports

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

    def _other_replication(self, session):
        """Standbys and other consumers of the old server's WAL do not follow it to the new server."""
        leftover_copy = False
        for name, addr in session.query(
                "SELECT coalesce(r.application_name, ''), coalesce(host(r.client_addr), 'local') "
                "  FROM pg_stat_replication r JOIN pg_stat_activity a ON a.pid = r.pid WHERE a.datname IS NULL").rows:
            if name == COPY_APPLICATION_NAME and addr == "local":
                leftover_copy = True
                continue
            self.findings.problem(
                "standbys", "a physical standby streams from the old server (%s from %s): it cannot follow the "
                "upgrade (the new server is another system)" % (name or "unnamed", addr),
                "detach it before the upgrade and rebuild it from the new server afterwards (pg_basebackup)")
        if leftover_copy:
            self.findings.warning("standbys", "the physical copy of an interrupted run still streams from the old "
                                  "server: the copy step stops it and starts over")
        for slot, plugin, database in self._foreign_slots(session):
            self.findings.problem(
                "replication_slots", "the replication slot %s (%s%s) belongs to another consumer: it does not move "
                "to the new server, and its consumer would miss every change after the cutover"
                % (slot, plugin or "physical", ", database " + database if database else ""),
                "drop it (SELECT pg_drop_replication_slot('%s')) once its consumer can start again from the new "
                "server, or upgrade with that consumer's own procedure" % slot)

    def _ours(self, slot_name):
        """The upgrade's own slots: fleetdb_*, and the table-sync slots (pg_<subscription>_sync_<table>_<system
        id>) that the new server's subscriptions left when it stopped in the middle of the copy."""
        if slot_name.startswith("fleetdb"):
            return True
        sync = re.match(r"^pg_\d+_sync_\d+_(\d+)$", slot_name)
        return bool(sync) and self.new_data_dir is not None and \
            int(sync.group(1)) == system_identifier(self.new_data_dir)

    def _foreign_slots(self, session):
        return [row for row in session.query(
            "SELECT slot_name, coalesce(plugin, ''), coalesce(database, '') FROM pg_replication_slots ORDER BY 1").rows
            if not self._ours(row[0])]

    def _ha_managers(self):
        """A cluster manager would restart the server the cutover stops, or fail over to a standby."""
        for pid, argv in process_argvs():
            cmdline = " ".join(argv)
            for name, fix in HA_MANAGERS:
                if re.search(r"(^|/)%s(\s|$)" % re.escape(name), cmdline.split(" --", 1)[0]):
                    self.findings.problem("ha_manager", "%s manages PostgreSQL on this host (pid %s: %s)"
                                          % (name, pid, cmdline.strip()[:120]), fix)
                    return

    def _fence_blockers(self, session):
        """What the cutover's fence cannot stop (the cutover checks again, inside the window)."""
        for blocker in fence_blockers(session):
            self.findings.problem("fence", "the cutover cannot fence this %s: %s" % (blocker["kind"], blocker["name"]),
                                  blocker["fix"])

    def _replication_settings(self, session):
        settings = dict(session.query(
            "SELECT name, setting FROM pg_settings WHERE name IN ('wal_level', 'max_replication_slots', "
            "'max_wal_senders', 'max_worker_processes')").rows)
        if settings.get("wal_level") != "logical":
            self._old_server_needs("wal_level", "logical")
            self.findings.problem(
                "wal_level", "wal_level is %s on the old server; logical replication needs logical"
                % settings.get("wal_level"), PREPARE_FIX % "wal_level = logical")
        used_slots = len(self._foreign_slots(session))
        senders = len([name for name, in session.query("SELECT application_name FROM pg_stat_replication").rows
                       if not self._ours(name)])
        # A slot and a sender per database, and one more of each for the table syncs of the database being copied
        # (the databases are copied one after another).
        needed = len(self.databases) + 1
        if int(settings.get("max_replication_slots", 0)) < used_slots + needed:
            self._old_server_needs("max_replication_slots", used_slots + needed)
            self.findings.problem(
                "max_replication_slots", "max_replication_slots is %s, %d in use, %d more needed"
                % (settings.get("max_replication_slots"), used_slots, needed),
                PREPARE_FIX % ("max_replication_slots = %d" % (used_slots + needed)))
        if int(settings.get("max_wal_senders", 0)) < senders + needed:
            self._old_server_needs("max_wal_senders", senders + needed)
            self.findings.problem(
                "max_wal_senders", "max_wal_senders is %s, %d in use, %d more needed"
                % (settings.get("max_wal_senders"), senders, needed),
                PREPARE_FIX % ("max_wal_senders = %d" % (senders + needed)))
        cores, memory = host_resources()
        self.facts["copy_parallelism"] = copy_parallelism(
            cores, memory, len(self.databases), int(settings.get("max_replication_slots", 0)) - used_slots,
            int(settings.get("max_wal_senders", 0)) - senders, new_major=(self.new_major or (18,))[0],
            old_settings=dict(session.query("SELECT name, setting FROM pg_settings WHERE name IN "
                                            "('max_logical_replication_workers', 'max_worker_processes', "
                                            "'max_replication_slots', 'max_wal_senders')").rows))

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

    def _what_replication_carries(self, db, session):
        """Tables it cannot publish, and data it does not carry: each named, with the ways out."""
        self._tables_without_key(db, [r[0] for r in session.query(TABLES_WITHOUT_KEY_SQL).rows])
        self._unlogged_tables(db, [r[0] for r in session.query(UNLOGGED_TABLES_SQL).rows])
        self._large_objects(db, int(session.scalar("SELECT count(*) FROM pg_largeobject_metadata")))

    def _tables_without_key(self, db, tables):
        if not tables:
            return
        if self.tables_without_key == "replica_identity_full":
            self.findings.warning("tables_without_key", "database %s: %s will replicate with REPLICA IDENTITY FULL "
                                  "(slower apply of updates and deletes)" % (db, ", ".join(tables)))
            return
        self.findings.problem(
            "tables_without_key",
            "database %s has tables without a primary key or replica identity: %s; publishing them would make "
            "UPDATE and DELETE fail on the old server" % (db, ", ".join(tables)),
            "add a primary key to each, or opt in with online_upgrade_tables_without_key=replica_identity_full "
            "(every column is sent for updates and deletes), or use online_upgrade_method=dump_restore")

    def _unlogged_tables(self, db, tables):
        if not tables:
            return
        if self.unlogged_tables == "empty":
            self.findings.warning("unlogged_tables", "database %s: %s will be empty on the new server (unlogged "
                                  "tables are not replicated; online_upgrade_unlogged_tables=empty)"
                                  % (db, ", ".join(tables)))
            return
        self.findings.problem(
            "unlogged_tables",
            "database %s has unlogged tables, which logical replication does not carry: %s; their rows would be "
            "missing on the new server" % (db, ", ".join(tables)),
            "make them logged for the upgrade (ALTER TABLE ... SET LOGGED; SET UNLOGGED again afterwards), or opt in "
            "with online_upgrade_unlogged_tables=empty if they may start empty (caches, staging), or use "
            "online_upgrade_method=dump_restore")

    def _large_objects(self, db, count):
        if count:
            self.findings.problem(
                "large_objects",
                "database %s holds %d large objects (pg_largeobject), which logical replication does not carry: "
                "they would be missing on the new server" % (db, count),
                "upgrade this host with online_upgrade_method=dump_restore (it copies them), or move them into "
                "bytea columns of a table with a primary key first")

    def _inheritable_settings(self, session):
        rows = session.query("SELECT name, setting, unit FROM pg_settings WHERE source = 'configuration file'").rows
        settings = {}
        for name, setting, unit in rows:
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


def _postmaster_port(data_dir):
    """The port a running postmaster of ``data_dir`` listens on (line 4 of postmaster.pid), or None."""
    info = postmaster(data_dir) if data_dir else None
    return info["port"] if info else None
