# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Settings of a running server through ALTER SYSTEM (postgresql.auto.conf, read last on every layout: a
Debian cluster's /etc/postgresql too), then a reload; what only a restart applies is reported, and restarted
only when asked.  This is how the old server gets what the upgrade needs of it (``wal_level``, slots, senders)
at a moment its operator chooses.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError

# Per name: the value in effect, its unit and context, and the value postgresql.auto.conf gives it (if any).
CURRENT_SQL = """
SELECT s.name, s.setting, coalesce(s.unit, ''), s.context, s.pending_restart,
       (SELECT f.setting FROM pg_file_settings f WHERE f.name = s.name AND f.sourcefile LIKE '%/postgresql.auto.conf'
         ORDER BY f.seqno DESC LIMIT 1)
  FROM pg_settings s WHERE s.name = ANY($1::text[])
"""


def _same(wanted, value):
    return value is not None and str(wanted).strip().lower() == str(value).strip().lower()


def _enough(wanted, value):
    """A number at least ``wanted`` (for at_least: a larger value the DBA chose stays)."""
    try:
        return value is not None and int(value) >= int(wanted)
    except (TypeError, ValueError):
        return False


def alter_system(module, session, settings, reload, at_least=False):
    """ALTER SYSTEM SET each of ``settings`` the server does not have yet (with ``at_least``, numbers it has less
    of); ``reload()`` the server.  Returns dict(changed, statements, diff, pending_restart: the names a restart must still
    apply)."""
    same = _enough if at_least else _same
    names = [name.lower() for name in settings]
    current = dict((row[0], row[1:]) for row in session.query(CURRENT_SQL, [names]).rows)
    unknown = sorted(set(names) - set(current))
    if unknown:
        raise OperationError("the server has no setting named %s" % ", ".join(unknown),
                             "correct the names (SELECT name FROM pg_settings lists them); nothing was changed")
    statements, before, after, pending = [], [], [], []
    for name, wanted in ((n.lower(), v) for n, v in settings.items()):
        setting, _unit, context, pending_restart, in_auto_conf = current[name]
        if same(wanted, in_auto_conf) or (in_auto_conf is None and same(wanted, setting)):
            if pending_restart in ("t", True) or (context == "postmaster" and not same(wanted, setting)):
                pending.append(name)
            continue
        statements.append("ALTER SYSTEM SET %s = %s" % (name, pgwire.quote_literal(str(wanted))))
        before.append("%s = %s\n" % (name, setting))
        after.append("%s = %s\n" % (name, wanted))
        if context == "postmaster":
            pending.append(name)
    if statements and not module.check_mode:
        for statement in statements:
            try:
                session.execute(statement)
            except pgwire.PgError as exc:
                raise OperationError("%s: %s" % (statement, exc), "correct the value; the statements before it "
                                     "took effect (a re-run goes on from there)", statements=statements)
        reload()
    diff = dict(before_header="settings in effect", after_header="postgresql.auto.conf",
                before="".join(before), after="".join(after))
    return dict(changed=bool(statements), statements=statements, diff=diff, pending_restart=sorted(pending))
