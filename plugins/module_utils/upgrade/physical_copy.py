# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The initial copy made physically: a base backup recovered to a logical slot's point, then pg_upgrade --link.

  1. backup    pg_basebackup of the old server (its own release) into <new data dir>.copy, holding WAL
               with a physical slot;
  2. slots     one logical slot per database (the publications exist already: a slot decodes with the
               publications of its time), then a WAL record after them, so that recovery meets one;
  3. recover   the copy starts as a standby of the old server on a private port, with
               recovery_target_lsn = the last slot's point (exclusive) and promotes there: it holds every
               transaction that committed before that point and none after;
  4. upgrade   initdb of the new release into <new data dir>.staged with the old cluster's checksums, locale
               and encoding, pg_upgrade --link from the copy; the configuration files of the new instance
               (made by fleetdb.online_upgrade.instance) are carried into it and it takes the new instance's
               place; the copy's directory (hard links only) is removed.
Then fleetdb.online_upgrade.replication subscribes with copy_data = false from those slots, each origin
advanced to the recovery point, so that replication starts exactly where the copy ends.

The steps are recorded in a state file.  Until the upgraded copy took the new instance's place, a re-run
starts over: nothing half-made is ever used (physical_copy_leftovers.py); the checks before the copy are in
physical_copy_checks.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import socket
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import (
    extensions as pg_extensions, process as pg_process, record as pg_record)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, PhaseTimer, ensure_directory, read_text, run_as, user_ids, write_file)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core import engine
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import InstanceSpec
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.cutover_state import StateFile
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.physical_copy_checks import CopyChecks
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.physical_copy_leftovers import (
    PHYSICAL_SLOT, CopyLeftovers)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance import PostgresInstance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.server_control import log_tail
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.hba import HbaFile
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade import phases
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication import subscription_name
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication_access import (
    conninfo, default_passfile)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.cluster_locale import cluster_locale

# The application_name of the copy's replication connections (pg_basebackup's, then the recovering copy's): a
# re-run's preflight knows them for what a killed run left streaming, not for a standby.
COPY_APPLICATION_NAME = "fleetdb_physical_copy"
# A standby refuses to start with less than its primary has of these.
STANDBY_MINIMUMS = ("max_connections", "max_worker_processes", "max_wal_senders", "max_prepared_transactions",
                    "max_locks_per_transaction")
DONE = "done"
MAX_RATE = re.compile(r"^[1-9][0-9]*[kM]?$")  # pg_basebackup --max-rate: kB/s, or with the suffix k or M


def max_rate_problem(rate):
    """Why pg_basebackup would refuse this --max-rate, or None."""
    if not rate:
        return None
    if MAX_RATE.match(rate):
        kilobytes = int(rate.rstrip("kM")) * (1024 if rate.endswith("M") else 1)
        if 32 <= kilobytes <= 1024 * 1024:
            return None
    return ("physical copy max_rate %r is not a rate pg_basebackup takes: kilobytes per second from 32 to 1048576, "
            "or a number with the suffix k or M, e.g. 200M" % rate)


class PhysicalCopy(CopyChecks, CopyLeftovers, engine.PhysicalCopy):
    def __init__(self, module, old, new, databases, subscription="fleetdb_upgrade", temporary_port=None,
                 copy_port=None, state_file=None, timeout=3600, jobs=2, replication_user="fleetdb_replicator",
                 passfile=None, max_rate=None):
        self.module = module
        self.old = old
        self.new = new
        self.databases = list(databases)
        self.subscription = subscription
        self.temporary_port = temporary_port
        # The copy streams WAL as the replication role (its pg_hba.conf line and passfile are replication's).
        self.replication_user = replication_user
        self.passfile = passfile or default_passfile(new)
        self.copy_port = copy_port
        self.max_rate = max_rate  # pg_basebackup --max-rate: what the copy may read from production per second
        self.timeout = timeout
        self.jobs = jobs
        self.state_file = StateFile(module, state_file, known=phases.COPY)  # the step reached; a failpoint file stops at one
        self.state = self.state_file.data
        self.copy_dir = new.data_dir.rstrip("/") + ".copy"
        self.staged_dir = new.data_dir.rstrip("/") + ".staged"
        self.timer = PhaseTimer()
        self.result = dict(changed=False, phases=self.timer.timings, copy_dir=self.copy_dir)

    # -- entry point ---------------------------------------------------------------
    def run(self):
        if self._done():
            self._start_new()
            self.result.update(start_lsn=self.state["start_lsn"], slots=self.state["slots"],
                               msg="the new instance already holds the physical copy (recovered to %s)"
                               % self.state["start_lsn"])
            return self.result
        self._check()
        self.result["changed"] = True
        if self.module.check_mode:
            self.result["msg"] = ("would copy %s physically (pg_basebackup, recovery to one logical slot's point, "
                                  "pg_upgrade --link) into %s" % (self.old.data_dir, self.new.data_dir))
            return self.result
        if self.state.get("phase") or os.path.exists(self.copy_dir) or os.path.exists(self.staged_dir):
            with self.timer.phase("start_over"):
                self._start_over()
        with self.timer.phase("backup"):
            self._set("backup")
            self._backup()
        with self.timer.phase("slots"):
            start_lsn, slots = self._create_slots()
            self._set("recover", start_lsn=start_lsn, slots=slots)
        with self.timer.phase("recover"):
            self._recover(start_lsn)
        with self.timer.phase("upgrade"):
            self._set("upgrade")
            self._upgrade()
        with self.timer.phase("swap"):
            self._take_new_place()
            self._set(DONE, new_system_identifier=str(pg_process.system_identifier(self.new.data_dir)),
                      pg_upgrade_mode=self.result["pg_upgrade_mode"])
        shutil.rmtree(self.copy_dir, ignore_errors=True)  # hard links: the data stays in the new instance
        self._start_new()
        self.result.update(start_lsn=start_lsn, slots=slots,
                           msg="the new instance holds the old server's data as of %s" % start_lsn)
        return self.result

    def _done(self):
        """Done, and the new instance is still the upgraded copy (not one made again after a rollback)."""
        return (self.state.get("phase") == DONE and self.state.get("new_system_identifier")
                == str(pg_process.system_identifier(self.new.data_dir)))

    def _start_new(self):
        """The upgraded copy on its temporary port, with its Record of Upgrades set (once)."""
        if self.module.check_mode:
            return
        PostgresInstance(self.module, self.new).start(port=self.temporary_port, timeout=min(self.timeout, 300))
        self.result["extensions_updated"] = self._update_extensions()
        self.result["record_sets"] = self._write_record()

    def _update_extensions(self):
        """pg_upgrade keeps each extension at its old version: update those the new release has newer, before
        the copy takes clients (preflight checked that update scripts lead there)."""
        updated = {}
        for db in self.databases:
            session = connect(self.new, dbname=db, port=self.temporary_port)
            try:
                done = pg_extensions.updates(session)
            finally:
                session.close()
            if done:
                updated[db] = ["%s %s -> %s" % row for row in done]
        return updated

    def _write_record(self):
        """A Record of Upgrades set per database (the physical method's migrate-restore): the publications
        and subscriptions the copy carried over."""
        old = connect(self.old)
        try:
            source_version = old.scalar("SHOW server_version").split(" ")[0]
        finally:
            old.close()
        numbers = {}
        for db in self.databases:
            session = connect(self.new, dbname=db, port=self.temporary_port)
            try:
                pubs = [dict(name=r[0], all_tables=r[1] == "t", owner=r[2]) for r in session.query(
                    "SELECT pubname, puballtables, pg_get_userbyid(pubowner) FROM pg_publication").rows]
                subs = [dict(name=r[0], publications=r[1].strip("{}").split(",") if r[1] != "{}" else [],
                             owner=r[2]) for r in session.query(
                    "SELECT subname, subpublications::text, pg_get_userbyid(subowner) FROM pg_subscription "
                    "WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())").rows]
                tables = [tuple(r) for r in session.query(
                    "SELECT n.nspname, c.relname, p.pubname FROM pg_publication_rel pr "
                    "JOIN pg_publication p ON p.oid = pr.prpubid JOIN pg_class c ON c.oid = pr.prrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace").rows]
                target_version = session.scalar("SHOW server_version").split(" ")[0]
                numbers[db] = pg_record.write_set(
                    session, self.module.check_mode, source_version, target_version, "pg_upgrade --link",
                    "physical:%s:%s" % (self.state.get("system_identifier"), self.state.get("start_lsn")),
                    socket.gethostname(), pubs, subs, tables)[0]
            finally:
                session.close()
        return numbers

    # -- the steps ---------------------------------------------------------------------
    def _backup(self):
        ensure_directory(self.module, self.copy_dir, owner=self.old.owner, mode=0o700)
        argv = [os.path.join(self.old.bin_dir, "pg_basebackup"), "-D", self.copy_dir, "-h", self.old.socket_dir,
                "-p", str(self.old.port), "-U", self.replication_user, "-w", "-X", "stream",
                "-d", "application_name=%s" % COPY_APPLICATION_NAME,
                "-C", "-S", PHYSICAL_SLOT, "--checkpoint=fast", "--no-sync"]
        if self.max_rate:
            argv.append("--max-rate=%s" % self.max_rate)
        rc, out, err = run_as(self.module, self.old.owner, argv, cwd="/", environ_update={"PGPASSFILE": self.passfile})
        if rc != 0:
            raise OperationError("pg_basebackup of the old server failed (rc %d): %s" % (rc, (err or out).strip()),
                                 "run fleetdb.online_upgrade.replication state=published first: it lets %s in "
                                 "for replication on the local socket and writes its passfile %s; then run again"
                                 % (self.replication_user, self.passfile))
        self.result["copied_bytes"] = _tree_size(self.copy_dir)

    def _create_slots(self):
        """One logical slot per database; the recovery point is the last one's (the others' origins are
        advanced to it: what they hold between their own point and it is in the copy)."""
        slots, points = {}, []
        for db in self.databases:
            name = subscription_name(self.subscription, db, self.databases)
            session = connect(self.old, dbname=db)
            try:
                points.append(session.scalar(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", [name]))
                slots[db] = name
                if db == self.databases[-1]:
                    self.state["system_identifier"] = session.scalar(
                        "SELECT system_identifier::text FROM pg_control_system()")
                    # Recovery stops before the first record at or past the point: make sure there is one.
                    session.query("SELECT pg_logical_emit_message(false, 'fleetdb', 'physical copy point')")
            finally:
                session.close()
        start_lsn = max(points, key=_lsn_value)
        return start_lsn, slots

    def _recover(self, start_lsn):
        old_settings = self._old_settings()
        lines = ["# fleetdb.online_upgrade: the physical copy, a standby recovered to one point, then promoted",
                 "port = %d" % self.copy_port, "listen_addresses = ''",
                 "unix_socket_directories = '%s'" % self.old.socket_dir, "hot_standby = on",
                 "primary_conninfo = '%s'" % conninfo(self.old.socket_dir, self.old.port, "replication",
                                                      self.replication_user, self.passfile,
                                                      COPY_APPLICATION_NAME).replace("'", "''"),
                 "primary_slot_name = '%s'" % PHYSICAL_SLOT,
                 "recovery_target_lsn = '%s'" % start_lsn, "recovery_target_inclusive = off",
                 "recovery_target_action = promote", "logging_collector = off", "archive_mode = off"]
        lines += ["%s = %s" % (name, old_settings[name]) for name in STANDBY_MINIMUMS if name in old_settings]
        owner = self.old.owner
        write_file(self.module, os.path.join(self.copy_dir, "postgresql.conf"), "\n".join(lines) + "\n", owner=owner)
        write_file(self.module, os.path.join(self.copy_dir, "postgresql.auto.conf"), "", owner=owner)
        HbaFile(self.module, os.path.join(self.copy_dir, "pg_hba.conf"), owner, self.copy_dir).write(
            "local all all peer\nlocal replication all peer\n")
        write_file(self.module, os.path.join(self.copy_dir, "pg_ident.conf"), "", owner=owner)
        write_file(self.module, os.path.join(self.copy_dir, "standby.signal"), "", owner=owner)
        copy = PostgresInstance(self.module, self._copy_spec())
        copy.start(port=self.copy_port, timeout=self.timeout)
        session = connect(self._copy_spec(), port=self.copy_port, timeout=60)
        try:
            deadline = time.monotonic() + self.timeout
            while session.scalar("SELECT pg_is_in_recovery()::text") != "false":
                if time.monotonic() > deadline:
                    raise OperationError("the copy did not reach %s within %d s\nlast lines of its log:\n%s"
                                         % (start_lsn, self.timeout, log_tail(copy.log_file)),
                                         "check the old server's WAL sender and the log above, then run again")
                time.sleep(0.1)
        finally:
            session.close()
        stopped_at = [line for line in (read_text(copy.log_file) or "").splitlines()
                      if "recovery stopping before WAL location" in line]
        if not stopped_at:
            raise OperationError("the copy promoted without stopping at its target %s\nlast lines of its log:\n%s"
                                 % (start_lsn, log_tail(copy.log_file)), "run again (the copy is made anew)")
        self.result["recovery"] = stopped_at[-1].split("LOG:", 1)[-1].strip()
        copy.stop("fast", timeout=self.timeout)
        self._drop_physical_slot()

    def _upgrade(self):
        info = self._old_cluster()
        staged = InstanceSpec(data_dir=self.staged_dir, bin_dir=self.new.bin_dir, owner=self.new.owner,
                              socket_dir=self.new.socket_dir)
        ensure_directory(self.module, self.staged_dir, owner=self.new.owner, mode=0o700)
        argv = [os.path.join(self.new.bin_dir, "initdb"), "-D", self.staged_dir, "-U", info["superuser"],
                "--encoding", info["encoding"], "--lc-collate", info["collate"], "--lc-ctype", info["ctype"],
                "--locale", info["collate"], "--auth-local=peer", "--auth-host=scram-sha-256",
                "--no-sync"]  # pg_upgrade syncs the whole upgraded cluster at its end
        if info["checksums"]:
            argv.append("--data-checksums")
        elif int(PostgresInstance(self.module, staged).binaries_major()) >= 18:
            argv.append("--no-data-checksums")
        rc, out, err = run_as(self.module, self.new.owner, argv, cwd="/")
        if rc != 0:
            raise OperationError("initdb for the upgraded copy failed (rc %d): %s" % (rc, (err or out).strip()),
                                 "the old cluster's locale (%s) must exist on the host (locale -a)" % info["collate"])
        work = os.path.join(os.path.dirname(self.staged_dir), ".fleetdb-pg_upgrade")
        ensure_directory(self.module, work, owner=self.new.owner, mode=0o700)
        # --swap (18 and later) moves the copy's directories instead of linking each file: faster with many
        # relations, and safe here, because what it destroys is the copy, which a re-run makes anew anyway.
        mode = "--swap" if self._pg_upgrade_can_swap() else "--link"
        self.result["pg_upgrade_mode"] = mode.lstrip("-")
        argv = [os.path.join(self.new.bin_dir, "pg_upgrade"), "-b", self.old.bin_dir, "-B", self.new.bin_dir,
                "-d", self.copy_dir, "-D", self.staged_dir, "-p", str(self.copy_port), "-P", str(self.copy_port + 1),
                "-s", work, mode, "-j", str(self.jobs), "-U", info["superuser"]]
        rc, out, err = run_as(self.module, self.new.owner, argv, cwd=work)
        if rc != 0:
            raise OperationError("pg_upgrade %s of the copy failed (rc %d): %s"
                                 % (mode, rc, "\n".join((out + err).strip().splitlines()[-15:])),
                                 "correct the cause it names, then run again (the copy is made anew; the old "
                                 "server was not touched)")
        shutil.rmtree(work, ignore_errors=True)

    def _pg_upgrade_can_swap(self):
        rc, out, _err = self.module.run_command([os.path.join(self.new.bin_dir, "pg_upgrade"), "--help"])
        return rc == 0 and "--swap" in out

    def _take_new_place(self):
        """The new instance's configuration files go into the upgraded copy, which then takes its place."""
        uid, gid, _home = user_ids(self.new.owner)
        for name in sorted(os.listdir(self.new.data_dir)):
            path = os.path.join(self.new.data_dir, name)
            if name.endswith(".conf") and os.path.isfile(path):
                shutil.copy2(path, os.path.join(self.staged_dir, name))
                if os.geteuid() == 0:
                    os.chown(os.path.join(self.staged_dir, name), uid, gid)
        retired = self.new.data_dir.rstrip("/") + ".initdb"
        shutil.rmtree(retired, ignore_errors=True)
        os.rename(self.new.data_dir, retired)
        os.rename(self.staged_dir, self.new.data_dir)
        shutil.rmtree(retired, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------
    def _set(self, phase, **extra):
        self.state_file.set(phase, **extra)

    def _copy_spec(self):
        return InstanceSpec(data_dir=self.copy_dir, bin_dir=self.old.bin_dir, owner=self.old.owner,
                            socket_dir=self.old.socket_dir, port=self.copy_port,
                            log_file=os.path.join(self.copy_dir, "log", "recovery.log"))

    def _old_settings(self):
        session = connect(self.old)
        try:
            return dict(session.query("SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                                      [list(STANDBY_MINIMUMS)]).rows)
        finally:
            session.close()

    def _old_cluster(self):
        session = connect(self.old)
        try:
            row = session.rows(
                "SELECT pg_encoding_to_char(encoding) AS encoding, datcollate AS collate, datctype AS ctype, "
                "(SELECT rolname FROM pg_authid WHERE oid = 10) AS superuser, "
                "current_setting('data_checksums') = 'on' AS checksums "
                "FROM pg_database WHERE datname = 'template0'")[0]
            row["provider"] = cluster_locale(session)["provider"]
        finally:
            session.close()
        if row["provider"] != "libc":
            raise OperationError("template0 of the old server uses the %s locale provider" % row["provider"],
                                 "use online_upgrade_copy_method: logical (nothing was changed)")
        row["checksums"] = row["checksums"] == "t"
        return row


def _lsn_value(text):
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def _tree_size(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
