# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a DBA set on the databases every cluster has (postgres, template1): ALTER DATABASE ... SET, ALTER ROLE
... IN DATABASE ... SET, COMMENT ON DATABASE and SECURITY LABEL ON DATABASE.  ``pg_dump --create`` carries them for the databases it dumps,
``pg_dumpall --globals-only`` for no database at all, so these two would come out as initdb made them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire

CLUSTER_DATABASES = ("postgres", "template1")

# Settings whose value is a list of quoted names, written as it is stored (pg_dump's variable_is_guc_list_quote).
LIST_QUOTED = ("local_preload_libraries", "search_path", "session_preload_libraries", "shared_preload_libraries",
               "temp_tablespaces", "unix_socket_directories")

SETTINGS_SQL = """
SELECT d.datname, r.rolname, unnest(s.setconfig)
  FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
  LEFT JOIN pg_roles r ON r.oid = s.setrole
 WHERE d.datname = ANY($1::text[])
 ORDER BY 1, 2 NULLS FIRST
"""

COMMENTS_SQL = """
SELECT d.datname, c.description FROM pg_shdescription c JOIN pg_database d ON d.oid = c.objoid
 WHERE c.classoid = 'pg_database'::regclass AND d.datname = ANY($1::text[]) ORDER BY 1
"""

LABELS_SQL = """
SELECT d.datname, l.provider, l.label FROM pg_shseclabel l JOIN pg_database d ON d.oid = l.objoid
 WHERE l.classoid = 'pg_database'::regclass AND d.datname = ANY($1::text[]) ORDER BY 1, 2
"""


def set_statement(dbname, role, config):
    """ALTER DATABASE/ROLE ... SET for one ``name=value`` element of pg_db_role_setting.setconfig."""
    name, _sep, value = config.partition("=")
    target = ("DATABASE %s" % pgwire.quote_ident(dbname) if role is None
              else "ROLE %s IN DATABASE %s" % (pgwire.quote_ident(role), pgwire.quote_ident(dbname)))
    written = value if name.lower() in LIST_QUOTED else pgwire.quote_literal(value)
    return "ALTER %s SET %s TO %s;" % (target, pgwire.quote_ident(name), written)


def statements(session, databases=CLUSTER_DATABASES):
    """The statements that give ``databases`` on another server the settings and comments they have here."""
    result = [set_statement(db, role, config) for db, role, config
              in session.query(SETTINGS_SQL, [list(databases)]).rows]
    result += ["COMMENT ON DATABASE %s IS %s;" % (pgwire.quote_ident(db), pgwire.quote_literal(text))
               for db, text in session.query(COMMENTS_SQL, [list(databases)]).rows]
    result += ["SECURITY LABEL FOR %s ON DATABASE %s IS %s;" % (pgwire.quote_ident(provider), pgwire.quote_ident(db),
                                                                pgwire.quote_literal(label))
               for db, provider, label in session.query(LABELS_SQL, [list(databases)]).rows]
    return result
