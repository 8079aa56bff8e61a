# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Record of Upgrades: one numbered set of tables per restore, kept in the database itself.

Set NNN is four tables in schema ``fleetdb_upgrade_record``:
  ttrep_schema_version_NNN_upgrade        one row: number, versions, when, dump file and sha256, host
  ttrep_schema_version_NNN_publications   the publications recorded in the dump
  ttrep_schema_version_NNN_subscriptions  the subscriptions recorded in the dump
  ttrep_schema_version_NNN_tables         every table: replica identity, primary key, publications

How earlier sets reach the next server: the record is ordinary tables with primary keys,
so the next upgrade's schema dump creates them on the new server (empty) and logical
replication copies their rows like any user table (the replication module publishes them).
The number of a new set is one more than the highest set whose tables exist on the
target, so sets carried over by the schema dump count even before their rows arrive.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

SCHEMA = "fleetdb_upgrade_record"
PREFIX = "ttrep_schema_version_"
SET_TABLE_RE = re.compile(r"^ttrep_schema_version_(\d{3})_upgrade$")


def table_names(number):
    """Qualified names of the four tables of set ``number``."""
    base = "%s.%s%03d" % (SCHEMA, PREFIX, number)
    return dict(upgrade=base + "_upgrade", publications=base + "_publications",
                subscriptions=base + "_subscriptions", tables=base + "_tables")


def next_number(existing):
    return max(existing or [0]) + 1


def create_sql(number):
    names = table_names(number)
    return ";\n".join([
        "CREATE SCHEMA IF NOT EXISTS %s" % SCHEMA,
        "CREATE TABLE %s (number int PRIMARY KEY, source_version text NOT NULL, target_version text NOT NULL, "
        "restored_at timestamptz NOT NULL DEFAULT now(), dump_file text NOT NULL, dump_sha256 text NOT NULL, "
        "host text)" % names["upgrade"],
        "CREATE TABLE %s (pubname text PRIMARY KEY, all_tables boolean NOT NULL, owner text)"
        % names["publications"],
        "CREATE TABLE %s (subname text PRIMARY KEY, publications text[], owner text)" % names["subscriptions"],
        "CREATE TABLE %s (schema_name text, table_name text, replica_identity text NOT NULL, "
        "has_primary_key boolean NOT NULL, publications text[] NOT NULL DEFAULT '{}', "
        "PRIMARY KEY (schema_name, table_name))" % names["tables"],
    ]) + ";"


EXISTING_SETS_SQL = """
SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename ~ '^ttrep_schema_version_[0-9]{3}_upgrade$'
"""

TABLES_SQL = """
SELECT n.nspname, c.relname,
       CASE c.relreplident WHEN 'd' THEN 'default' WHEN 'i' THEN 'index' WHEN 'f' THEN 'full' ELSE 'nothing' END,
       EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')::text
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%'
 ORDER BY 1, 2
"""


def existing_sets(session):
    numbers = []
    for (name,) in session.query(EXISTING_SETS_SQL, [SCHEMA]).rows:
        numbers.append(int(SET_TABLE_RE.match(name).group(1)))
    return sorted(numbers)


def recorded_in(session, sha256):
    """Number of the set that records the dump ``sha256``, or None."""
    for number in existing_sets(session):
        found = session.scalar("SELECT number FROM %s WHERE dump_sha256 = $1" % table_names(number)["upgrade"],
                               [sha256])
        if found is not None:
            return int(found)
    return None


def list_sets(session):
    """Every set of the database: number, versions, restored_at, dump file (rows may still be on their way)."""
    sets = []
    for number in existing_sets(session):
        rows = session.rows("SELECT number, source_version, target_version, restored_at::text AS restored_at, "
                            "dump_file, dump_sha256 FROM %s" % table_names(number)["upgrade"])
        entry = dict(number=number, source_version=None, target_version=None, restored_at=None, dump_file=None)
        if rows:
            entry.update(rows[0])
            entry["number"] = int(entry["number"])
        sets.append(entry)
    return sets


def table_memberships(publications, publication_tables):
    """{(schema, table): [pubname...]} from the dump's publications and their PUBLICATION TABLE entries."""
    members = {}
    for schema, table, pub in publication_tables:
        members.setdefault((schema, table), []).append(pub)
    return members


def write_set(session, check_mode, source_version, target_version, dump_file, dump_sha256, host,
              publications, subscriptions, publication_tables):
    """Add a set unless one already records ``dump_sha256``.  Returns (number, created).

    publications: [dict(name, all_tables, owner)], subscriptions: [dict(name, publications, owner)],
    publication_tables: [(schema, table, pubname)].
    """
    already = recorded_in(session, dump_sha256)
    if already is not None:
        return already, False
    number = next_number(existing_sets(session))
    if check_mode:
        return number, True
    names = table_names(number)
    members = table_memberships(publications, publication_tables)
    all_pubs = [p["name"] for p in publications if p["all_tables"]]
    session.execute("BEGIN")
    try:
        session.execute(create_sql(number))
        session.query("INSERT INTO %s (number, source_version, target_version, dump_file, dump_sha256, host) "
                      "VALUES ($1, $2, $3, $4, $5, $6)" % names["upgrade"],
                      [number, source_version, target_version, dump_file, dump_sha256, host])
        for pub in publications:
            session.query("INSERT INTO %s VALUES ($1, $2, $3)" % names["publications"],
                          [pub["name"], pub["all_tables"], pub.get("owner")])
        for sub in subscriptions:
            session.query("INSERT INTO %s VALUES ($1, $2::text[], $3)" % names["subscriptions"],
                          [sub["name"], sub.get("publications") or [], sub.get("owner")])
        for schema, table, identity, has_pk in session.query(TABLES_SQL).rows:
            if schema == SCHEMA:
                continue
            pubs = sorted(set(members.get((schema, table), []) + all_pubs))
            session.query("INSERT INTO %s VALUES ($1, $2, $3, $4, $5::text[])" % names["tables"],
                          [schema, table, identity, has_pk == "true", pubs])
        session.execute("COMMIT")
    except Exception:
        session.execute("ROLLBACK")
        raise
    return number, True
