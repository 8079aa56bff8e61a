# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The new standby of a standby host, made before the primary's cutover: ``pg_basebackup -R`` from the primary host's
new instance on its temporary port, as the replication role, into the new data directory.  It is configured as that
instance is (for the production port: the copy carries its configuration) and started on a temporary port,
streaming from it, while the old standby keeps serving reads on the production port.  On the primary host,
StandbyAccess lets the standbys in: the replication role with REPLICATION on the new instance, and a line per standby
host in the replication block of its pg_hba.conf."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, ensure_directory, read_text, run_as, write_file)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Standby
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import process as pg_process
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.hba import HbaFile, hba_path
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance import PostgresInstance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication_access import (
    default_passfile, scram_verifier, verifier_matches, with_passfile_line, with_standby_lines)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import (
    connect, execute_unlogged, identify_system)


def conninfo_value(value):
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


class NewStandby(Standby):
    def __init__(self, module, new, primary_host, primary_port, user, password, application_name, temporary_port,
                 timeout=60, state_file=None):
        self.module = module
        self.new = new                      # its port: the production port it is configured for
        self.primary_host = primary_host
        self.primary_port = primary_port    # the primary's new instance, on its temporary port
        self.user = user
        self.password = password
        self.application_name = application_name
        self.temporary_port = temporary_port
        self.timeout = timeout
        self.passfile = default_passfile(new)
        self.state_file = state_file        # the copy this host's runs began: a leftover of it is theirs to clear

    def run(self):
        if self.new.config_file and os.path.dirname(os.path.abspath(self.new.config_file)) != os.path.abspath(self.new.data_dir):
            raise OperationError(
                "the new instance's configuration lives outside its data directory (%s): the copy would not carry it, "
                "and a standby in this layout is not made yet" % self.new.config_file,
                "detach this standby before the upgrade and rebuild it from the new server afterwards (pg_basebackup -R)")
        instance = PostgresInstance(self.module, self.new)
        made = self._made()
        if made and self._recorded() == "made" and not self._of_the_primary():
            self._clear_copy_of_another_cluster()
            made = False
        result = dict(changed=False, made=False, started=False, data_dir=self.new.data_dir, passfile=self.passfile)
        if self.module.check_mode:
            result["changed"] = not made or instance.postmaster() is None
            return result
        if not made:
            self._record("copying")
            self._base_backup()
            self._record("made")
            result.update(changed=True, made=True)
        if instance.postmaster() is None:
            instance.start(port=self.temporary_port, timeout=self.timeout)
            result.update(changed=True, started=True)
        result["receiver"] = self._receiver()
        return result

    def _made(self):
        """A standby made by an earlier run.  What a killed copy of this host's runs left (recorded before it began)
        is cleared; a data directory that is anything else is not ours to touch."""
        has_version = os.path.exists(os.path.join(self.new.data_dir, "PG_VERSION"))
        if has_version and os.path.exists(os.path.join(self.new.data_dir, "standby.signal")) and \
                self._recorded() != "copying":
            return True
        if not (os.path.isdir(self.new.data_dir) and os.listdir(self.new.data_dir)):
            return False
        if self._recorded() == "copying":
            if not self.module.check_mode:
                self._clear_leftover()
            return False
        if not has_version:
            raise OperationError(
                "%s is not empty and holds no PostgreSQL data directory: the new standby cannot be copied there"
                % self.new.data_dir, "empty it (an interrupted copy leaves such a directory), or set "
                "online_upgrade_new_data_dir to another directory")
        raise OperationError(
            "%s holds a data directory that is not a standby (no standby.signal)" % self.new.data_dir,
            "if it is a copy an interrupted run left, remove it (rm -rf %s) and run again; otherwise set "
            "online_upgrade_new_data_dir to another directory" % self.new.data_dir)

    def _of_the_primary(self):
        """Whether the standby this host's runs made is a copy of the primary's new instance as it is now, not of
        the one an upgrade rolled back since (the next upgrade makes the primary's new instance again)."""
        systemid = identify_system(
            self.primary_host, self.primary_port, self.user, self.password, self.timeout,
            "the primary's new instance (%s port %d)" % (self.primary_host, self.primary_port),
            "check that it runs on port %d and that its pg_hba.conf lets %s replicate from this host; then run "
            "again" % (self.primary_port, self.user))[0]
        return str(pg_process.system_identifier(self.new.data_dir)) == systemid

    def _clear_copy_of_another_cluster(self):
        if PostgresInstance(self.module, self.new).postmaster() is not None:
            raise OperationError(
                "%s holds a standby this host's runs made of another cluster than the primary's new instance (an "
                "upgrade rolled back since), and it runs" % self.new.data_dir,
                "stop it (it serves no client of the upgrade), then run again: it is removed and copied again")
        if not self.module.check_mode:
            shutil.rmtree(self.new.data_dir)
        self.module.warn("%s held the standby of an upgrade rolled back since: it was removed and copied again"
                         % self.new.data_dir)

    def _recorded(self):
        """What this host's runs recorded of a copy into this data directory: copying, made, or None."""
        record = json.loads(read_text(self.state_file) or "{}") if self.state_file else {}
        return record.get("copy") if record.get("data_dir") == self.new.data_dir else None

    def _record(self, copy):
        if self.state_file:
            ensure_directory(self.module, os.path.dirname(self.state_file), mode=0o755)
            write_file(self.module, self.state_file, json.dumps(dict(data_dir=self.new.data_dir, copy=copy,
                                                                     primary=self.primary_host)) + "\n")

    def _clear_leftover(self):
        """A killed run's copy: its pg_basebackup (if the kill left it running) stopped, its directory emptied."""
        pg_process.kill_working_on((self.new.data_dir,), program="pg_basebackup")
        shutil.rmtree(self.new.data_dir)
        self.module.warn("%s held the copy an interrupted run left: it was removed and copied again" % self.new.data_dir)

    def _base_backup(self):
        # The walreceiver reads the same passfile: a line for the primary's temporary port, one for the production
        # port it streams from after the cutover.
        ensure_directory(self.module, self.new.data_dir, owner=self.new.owner)
        text = read_text(self.passfile) or ""
        for port in (self.primary_port, self.new.port):
            text = with_passfile_line(text, port, self.user, self.password)
        write_file(self.module, self.passfile, text, owner=self.new.owner)
        argv = [os.path.join(self.new.bin_dir, "pg_basebackup"), "-D", self.new.data_dir, "-h", self.primary_host,
                "-p", str(self.primary_port), "-U", self.user, "--no-password", "-R", "-X", "stream",
                "-c", "fast", "-d", "application_name=%s" % conninfo_value(self.application_name)]
        rc, out, err = run_as(self.module, self.new.owner, argv, cwd="/", environ_update={"PGPASSFILE": self.passfile})
        if rc != 0:
            raise OperationError(
                "pg_basebackup of the primary's new instance (%s port %d) failed (rc %d): %s"
                % (self.primary_host, self.primary_port, rc, (err or out).strip()),
                "check that the primary's new instance runs on port %d and that its pg_hba.conf lets %s replicate "
                "from this host; then empty %s and run again" % (self.primary_port, self.user, self.new.data_dir))

    def _receiver(self):
        """The walreceiver's state once it streams (or what it was when the wait ended)."""
        deadline = time.monotonic() + self.timeout
        while True:
            session = connect(self.new, port=self.temporary_port, timeout=10)
            try:
                rows = session.query("SELECT status, sender_host, sender_port FROM pg_stat_wal_receiver").rows
            finally:
                session.close()
            status = dict(zip(("status", "sender_host", "sender_port"), rows[0])) if rows else dict(status="none")
            status["sender_port"] = int(status["sender_port"]) if status.get("sender_port") else None
            if status["status"] == "streaming" or time.monotonic() > deadline:
                return status
            time.sleep(0.2)


class StandbyAccess(Standby):
    """On the primary host: the new instance (running on ``temporary_port``) lets the standbys at ``addresses``
    stream as ``user``: the role with LOGIN REPLICATION and its password, a line per standby in pg_hba.conf."""

    def __init__(self, module, new, temporary_port, user, password, addresses):
        self.module = module
        self.new = new
        self.temporary_port = temporary_port
        self.user = user
        self.password = password
        self.addresses = addresses

    def run(self):
        result = dict(changed=False, actions=[])
        session = connect(self.new, port=self.temporary_port, timeout=10)
        try:
            self._role(session, result["actions"])
            hba = HbaFile(self.module, hba_path(self.module, self.new, session), self.new.owner, self.new.data_dir)
            before = hba.read() or ""
            after = with_standby_lines(before, self.user, self.addresses)
            if after != before:
                _changed, diff = hba.write_checked(after, session, "fix the file by hand, then run again")
                result["diff"] = diff
                result["actions"].append("add the standbys' lines to %s and reload" % hba.path)
                if not self.module.check_mode:
                    hba.reload()
                    time.sleep(0.2)  # the postmaster reloads asynchronously
        finally:
            session.close()
        result["changed"] = bool(result["actions"])
        return result

    def _role(self, session, actions):
        rows = session.query("SELECT rolpassword, rolreplication::text, rolcanlogin::text FROM pg_authid "
                             "WHERE rolname = $1", [self.user]).rows
        role = pgwire.quote_ident(self.user)
        if not rows:
            statement = "CREATE ROLE %s LOGIN REPLICATION PASSWORD %%s" % role
        elif "false" in rows[0][1:] or not verifier_matches(rows[0][0], self.password):
            statement = "ALTER ROLE %s LOGIN REPLICATION PASSWORD %%s" % role
        else:
            return
        actions.append(statement % "<scram verifier>")
        if not self.module.check_mode:
            execute_unlogged(session, statement % pgwire.quote_literal(scram_verifier(self.password)))
