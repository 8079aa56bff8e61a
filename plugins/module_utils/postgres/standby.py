# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The new standby of a standby host, made before the primary's cutover: ``pg_basebackup -R`` from the primary host's
new instance on its temporary port, as the replication role, into the new data directory.  It is configured as that
instance is (for the production port: the copy carries its configuration) and started on a temporary port,
streaming from it, while the old standby keeps serving reads on the production port."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, ensure_directory, read_text, run_as, write_file)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Standby
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance import PostgresInstance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication_access import (
    default_passfile, with_passfile_line)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect


def conninfo_value(value):
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


class NewStandby(Standby):
    def __init__(self, module, new, primary_host, primary_port, user, password, application_name, temporary_port,
                 timeout=60):
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

    def run(self):
        if self.new.config_file and os.path.dirname(os.path.abspath(self.new.config_file)) != os.path.abspath(self.new.data_dir):
            raise OperationError(
                "the new instance's configuration lives outside its data directory (%s): the copy would not carry it, "
                "and a standby in this layout is not made yet" % self.new.config_file,
                "detach this standby before the upgrade and rebuild it from the new server afterwards (pg_basebackup -R)")
        instance = PostgresInstance(self.module, self.new)
        made = self._made()
        result = dict(changed=False, made=False, started=False, data_dir=self.new.data_dir, passfile=self.passfile)
        if self.module.check_mode:
            result["changed"] = not made or instance.postmaster() is None
            return result
        if not made:
            self._base_backup()
            result.update(changed=True, made=True)
        if instance.postmaster() is None:
            instance.start(port=self.temporary_port, timeout=self.timeout)
            result.update(changed=True, started=True)
        result["receiver"] = self._receiver()
        return result

    def _made(self):
        """A standby made by an earlier run; a data directory that is anything else is not ours to touch."""
        if not os.path.exists(os.path.join(self.new.data_dir, "PG_VERSION")):
            if os.path.isdir(self.new.data_dir) and os.listdir(self.new.data_dir):
                raise OperationError(
                    "%s is not empty and holds no PostgreSQL data directory: the new standby cannot be copied there"
                    % self.new.data_dir, "empty it (an interrupted copy leaves such a directory), or set "
                    "online_upgrade_new_data_dir to another directory")
            return False
        if not os.path.exists(os.path.join(self.new.data_dir, "standby.signal")):
            raise OperationError(
                "%s holds a data directory that is not a standby (no standby.signal)" % self.new.data_dir,
                "if it is a copy an interrupted run left, remove it (rm -rf %s) and run again; otherwise set "
                "online_upgrade_new_data_dir to another directory" % self.new.data_dir)
        return True

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
