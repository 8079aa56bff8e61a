# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The replication role on the source: created with a SCRAM verifier, let in by pg_hba.conf, its password in
the target's passfile; and all of it removed again."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError, read_text, user_ids, write_file
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication_access import (
    scram_verifier, verifier_matches, with_hba_lines, with_passfile_line, without_hba_lines, without_passfile_lines)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.hba import HbaFile, hba_path
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect, execute_unlogged


OWNED_SQL = """
SELECT pg_describe_object(classid, objid, objsubid) FROM pg_shdepend
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND refclassid = 'pg_authid'::regclass AND refobjid = $1::oid AND deptype = 'o' ORDER BY 1
"""


def _owned_by(session, oid):
    """What the role ``oid`` owns in the session's database."""
    return [r[0] for r in session.query(OWNED_SQL, [oid]).rows]


def _revoke_all(session, oid, role):
    """DROP OWNED BY ``role`` to revoke its privileges, in the transaction that checks it owns nothing it would drop
    (on a refusal the caller closes the session, which rolls the transaction back)."""
    session.execute("BEGIN")
    owned = _owned_by(session, oid)
    if owned:
        raise OperationError("%s came to own %s: it is not dropped" % (role, ", ".join(owned)),
                             "give them another owner or drop them, then run again")
    session.execute("DROP OWNED BY %s" % role)
    session.execute("COMMIT")


def forget_password(module, passfile, user, owner):
    """(what, do): taking ``user``'s lines out of ``passfile``, the file itself when no other is left; None when it
    holds none of them."""
    before = read_text(passfile)
    after = without_passfile_lines(before, user)
    if before is None or after == before:
        return None
    if after:
        return ("remove the replication role's line from %s" % passfile,
                lambda: write_file(module, passfile, after, owner=owner, mode=0o600))
    return "remove %s" % passfile, lambda: os.unlink(passfile)


class ReplicationRole:
    """The replication role's part of PostgresReplication."""

    def _ensure_role(self, tables):
        if not self.password:
            raise OperationError("replication_password is required to set up replication",
                                 "pass replication_password (it is never logged or returned)")
        src = self.src()
        row = src.rows("SELECT rolpassword AS password, rolreplication AS replication, rolcanlogin AS login, "
                       "rolbypassrls AS bypassrls FROM pg_authid WHERE rolname = $1", [self.user])
        role = pgwire.quote_ident(self.user)
        # BYPASSRLS: without it the copy of a table with row-level security would quietly take only the rows
        # its policies show the replication role.
        if not row:
            self._act("CREATE ROLE %s LOGIN REPLICATION BYPASSRLS PASSWORD <scram verifier>" % role,
                      lambda: execute_unlogged(src, "CREATE ROLE %s LOGIN REPLICATION BYPASSRLS PASSWORD %s" % (
                          role, pgwire.quote_literal(scram_verifier(self.password)))))
        else:
            if "f" in (row[0]["replication"], row[0]["login"], row[0]["bypassrls"]):
                self._act("ALTER ROLE %s LOGIN REPLICATION BYPASSRLS" % role,
                          lambda: src.execute("ALTER ROLE %s LOGIN REPLICATION BYPASSRLS" % role))
            if not verifier_matches(row[0]["password"], self.password):
                self._act("ALTER ROLE %s PASSWORD <scram verifier>" % role, lambda: execute_unlogged(
                    src, "ALTER ROLE %s PASSWORD %s" % (role, pgwire.quote_literal(scram_verifier(self.password)))))
        self._grant(tables)

    def _ensure_hba(self, physical=False):
        hba = self._hba()
        before = hba.read() or ""
        after = with_hba_lines(before, self.user, self.dbname, physical=physical)
        if before == after:
            return
        changed, diff = hba.write_checked(after, self.src(), "fix the file by hand")
        self.result.setdefault("diff", []).append(diff)
        self._act("add the replication role's lines to %s and reload" % hba.path, hba.reload)
        if not self.module.check_mode:
            time.sleep(0.2)  # the postmaster reloads asynchronously

    def _hba(self):
        return HbaFile(self.module, hba_path(self.module, self.source, self.src()), self.source.owner,
                       self.source.data_dir)

    def _ensure_passfile(self):
        before = read_text(self.passfile)
        after = with_passfile_line(before, self.source.port, self.user, self.password)
        if before != after:
            write_file(self.module, self.passfile, after, owner=self.target.owner, mode=0o600)
            self._act("write the replication password to %s (mode 0600, owner %s)" % (self.passfile, self.target.owner))
        elif os.path.exists(self.passfile) and os.stat(self.passfile).st_mode & 0o077:
            self._act("chmod 0600 %s" % self.passfile, lambda: os.chmod(self.passfile, 0o600))
        if os.path.exists(self.passfile) and os.geteuid() == 0:
            uid = user_ids(self.target.owner)[0]
            if os.stat(self.passfile).st_uid != uid:
                self._act("chown %s %s" % (self.target.owner, self.passfile),
                          lambda: os.chown(self.passfile, uid, -1))

    def role_absent(self):
        """The replication role dropped from the source, its pg_hba.conf lines there removed, the passfile too."""
        self._drop_role()
        self._remove_hba_lines()
        self._remove_passfile()

    def _drop_role(self):
        src = self.src()
        role = src.rows("SELECT oid::text AS oid, rolsuper::text AS superuser FROM pg_roles WHERE rolname = $1",
                        [self.user])
        if not role:
            return
        if role[0]["superuser"] == "true":
            raise OperationError("%s is a superuser, not the role replication creates: it is not dropped" % self.user,
                                 "check replication_user")
        oid = role[0]["oid"]
        # Where it holds privileges or owns objects, and the session's database: DROP OWNED there revokes its
        # privileges on shared objects (CONNECT on databases) too.
        databases = src.query("SELECT datname, datallowconn::text FROM pg_database WHERE datname = current_database() "
                              "OR oid IN (SELECT dbid FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass "
                              "AND refobjid = $1::oid) ORDER BY 1", [oid]).rows
        blockers = ["it owns database %s" % r[0] for r in src.query(
            "SELECT datname FROM pg_database WHERE datdba = $1::oid", [oid]).rows]
        blockers += ["it owns tablespace %s" % r[0] for r in src.query(
            "SELECT spcname FROM pg_tablespace WHERE spcowner = $1::oid", [oid]).rows]
        for dbname, connectable in databases:
            if connectable != "true":
                blockers.append("it has privileges in database %s, which accepts no connections" % dbname)
                continue
            blockers += ["it owns %s in database %s" % (what, dbname)
                         for what in self._in_database(dbname, _owned_by, oid)]
        if blockers:
            # Replication makes it own nothing: what it owns is someone's, and DROP OWNED would drop it.
            raise OperationError(
                "the replication role %s is not dropped, nothing was changed: %s" % (self.user, "; ".join(blockers)),
                "give what it owns another owner (REASSIGN OWNED BY %s TO <role> in each database named, ALTER "
                "DATABASE or ALTER TABLESPACE ... OWNER TO <role>) or drop it, then run again"
                % pgwire.quote_ident(self.user), blockers=blockers)
        name = pgwire.quote_ident(self.user)
        for dbname, _connectable in databases:
            self._act("DROP OWNED BY %s in database %s (its privileges: it owns nothing)" % (name, dbname),
                      lambda dbname=dbname: self._in_database(dbname, _revoke_all, oid, name))

        def drop():
            src.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usesysid = $1::oid", [oid])
            src.execute("DROP ROLE %s" % name)
        self._act("DROP ROLE %s" % name, drop)

    def _in_database(self, dbname, func, *args):
        session = connect(self.source, dbname=dbname)
        try:
            return func(session, *args)
        finally:
            session.close()

    def _remove_hba_lines(self):
        hba = self._hba()
        before = hba.read()
        after = without_hba_lines(before, self.user)
        if before is None or after == before:
            return
        _changed, diff = hba.write(after)
        self.result.setdefault("diff", []).append(diff)
        self._act("remove the replication role's lines from %s and reload" % hba.path, hba.reload)

    def _remove_passfile(self):
        forget = forget_password(self.module, self.passfile, self.user, self.target.owner)
        if forget:
            self._act(*forget)
