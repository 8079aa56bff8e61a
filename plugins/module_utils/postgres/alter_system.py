# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Settings of a running server through ALTER SYSTEM (postgresql.auto.conf, read last on every layout: a
Debian cluster's /etc/postgresql too), then a reload; what only a restart applies is reported, and restarted
only when asked.  This is how the old server gets what the upgrade needs of it (``wal_level``, slots, senders)
at a moment its operator chooses.  Settings held for a while (a rollback's ``synchronous_standby_names``) are
given back as their operator had them: the value postgresql.auto.conf had, or none there (RESET).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, read_text, write_file)

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


def record_auto_conf(module, session, names, record, owner):
    """Write to ``record`` what postgresql.auto.conf gives each of ``names`` (None: nothing), unless it exists: a
    re-run after the settings changed must keep what they were before."""
    if read_text(record) is not None:
        return False
    names = [name.lower() for name in names]
    kept = dict((row[0], row[5]) for row in session.query(CURRENT_SQL, [names]).rows)
    write_file(module, record, json.dumps(kept, sort_keys=True) + "\n", owner=owner)
    return True


def give_back(module, session, record, reload):
    """Put back what ``record`` recorded (ALTER SYSTEM SET, or RESET for a setting postgresql.auto.conf did not
    have), reload, then remove it."""
    text = read_text(record)
    if text is None:
        return dict(changed=False, statements=[], diff={}, pending_restart=[])
    kept = json.loads(text)
    current = dict((row[0], row[5]) for row in session.query(CURRENT_SQL, [sorted(kept)]).rows)
    statements = []
    for name, value in sorted(kept.items()):
        if value is None and current.get(name) is not None:
            statements.append("ALTER SYSTEM RESET %s" % name)
        elif value is not None and current.get(name) != value:
            statements.append("ALTER SYSTEM SET %s = %s" % (name, pgwire.quote_literal(value)))
    if not module.check_mode:
        for statement in statements:
            session.execute(statement)
        if statements:
            reload()
        os.remove(record)
    diff = dict(before_header="postgresql.auto.conf", after_header="postgresql.auto.conf",
                before="".join("%s = %s\n" % item for item in sorted(current.items()) if item[1] is not None),
                after="".join("%s = %s\n" % item for item in sorted(kept.items()) if item[1] is not None))
    return dict(changed=True, statements=statements, diff=diff, pending_restart=[])
