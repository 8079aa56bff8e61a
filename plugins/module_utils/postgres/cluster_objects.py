# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the cluster holds beside the databases' contents: databases, tablespaces and login roles.  None of them
is replicated; the copy carries those that existed when it began.  One created on the old server during the copy
would be missing once the new server takes the production port (its clients locked out, its rows lost), so the
cutover compares both servers before the fence and names each, with the way to carry it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError

DATABASES_SQL = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"
TABLESPACES_SQL = "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1"
LOGIN_ROLES_SQL = "SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname <> $1 ORDER BY 1"


def _names(session, sql, params=None):
    return set(row[0] for row in session.query(sql, params or []).rows)


def missing_on_new(old, new, replication_user):
    """{kind: [names]} of the databases, tablespaces and login roles the old server has and the new one lacks."""
    found = {}
    for kind, sql, params in (("databases", DATABASES_SQL, None), ("tablespaces", TABLESPACES_SQL, None),
                              ("login roles", LOGIN_ROLES_SQL, [replication_user])):
        missing = sorted(_names(old, sql, params) - _names(new, sql, params))
        if missing:
            found[kind] = missing
    return found


def check(old, new, replication_user):
    """Raise, naming each, when the new server lacks a database, tablespace or login role of the old one."""
    missing = missing_on_new(old, new, replication_user)
    if missing:
        raise OperationError(
            "the old server has %s that the new one lacks (created after the copy began; none is replicated): %s"
            % (" and ".join(missing), "; ".join("%s: %s" % (kind, ", ".join(names)) for kind, names in missing.items())),
            "run playbooks/upgrade.yml again: its schema step carries the roles and tablespaces created since, and "
            "copies every database (with online_upgrade_databases set, add the new ones to it); or drop them on the "
            "old server. Nothing was changed", missing_on_new=missing)
