# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WAL archiving around the cutover (pg_switchover):

  archive_drain   before the fence, clients still writing: the old server switches WAL segment and its
                  archiver pushes it, so that its shutdown in the window has (almost) nothing left to push;
                  then each WAL receiver's physical slot is made on the new server (postgres/wal_receivers.py);
  archive_check   after the window, the new server serving: with pgBackRest, the stanza's pg1-path set to the
                  new data directory and ``stanza-upgrade``; then a segment switched and archived without
                  failure; with pgBackRest, the report says that a full backup is due.
The full backup itself (``back_up``) is a module call of its own after the cutover's: it grows with the data.

A failure after the window fails the module with the archiver's error while the new server keeps serving.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import archiving, wal_receivers
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.pgbackrest import (
    PgBackRest, from_archive_command)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.server_control import log_file
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade import phases


class Archiving:
    """The archive backlog before the fence and the new server's archiving after the window (a part of
    PostgresSwitchover)."""

    def _drain_archive(self):
        admin = self._old(self.databases[0])
        if archiving.settings(admin) is None:
            return
        with self.timer.phase(phases.ARCHIVE_DRAIN):
            old = archiving.switch_and_wait(
                admin, "the old server", log_file(self.old),
                "nothing was changed and the old server keeps serving: correct its archive_command (or the archive "
                "it writes to) until SELECT * FROM pg_stat_archiver shows no new failure, then run again")
        self.report.setdefault("archiving", {})["old_drained"] = old

    def _give_receivers_slots(self):
        """Each WAL receiver streaming from the old server (pg_receivewal, barman) gets its physical slot on the new
        server, before the new server takes clients; the report says what to do with the receiver."""
        found = wal_receivers.streaming(self._old(self.databases[0]))
        if found:
            wal_receivers.give_slots(self._new(self.databases[0]), found)
            self.report["wal_receivers"] = [dict(r, tool=wal_receivers.TOOLS[r["application_name"]],
                                                 next=wal_receivers.what_next(r, self.production_port)) for r in found]

    def _archive_after(self):
        session = connect(self.new, dbname=self.databases[0], port=self.production_port)
        try:
            found = archiving.settings(session)
            if found is None:
                self.report["archiving"] = dict(self.report.get("archiving") or {}, new="archives nothing")
                return
            with self.timer.phase(phases.ARCHIVE_CHECK):
                self._check_new_archiving(session, found)
        finally:
            session.close()

    def _check_new_archiving(self, session, found):
        report = self.report.setdefault("archiving", {})
        tool = from_archive_command(found["command"])
        backrest = None
        if tool and tool["stanza"]:
            backrest = PgBackRest(self.module, self.new.owner, tool["stanza"], tool["config"], tool["binary"])
            report["pgbackrest"] = dict(stanza=backrest.stanza, config=backrest.config,
                                        pg1_path_changed=backrest.set_pg_path(self.new.data_dir))
            backrest.stanza_upgrade()
        fix = ("the new server serves port %d and keeps its WAL until it is archived: correct archive_command (or "
               "the archive it writes to), then check with SELECT pg_walfile_name(pg_switch_wal()); until SELECT "
               "last_archived_wal FROM pg_stat_archiver names that segment (or a later one)" % self.production_port)
        if backrest:
            fix += "; for pgBackRest: %s" % backrest.command_line("check")
        fix += "; then run the play again: it finishes the upgrade (the old instance kept for rollback, the report)"
        report["new"] = archiving.switch_and_wait(session, "the new server", log_file(self.new), fix)
        if backrest:
            report["pgbackrest"]["backup_due"] = True  # stanza-upgrade just added a database that has no backup yet

    def back_up(self):
        """A full pgBackRest backup of the server the cutover left serving, when it archives through pgBackRest;
        done when the stanza already holds a backup of its current database (the one stanza-upgrade added)."""
        if self.state.phase != "done" and self.module.check_mode:
            return dict(changed=False, msg="the cutover has not run: a full backup follows it when the server archives "
                        "through pgBackRest")
        if self.state.phase != "done":
            raise OperationError("the cutover recorded in %s has not finished (phase %s): no backup of the new server "
                                 "yet" % (self.state.path, self.state.phase), "run the cutover (fleetdb.online_upgrade.switchover state=switched) first")
        session = connect(self.new, dbname=self.databases[0], port=self.production_port)
        try:
            found = archiving.settings(session)
        finally:
            session.close()
        tool = from_archive_command(found["command"]) if found else None
        if not tool or not tool["stanza"]:
            return dict(changed=False, msg="the server on port %d archives no WAL through pgBackRest: no backup to take"
                        % self.production_port)
        backrest = PgBackRest(self.module, self.new.owner, tool["stanza"], tool["config"], tool["binary"])
        result = dict(stanza=backrest.stanza, backup=backrest.current_backup())
        if result["backup"]:
            return dict(result, changed=False, msg="pgBackRest stanza %s already holds backup %s of the server on "
                        "port %d" % (backrest.stanza, result["backup"]["label"], self.production_port))
        if self.module.check_mode:
            return dict(result, changed=True, msg="a full backup of pgBackRest stanza %s would be taken" % backrest.stanza)
        result["backup"] = backrest.backup()
        return dict(result, changed=True, msg="full backup %s of pgBackRest stanza %s in %s s"
                    % (result["backup"]["label"], backrest.stanza, result["backup"]["seconds"]))
