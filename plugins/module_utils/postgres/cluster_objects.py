# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the cluster holds beside the databases' contents: databases, tablespaces and login roles.  None of them
is replicated; the copy carries those that existed when it began.  One created on the old server during the copy
would be missing once the new server takes the production port (its clients locked out, its rows lost); one
dropped there would come back (a login the DBA removed working again).  So the cutover compares both servers
before the fence and names each, with the way to bring them level.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shlex

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.pgwire import quote_ident

DATABASES_SQL = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"
TABLESPACES_SQL = "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1"
LOGIN_ROLES_SQL = "SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname <> $1 ORDER BY 1"
KINDS = (("databases", DATABASES_SQL, "DATABASE"), ("tablespaces", TABLESPACES_SQL, "TABLESPACE"),
         ("login roles", LOGIN_ROLES_SQL, "ROLE"))


def _names(session, sql, params=None):
    return set(row[0] for row in session.query(sql, params or []).rows)


def differences(old, new, replication_user):
    """({kind: [names]} the old server has and the new one lacks, {kind: [names]} the new one has and the old lacks)."""
    missing, dropped = {}, {}
    for kind, sql, _word in KINDS:
        params = [replication_user] if "$1" in sql else None
        on_old, on_new = _names(old, sql, params), _names(new, sql, params)
        if on_old - on_new:
            missing[kind] = sorted(on_old - on_new)
        if on_new - on_old:
            dropped[kind] = sorted(on_new - on_old)
    return missing, dropped


def _listed(found):
    return "; ".join("%s: %s" % (kind, ", ".join(names)) for kind, names in found.items())


def check(old, new, replication_user, new_psql):
    """Raise, naming each, when the servers differ in databases, tablespaces or login roles.  ``new_psql`` is the
    command line of a psql on the new server (as its owner), for the fix."""
    missing, dropped = differences(old, new, replication_user)
    if missing:
        raise OperationError(
            "the old server has %s that the new one lacks (created after the copy began; none is replicated): %s"
            % (" and ".join(missing), _listed(missing)),
            "run playbooks/upgrade.yml again: its schema step carries the roles and tablespaces created since, and "
            "copies every database (with online_upgrade_databases set, add the new ones to it); or drop them on the "
            "old server. Nothing was changed", missing_on_new=missing, dropped_on_old=dropped)
    if dropped:
        statements = ["DROP %s %s" % (word, quote_ident(name)) for kind, _sql, word in KINDS for name in dropped.get(kind, [])]
        raise OperationError(
            "the new server has %s that the old one no longer has (dropped after the copy began): %s; they would "
            "come back with the new server" % (" and ".join(dropped), _listed(dropped)),
            "drop them on the new server too, then run again: %s. Nothing was changed"
            % "; ".join("%s -c %s" % (new_psql, shlex.quote(sql)) for sql in statements), dropped_on_old=dropped)
