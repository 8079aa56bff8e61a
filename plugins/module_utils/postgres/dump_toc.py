# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The table of contents of a pg_dump archive (pg_restore --list) and the SQL it holds: the entries read, the
ones a restore still needs chosen, the statements of the globals and the database's properties."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire


SECTIONS = ("pre-data", "keys", "data", "post-data")
# Longest first so that "TABLE DATA" is not read as "TABLE".
TOC_TYPES = sorted([
    "ACCESS METHOD", "ACL", "AGGREGATE", "BLOB", "BLOB METADATA", "BLOBS", "CAST", "CHECK CONSTRAINT", "COLLATION",
    "COMMENT", "CONSTRAINT", "CONVERSION", "DATABASE", "DATABASE PROPERTIES", "DEFAULT", "DEFAULT ACL", "DOMAIN",
    "ENCODING", "EVENT TRIGGER", "EXTENSION", "FK CONSTRAINT", "FOREIGN DATA WRAPPER", "FOREIGN SERVER",
    "FOREIGN TABLE", "FUNCTION", "INDEX", "INDEX ATTACH", "LARGE OBJECT", "MATERIALIZED VIEW",
    "MATERIALIZED VIEW DATA", "OPERATOR", "OPERATOR CLASS", "OPERATOR FAMILY", "POLICY", "PROCEDURE",
    "PROCEDURAL LANGUAGE", "PUBLICATION", "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA", "ROW SECURITY",
    "RULE", "SCHEMA", "SECURITY LABEL", "SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET", "SERVER", "SHELL TYPE",
    "STATISTICS", "STATISTICS DATA", "SUBSCRIPTION", "SUBSCRIPTION TABLE", "TABLE", "TABLE ATTACH", "TABLE DATA",
    "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE",
    "TRANSFORM", "TRIGGER", "TYPE", "USER MAPPING", "VIEW"], key=len, reverse=True)
# TOC type -> family of the catalog lookup in PRESENT_SQL
FAMILIES = {"TABLE": "rel", "SEQUENCE": "rel", "VIEW": "rel", "MATERIALIZED VIEW": "rel", "INDEX": "rel",
            "FOREIGN TABLE": "rel", "CONSTRAINT": "con", "FK CONSTRAINT": "con", "CHECK CONSTRAINT": "con",
            "TRIGGER": "trg", "RULE": "rule", "POLICY": "pol", "FUNCTION": "fn", "PROCEDURE": "fn",
            "AGGREGATE": "fn", "TYPE": "type", "SHELL TYPE": "type", "DOMAIN": "type", "SCHEMA": "schema",
            "PUBLICATION": "pub", "PUBLICATION TABLE": "pubrel", "SUBSCRIPTION": "sub", "TABLE ATTACH": "attach"}
ALREADY_EXISTS = ("42710", "42P07", "42P06", "42723")

PRESENT_SQL = """
SELECT 'rel'::text, n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
UNION ALL SELECT 'attach', n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relispartition
UNION ALL SELECT 'con', n.nspname, c.relname || ' ' || k.conname FROM pg_constraint k
  JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
UNION ALL SELECT 'trg', n.nspname, c.relname || ' ' || t.tgname FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal
UNION ALL SELECT 'rule', n.nspname, c.relname || ' ' || r.rulename FROM pg_rewrite r
  JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
UNION ALL SELECT 'pol', n.nspname, c.relname || ' ' || p.polname FROM pg_policy p
  JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
UNION ALL SELECT 'fn', n.nspname, p.proname || '(' || oidvectortypes(p.proargtypes) || ')' FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
UNION ALL SELECT 'type', n.nspname, t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
UNION ALL SELECT 'schema', '-', nspname FROM pg_namespace
UNION ALL SELECT 'pub', '-', pubname FROM pg_publication
UNION ALL SELECT 'pubrel', n.nspname, p.pubname || ' ' || c.relname FROM pg_publication_rel pr
  JOIN pg_publication p ON p.oid = pr.prpubid JOIN pg_class c ON c.oid = pr.prrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
UNION ALL SELECT 'sub', '-', subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database
 WHERE datname = current_database())
"""


class TocEntry:
    def __init__(self, line, dump_id, kind, schema, tag, owner):
        self.line = line
        self.dump_id = dump_id
        self.kind = kind
        self.schema = schema
        self.tag = tag
        self.owner = owner

    def key(self):
        family = FAMILIES.get(self.kind)
        if self.kind == "TABLE DATA":
            return ("data", self.schema, self.tag)
        return (family, self.schema, self.tag) if family else None

    def as_dict(self):
        return dict(id=self.dump_id, type=self.kind, schema=self.schema, name=self.tag, owner=self.owner)


def parse_toc_line(line):
    """One line of ``pg_restore -l`` -> TocEntry, None for comments."""
    match = re.match(r"^(\d+); \d+ \d+ (.*)$", line.strip())
    if not match:
        return None
    rest = match.group(2)
    kind = next((t for t in TOC_TYPES if rest == t or rest.startswith(t + " ")), rest.split(" ")[0])
    rest = rest[len(kind):].strip()
    schema, _sep, rest = rest.partition(" ")
    tag, owner = rest, None
    if " " in rest:
        tag, owner = rest.rsplit(" ", 1)
    return TocEntry(line.strip(), int(match.group(1)), kind, schema, tag, owner)


def parse_toc(text):
    return [e for e in (parse_toc_line(line) for line in text.splitlines()) if e is not None]


def parse_header(text):
    """The ';' header of ``pg_restore -l``: dbname, versions, compression..."""
    header = {}
    for line in text.splitlines():
        match = re.match(r"^;\s+([A-Za-z_ ]+):\s*(.*)$", line)
        created = re.match(r"^; Archive created at (.*)$", line)
        if created:
            header["archive_created_at"] = created.group(1).strip()
        elif match:
            header[match.group(1).strip().lower().replace(" ", "_")] = match.group(2).strip()
    return dict(dbname=header.get("dbname"), source_version=header.get("dumped_from_database_version"),
                tool_version=header.get("dumped_by_pg_dump_version"), compression=header.get("compression"),
                created=header.get("archive_created_at"), format=header.get("format"))


def replica_identity_indexes(sql):
    """(schema, index) of INDEX entries whose SQL (``pg_restore -f -``) sets REPLICA IDENTITY USING INDEX."""
    found = set()
    for block in re.split(r"\n(?=-- Name: )", sql):
        head = re.match(r"-- Name: (.*?); Type: INDEX; Schema: (.*?);", block)
        if head and "REPLICA IDENTITY USING INDEX" in block:
            found.add((head.group(2), head.group(1)))
    return found


def select_entries(by_section, sections, present, replident_indexes=()):
    """The TOC entries to restore for ``sections``, minus those whose key is in ``present``.

    by_section: {"pre-data"|"data"|"post-data": [TocEntry]} as ``pg_restore -l --section`` lists them.
    """
    keys = [e for e in by_section.get("post-data", [])
            if e.kind == "CONSTRAINT" or (e.kind == "INDEX" and (e.schema, e.tag) in replident_indexes)]
    key_ids = set(e.dump_id for e in keys)
    wanted = []
    for section in ("pre-data", "keys", "data", "post-data"):
        if section not in sections:
            continue
        if section == "keys":
            entries = keys
        elif section == "post-data" and "keys" in sections:
            entries = [e for e in by_section.get(section, []) if e.dump_id not in key_ids]
        else:
            entries = by_section.get(section, [])
        wanted.extend(e for e in entries if e.key() is None or e.key() not in present)
    # Comments, grants, defaults... belong to objects: once every object is there, they are too.
    if all(e.key() is None for e in wanted):
        return []
    return wanted


def database_properties(sql):
    """What ``pg_restore -C`` says of the database besides CREATE and OWNER: its settings (ALTER DATABASE ... SET,
    ALTER ROLE ... IN DATABASE ... SET), comment, security labels and privileges."""
    return [m.group(0) for m in re.finditer(
        r"^(ALTER DATABASE \S+ SET |ALTER ROLE \S+ IN DATABASE \S+ SET |COMMENT ON DATABASE |"
        r"SECURITY LABEL FOR \S+ ON DATABASE |(GRANT|REVOKE) .* ON DATABASE ).*;$", sql, re.M)]


def split_objects(objects):
    """pg_dump arguments: 'schema.table' -> -t, 'schema' (no dot) -> -n."""
    argv = []
    for name in objects or []:
        argv.extend(["-t" if "." in name else "-n", name])
    return argv


def globals_statements(sql):
    """Statements of a pg_dumpall --globals-only file, one per element (comments and psql lines dropped)."""
    statements, current = [], []
    for line in sql.splitlines():
        if not current and (not line.strip() or line.startswith("--") or line.startswith("\\")):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current))
            current = []
    return statements


def quote_name(name):
    """How pg_dump writes an identifier: bare when it is a plain lower-case name."""
    return name if re.match(r"^[a-z_][a-z0-9_$]*$", name) else pgwire.quote_ident(name)


def info_dbname(create_statement):
    match = re.match(r'^CREATE DATABASE ("(?:[^"]|"")*"|\S+)', create_statement)
    return match.group(1).strip('"').replace('""', '"') if match else None
