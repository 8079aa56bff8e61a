# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the physical copy needs before it starts: the old server running, the new instance made and stopped,
the publications, no tablespaces, room for the copy."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import process as pg_process
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance import PostgresInstance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication import subscription_name
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect


class CopyChecks:
    """The checks of PhysicalCopy."""

    def _check(self):
        if pg_process.postmaster(self.old.data_dir) is None:
            raise OperationError("the old server (%s) is not running" % self.old.data_dir,
                                 "start it: the physical copy is taken from the running server")
        new = PostgresInstance(self.module, self.new)
        if new.major() is None:
            raise OperationError("there is no new instance in %s" % self.new.data_dir,
                                 "create it first (fleetdb.online_upgrade.instance): its configuration is kept")
        if new.postmaster() is not None:
            raise OperationError("the new server runs (%s): pg_upgrade needs it stopped and empty" % self.new.data_dir,
                                 "stop it (fleetdb.online_upgrade.server state=stopped), then run again")
        spaces, missing = [], []
        for db in self.databases:
            session = connect(self.old, dbname=db)
            try:
                spaces = [r[0] for r in session.query(
                    "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')").rows]
                name = subscription_name(self.subscription, db, self.databases)
                if session.scalar("SELECT 1 FROM pg_publication WHERE pubname = $1", [name]) is None:
                    missing.append("%s (database %s)" % (name, db))
            finally:
                session.close()
        self._check_space()
        if spaces:
            raise OperationError("the physical copy does not carry tablespaces yet: %s" % ", ".join(spaces),
                                 "use online_upgrade_copy_method: logical (nothing was changed)")
        if missing:
            raise OperationError("publication %s does not exist on the old server" % ", ".join(missing),
                                 "create it first (fleetdb.online_upgrade.replication state=published): a slot "
                                 "can only decode with publications older than itself")

    def _check_space(self):
        """Room beside the new instance for one copy of the old cluster (its databases and WAL), plus 10 %."""
        session = connect(self.old)
        try:
            needed = int(session.scalar(
                "SELECT sum(pg_database_size(oid)) + (SELECT coalesce(sum(size), 0) FROM pg_ls_waldir()) "
                "FROM pg_database"))
        finally:
            session.close()
        where = os.path.dirname(self.new.data_dir.rstrip("/"))
        stat = os.statvfs(where)
        free = stat.f_bavail * stat.f_frsize
        self.result["space"] = dict(needed_bytes=needed, free_bytes=free, where=where)
        if free < needed * 1.1:
            raise OperationError("the physical copy needs %d MB beside the new instance (%s), %d MB are free"
                                 % (needed * 1.1 // 2 ** 20, where, free // 2 ** 20),
                                 "free space there, or use online_upgrade_copy_method: logical (nothing was changed)")
