# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight of the old server's WAL archiving: how it archives, and with pgBackRest (an archive_command that runs
``pgbackrest ... archive-push``) that its stanza passes ``pgbackrest check`` and that the installed pgBackRest
backs up the new major; all before anything changes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import archiving, wal_receivers
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.pgbackrest import (
    SUPPORTS_MAJOR, PgBackRest, from_archive_command, supports)


class ArchivingChecks:
    """The archiving part of PostgresPreflight."""

    def _wal_receivers(self, senders):
        """pg_receivewal and barman's streaming archiver among the old server's ``senders``: not standbys, each
        named with what to do after the cutover, which gives it its slot on the new server.  Returns them."""
        found = wal_receivers.receivers(senders)
        for receiver in found:
            self.findings.warning("wal_receivers", "a WAL receiver streams from the old server, %s%s" % (
                wal_receivers.what_next(receiver, self.old.port),
                "; the cutover creates its slot %s on the new server" % receiver["slot"] if receiver["slot"] else ""))
        self.facts["wal_receivers"] = [dict(r, tool=wal_receivers.TOOLS[r["application_name"]]) for r in found]
        return found

    def _archiving(self, session):
        found = archiving.settings(session)
        self.facts["archiving"] = found
        if found is None:
            return
        tool = from_archive_command(found["command"])
        if tool is None:
            return
        found["tool"] = "pgbackrest"
        f = self.findings
        if not tool["stanza"]:
            f.problem("pgbackrest", "archive_command runs pgBackRest without --stanza: the upgrade cannot tell which "
                      "stanza to upgrade", "name the stanza in archive_command (pgbackrest --stanza=NAME archive-push "
                      "%p) and reload the server")
            return
        backrest = PgBackRest(self.module, self.old.owner, tool["stanza"], tool["config"], tool["binary"])
        found.update(stanza=backrest.stanza, config=backrest.config)
        version = backrest.version()
        found["version"] = version
        major = self.new_major[0] if self.new_major else None
        if version is None:
            f.problem("pgbackrest", "archive_command runs %s, which does not run on this host as %s"
                      % (tool["binary"], self.old.owner), "install pgBackRest (the package pgbackrest)")
            return
        if major and supports(version, major) is False:
            f.problem("pgbackrest", "pgBackRest %s cannot back up PostgreSQL %d: the new server would archive nothing "
                      "and stanza-upgrade would fail" % (version, major),
                      "install pgBackRest %s or later (PGDG's apt or yum repository packages it: apt-get install "
                      "pgbackrest), then run again" % ".".join(str(p) for p in SUPPORTS_MAJOR[major]))
        if backrest.pg_path() is None:
            f.problem("pgbackrest", "%s has no pg1-path in its section [%s]: the upgrade could not point the stanza "
                      "at the new data directory" % (backrest.config, backrest.stanza),
                      "add pg1-path=%s to [%s] in %s" % (self.old.data_dir, backrest.stanza, backrest.config))
        error = backrest.check()
        if error:
            f.problem("pgbackrest", "%s fails: %s" % (backrest.command_line("check"), error),
                      "correct the stanza (repository reachable, pg1-path %s, archive_command) until that "
                      "command passes, then run again" % self.old.data_dir)
