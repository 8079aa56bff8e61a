# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_hba.conf: the one writer of a server's client authentication rules.

Where the file is (``hba_path``): what the running server reads (SHOW hba_file) when a session is at hand,
else what its configuration files name (postgres -C hba_file), else the data directory's.  A rewrite keeps
the file's mode and owner (a new file: 0600, the instance owner's) and is atomic, so that a reload never reads
half a file.  ``rule_errors`` is the one validation: pg_hba_file_rules, which reads the file on disk, not the
rules the server has loaded.  The blocks this collection owns in it (the cutover's fence, the replication
role's lines) are managed blocks (core.managed_block).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, read_text, write_file)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.server_control import (
    ServerControl, reload)

RULE_ERRORS_SQL = "SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL"


def hba_path(module, spec, session=None):
    """The pg_hba.conf of the instance ``spec``: SHOW hba_file on ``session`` (a session to its running server),
    else its configuration's hba_file, else the one in its data directory."""
    if session is not None:
        return session.scalar("SHOW hba_file")
    if os.path.isfile(os.path.join(spec.data_dir, "PG_VERSION")):
        rc, out, _err = ServerControl(module, spec).postgres_c("hba_file")
        if rc == 0 and out.strip():
            return out.strip()
    return os.path.join(spec.data_dir, "pg_hba.conf")


def rule_errors(session):
    """["line N: error"] of the pg_hba.conf on disk of the server ``session`` is connected to."""
    return ["line %s: %s" % (row[0], row[1]) for row in session.query(RULE_ERRORS_SQL).rows]


class HbaFile:
    """The pg_hba.conf at ``path`` of a server whose data directory is ``data_dir``, run by ``owner``."""

    def __init__(self, module, path, owner, data_dir):
        self.module = module
        self.path = path
        self.owner = owner
        self.data_dir = data_dir

    def read(self):
        return read_text(self.path)

    def write(self, text):
        """Replace the file's text; (changed, diff), honouring check mode."""
        try:
            info = os.stat(self.path)
        except OSError:
            return write_file(self.module, self.path, text, owner=self.owner, mode=0o600)
        return write_file(self.module, self.path, text, owner=(info.st_uid, info.st_gid), mode=info.st_mode & 0o7777)

    def write_checked(self, text, session, fix):
        """``write``, then, when it changed the file, the server's check of it (``session``: a session to the
        running server, None when none runs): with errors, the previous text is put back and the error raised."""
        previous = self.read()
        changed, diff = self.write(text)
        if changed and session is not None and not self.module.check_mode:
            errors = rule_errors(session)
            if errors:
                self.write(previous or "")
                raise OperationError("the new pg_hba.conf has errors, the old one was put back: %s (%s)"
                                     % ("; ".join(errors), self.path), fix)
        return changed, diff

    def put_block(self, block, lines, first=False):
        """Our ``block`` (a ManagedBlock) holding ``lines``; (changed, diff)."""
        return self.write(block.put(self.read(), lines, first=first))

    def remove_block(self, block):
        """The file without our ``block``; (changed, diff), not changed when it has none."""
        text = self.read()
        if not block.present(text):
            return False, None
        return self.write(block.without(text))

    def reload(self):
        """Make the running server read the file again; False when it is not running."""
        return reload(self.data_dir)
