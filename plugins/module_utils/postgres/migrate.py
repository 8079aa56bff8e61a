# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Save a database into a data file and restore it into another (newer) server: pg_dump / pg_restore.

Restores are idempotent: the TOC list given to pg_restore leaves out every object that
already exists in the target (and the data of tables that already hold rows), so that
re-running a section, or post-data after ``keys``, restores only what is missing.
``keys`` is our section: the PRIMARY KEY / UNIQUE / EXCLUDE constraints (TOC type
CONSTRAINT; foreign keys are FK CONSTRAINT) and the indexes used as replica identity,
which logical replication needs before the subscription starts.

What is read from the archive's table of contents is in dump_toc.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
import shutil
import socket
import tempfile

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import (
    database_settings as pg_database_settings, extensions as pg_extensions, pgwire, record as pg_record)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, parse_version, read_text, run_as, user_ids)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Migrator
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.dump_toc import (
    ALREADY_EXISTS, PRESENT_SQL, SECTIONS, database_properties, globals_statements, info_dbname, parse_header,
    parse_toc, quote_name, replica_identity_indexes, select_entries, split_objects)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect, execute_unlogged


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class PostgresMigrator(Migrator):
    """pg_dump / pg_restore against the instance ``spec``; tools from ``tool_bin_dir`` (default its bin_dir)."""

    def __init__(self, module, spec, tool_bin_dir=None):
        self.module = module
        self.spec = spec
        self.tool_bin_dir = tool_bin_dir or spec.bin_dir

    # -- helpers -----------------------------------------------------------------
    def _tool(self, name):
        return os.path.join(self.tool_bin_dir, name)

    def _run(self, argv, what, pgoptions=None):
        env = {"LC_ALL": "C", "PGAPPNAME": "fleetdb.online_upgrade migrate"}
        if pgoptions:
            env["PGOPTIONS"] = pgoptions
        if self.spec.login_password:
            env["PGPASSWORD"] = self.spec.login_password
        rc, out, err = run_as(self.module, self.spec.owner, argv, cwd="/", environ_update=env)
        if rc != 0:
            raise OperationError("%s failed (rc=%d): %s" % (what, rc, (err or out).strip()[-2000:]),
                                 "read the error above; nothing else was changed by this step")
        return out

    def _conn_args(self, dbname):
        return ["-h", self.spec.socket_dir, "-p", str(self.spec.port), "-U", self.spec.login_user, "-d", dbname]

    def tool_major(self):
        rc, out, err = self.module.run_command([self._tool("pg_dump"), "--version"], environ_update={"LC_ALL": "C"})
        version = parse_version(out) if rc == 0 else None
        if not version:
            raise OperationError("%s does not run: %s" % (self._tool("pg_dump"), (err or out).strip()),
                                 "pass tool_bin_dir/bin_dir of an installed release")
        return version[0]

    def toc(self, path, section=None):
        if not os.path.isfile(path):
            raise OperationError("data file %s does not exist" % path, "create it first with mode=create")
        argv = [self._tool("pg_restore"), "-l", path]
        if section:
            argv.append("--section=" + section)
        return self._run(argv, "pg_restore -l %s" % path)

    # -- create (ttMigrate -c) ------------------------------------------------------------
    def create(self, path, objects=None, schema_only=False, dbname=None, with_globals=True,
               role_passwords=False):
        dbname = dbname or self.spec.dbname
        session = connect(self.spec, dbname=dbname)
        try:
            server_major = session.server_version_num() // 10000
        finally:
            session.close()
        tool_major = self.tool_major()
        if tool_major < server_major:
            raise OperationError("pg_dump %d in %s is older than the server (%d) and cannot read it"
                                 % (tool_major, self.tool_bin_dir, server_major),
                                 "set tool_bin_dir to the bin directory of the newer release (pg_dump %d or later)"
                                 % server_major)
        result = dict(changed=True, path=path, dbname=dbname, server_major=server_major, tool_major=tool_major,
                      schema_only=schema_only, globals_path=path + ".globals.sql" if with_globals else None)
        if self.module.check_mode:
            return result
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise OperationError("directory %s does not exist" % directory,
                                 "create it, writable by %s (ansible.builtin.file state=directory)" % self.spec.owner)
        part = path + ".part"
        argv = [self._tool("pg_dump"), "-Fc", "-f", part] + self._conn_args(dbname) + split_objects(objects)
        if schema_only:
            # Every section but the table data: the definitions, and the REFRESH of each populated materialized
            # view (post-data), which pg_restore runs in dependency order once the tables hold their rows.
            # Large objects are data too (preflight refuses them for a replication upgrade).
            argv.extend(["--section=pre-data", "--section=post-data", "--no-blobs"])
        try:
            self._run(argv, "pg_dump of database %s" % dbname)
            os.rename(part, path)
        finally:
            if os.path.exists(part):
                os.unlink(part)
        if with_globals:
            argv = [self._tool("pg_dumpall"), "--globals-only", "-f", path + ".globals.sql",
                    "-h", self.spec.socket_dir, "-p", str(self.spec.port), "-U", self.spec.login_user]
            if not role_passwords:
                argv.append("--no-role-passwords")
            self._run(argv, "pg_dumpall --globals-only")
            os.chmod(path + ".globals.sql", 0o600)  # may hold password hashes
            self._append_cluster_database_settings(path + ".globals.sql")
        result.update(size_bytes=os.path.getsize(path), sha256=file_sha256(path))
        return result

    def _append_cluster_database_settings(self, globals_path):
        """The settings and comments of postgres and template1, which no dump carries, go with the globals."""
        session = connect(self.spec, dbname="postgres")
        try:
            statements = pg_database_settings.statements(session)
        finally:
            session.close()
        if statements:
            with open(globals_path, "a") as handle:
                handle.write("\n-- fleetdb: settings and comments of the cluster's own databases\n")
                handle.write("\n".join(statements) + "\n")

    # -- list / describe (ttMigrate -l / -d) ------------------------------------------------
    def list(self, path):
        return [e.as_dict() for e in parse_toc(self.toc(path))]

    def describe(self, path):
        text = self.toc(path)
        entries = parse_toc(text)
        counts = {}
        for entry in entries:
            counts[entry.kind] = counts.get(entry.kind, 0) + 1
        info = parse_header(text)
        info.update(path=path, size_bytes=os.path.getsize(path), sha256=file_sha256(path), counts=counts,
                    tables=["%s.%s" % (e.schema, e.tag) for e in entries if e.kind == "TABLE"],
                    data_included=any(e.kind == "TABLE DATA" for e in entries),
                    globals_file=path + ".globals.sql" if os.path.isfile(path + ".globals.sql") else None)
        return info

    # -- restore (ttMigrate -r) ---------------------------------------------------------
    def restore(self, path, sections=None, jobs=1, create_database=True, dbname=None, record=True,
                maintenance_work_mem_mb=None):
        sections = list(sections or ["pre-data", "data", "post-data"])
        unknown = [s for s in sections if s not in SECTIONS]
        if unknown:
            raise OperationError("unknown sections %s" % unknown, "use %s" % ", ".join(SECTIONS))
        info = parse_header(self.toc(path))
        dbname = dbname or self.spec.dbname
        result = dict(changed=False, path=path, dbname=dbname, sections=sections, source_version=info["source_version"],
                      sha256=file_sha256(path), size_bytes=os.path.getsize(path))
        if self.module.check_mode and not self._database_exists(dbname):
            result.update(changed=True, database_created=True, msg="database %s would be created and restored" % dbname)
            return result
        if "pre-data" in sections:
            self._check_extensions(path)
            result["roles_created"] = self._restore_globals(path + ".globals.sql")
            result["changed"] |= bool(result["roles_created"])
        if not self._database_exists(dbname):
            if not create_database:
                raise OperationError("database %s does not exist on the target" % dbname,
                                     "create it, or set create_database: true")
            self._create_database(path, dbname)
            result.update(changed=True, database_created=True)
        session = connect(self.spec, dbname=dbname)
        try:
            entries = self._entries_to_restore(path, sections, session)
            result["entries"] = len(entries)
            if entries:
                result["changed"] = True
                if not self.module.check_mode:
                    extensions = [e for e in entries if e.kind == "EXTENSION"]
                    if extensions:
                        result["extensions_moved"] = pg_extensions.create_pinned(session, self._sql_of(path, extensions))
                    self._pg_restore(path, entries, dbname, jobs, maintenance_work_mem_mb)
            if "pre-data" in sections:
                result["changed"] |= self._align_schema_owners(path, session)
            if record and "pre-data" in sections:
                number, created = self._record(session, path, info, result["sha256"])
                result.update(record_set=number, record_created=created)
                result["changed"] |= created
        finally:
            session.close()
        return result

    def _check_extensions(self, path):
        """Every extension of the dump must be installable on this server: checked before anything is restored."""
        wanted = sorted(set(e.tag for e in parse_toc(self.toc(path, "pre-data")) if e.kind == "EXTENSION"))
        if not wanted:
            return
        session = connect(self.spec, dbname="postgres")
        try:
            available = set(r[0] for r in session.query("SELECT name FROM pg_available_extensions").rows)
            version = session.scalar("SHOW server_version")
        finally:
            session.close()
        missing = [name for name in wanted if name not in available]
        if missing:
            raise OperationError(
                "extensions of %s are not available for PostgreSQL %s here: %s (nothing was restored)"
                % (path, version, ", ".join(missing)),
                "install them for the new release (Debian: apt install postgresql-%s-<extension>; or the "
                "extension's own packages), then run again" % version.split(".")[0], missing_extensions=missing)

    def _database_exists(self, dbname):
        session = connect(self.spec, dbname="postgres")
        try:
            return session.scalar("SELECT 1 FROM pg_database WHERE datname = $1", [dbname]) is not None
        finally:
            session.close()

    def _create_database(self, path, dbname):
        """CREATE DATABASE as the dump recorded it (encoding, locale), owner when that role exists."""
        sql = self._run([self._tool("pg_restore"), "-C", "-s", "--section=pre-data", "-f", "-", path],
                        "pg_restore -C of %s" % path)
        create = re.search(r"^CREATE DATABASE .*?;$", sql, re.M)
        owner = re.search(r"^ALTER DATABASE .*? OWNER TO (.*);$", sql, re.M)
        if self.module.check_mode:
            return
        session = connect(self.spec, dbname="postgres")
        try:
            if create and info_dbname(create.group(0)) == dbname:
                session.execute(create.group(0))
            else:
                session.execute("CREATE DATABASE %s" % pgwire.quote_ident(dbname))
            if owner and session.scalar("SELECT 1 FROM pg_roles WHERE quote_ident(rolname) = $1",
                                        [owner.group(1)]) is not None:
                session.execute("ALTER DATABASE %s OWNER TO %s" % (pgwire.quote_ident(dbname), owner.group(1)))
            for statement in database_properties(sql):
                try:
                    session.execute(statement)
                except pgwire.PgError as exc:
                    self.module.warn("database property not restored: %s: %s" % (statement[:120], exc))
        finally:
            session.close()

    def _restore_globals(self, globals_path):
        """Roles (and tablespaces) from the globals file; those already there are left alone."""
        sql = read_text(globals_path)
        if not sql:
            return []
        created = []
        session = connect(self.spec, dbname="postgres")
        try:
            roles = set(r[0] for r in session.execute("SELECT rolname FROM pg_roles").rows)
            for statement in globals_statements(sql):
                match = re.match(r'^CREATE ROLE ("(?:[^"]|"")*"|\S+);', statement)
                if match:
                    name = match.group(1).strip('"').replace('""', '"')
                    if name in roles:
                        continue
                    created.append(name)
                elif not re.match(r"^(ALTER ROLE|ALTER DATABASE|GRANT|CREATE TABLESPACE|ALTER TABLESPACE|COMMENT)",
                                  statement):
                    continue  # SET lines and the like
                if self.module.check_mode:
                    continue
                try:
                    if re.search(r"\bPASSWORD\b", statement):
                        execute_unlogged(session, statement)  # a password hash: never in the server log
                    else:
                        session.execute(statement)
                except pgwire.PgError as exc:
                    if exc.sqlstate not in ALREADY_EXISTS:
                        self.module.warn("globals statement failed (ignored): %s: %s" % (statement[:80], exc))
        finally:
            session.close()
        return created

    def _align_schema_owners(self, path, session):
        """Schemas every new database already has (public) are not created by the restore, so their owner as the
        dump recorded it (``postgres`` where the old database predates PostgreSQL 15) is set here."""
        changed = False
        for entry in parse_toc(self.toc(path, "pre-data")):
            if entry.kind != "SCHEMA" or not entry.owner:
                continue
            row = session.query("SELECT pg_get_userbyid(nspowner), (SELECT 1 FROM pg_roles WHERE rolname = $2) "
                                "FROM pg_namespace WHERE nspname = $1", [entry.tag, entry.owner]).rows
            if row and row[0][0] != entry.owner and row[0][1] is not None:
                changed = True
                if not self.module.check_mode:
                    session.execute("ALTER SCHEMA %s OWNER TO %s" % (pgwire.quote_ident(entry.tag),
                                                                     pgwire.quote_ident(entry.owner)))
        return changed

    def _entries_to_restore(self, path, sections, session):
        by_section = dict((s, parse_toc(self.toc(path, s))) for s in ("pre-data", "data", "post-data"))
        present = set(tuple(r) for r in session.execute(PRESENT_SQL).rows)
        for entry in by_section["data"]:
            if entry.kind == "TABLE DATA" and ("rel", entry.schema, entry.tag) in present:
                if session.scalar("SELECT 1 FROM %s.%s LIMIT 1" % (pgwire.quote_ident(entry.schema),
                                                                   pgwire.quote_ident(entry.tag))) is not None:
                    present.add(entry.key())
        replident = set()
        indexes = [e for e in by_section["post-data"] if e.kind == "INDEX"]
        if "keys" in sections and indexes:
            replident = replica_identity_indexes(self._sql_of(path, indexes))
        return select_entries(by_section, sections, present, replident)

    def _with_list(self, entries, func):
        work = tempfile.mkdtemp(prefix="fleetdb-migrate-")
        try:
            list_file = os.path.join(work, "toc.list")
            with open(list_file, "w") as handle:
                handle.write("\n".join(e.line for e in entries) + "\n")
            if os.geteuid() == 0:
                uid, gid, _home = user_ids(self.spec.owner)
                for name in (work, list_file):
                    os.chown(name, uid, gid)
            return func(list_file)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _sql_of(self, path, entries):
        return self._with_list(entries, lambda list_file: self._run(
            [self._tool("pg_restore"), "-f", "-", "-L", list_file, path], "pg_restore -f - %s" % path))

    def _pg_restore(self, path, entries, dbname, jobs, maintenance_work_mem_mb=None):
        argv = [os.path.join(self.spec.bin_dir, "pg_restore"), "--exit-on-error"] + self._conn_args(dbname)
        if jobs and jobs > 1:
            argv.extend(["-j", str(jobs)])
        else:
            argv.append("--single-transaction")
        # Index builds of these sessions only: the server's own setting is left as it is.
        options = "-c maintenance_work_mem=%dMB" % maintenance_work_mem_mb if maintenance_work_mem_mb else None
        self._with_list(entries, lambda list_file: self._run(
            argv + ["-L", list_file, path], "pg_restore of %s into database %s" % (path, dbname), options))

    def _record(self, session, path, info, sha256):
        entries = parse_toc(self.toc(path))
        schemes = [e for e in entries if e.kind in ("PUBLICATION", "SUBSCRIPTION")]
        sql = self._sql_of(path, schemes) if schemes else ""
        publications, subscriptions = [], []
        for entry in schemes:
            if entry.kind == "PUBLICATION":
                all_tables = re.search(r"CREATE PUBLICATION %s FOR ALL TABLES" % re.escape(quote_name(entry.tag)),
                                       sql) is not None
                publications.append(dict(name=entry.tag, all_tables=all_tables, owner=entry.owner))
            else:
                match = re.search(r"CREATE SUBSCRIPTION %s CONNECTION '(?:[^']|'')*' PUBLICATION (.*?) WITH"
                                  % re.escape(quote_name(entry.tag)), sql)
                pubs = [p.strip().strip('"') for p in match.group(1).split(",")] if match else []
                subscriptions.append(dict(name=entry.tag, publications=pubs, owner=entry.owner))
        pub_tables = []
        for entry in entries:
            if entry.kind == "PUBLICATION TABLE":
                pub, _sep, table = entry.tag.partition(" ")
                pub_tables.append((entry.schema, table, pub))
        target_version = session.scalar("SHOW server_version").split(" ")[0]
        return pg_record.write_set(session, self.module.check_mode, info["source_version"], target_version,
                                   os.path.basename(path), sha256, socket.gethostname(),
                                   publications, subscriptions, pub_tables)
