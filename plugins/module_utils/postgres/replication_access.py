# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the replication role gets in: its lines in the old server's pg_hba.conf, its password as a SCRAM
verifier (the plain password never reaches the server), and the passfile beside the new server's data
directory that the subscription's conninfo names (never the password itself).  Pure text functions; the
replication and physical copy modules write the files (pg_hba.conf through pg_hba)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import hmac
import os
import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.managed_block import ManagedBlock
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.fence import hba_quote

HBA_BEGIN = "# BEGIN fleetdb.online_upgrade replication"
HBA_END = "# END fleetdb.online_upgrade replication"
HBA_BLOCK = ManagedBlock(HBA_BEGIN, HBA_END)


def conninfo(socket_dir, port, dbname, user, passfile, application_name):
    def value(v):
        return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return " ".join("%s=%s" % (k, value(v)) for k, v in (
        ("host", socket_dir), ("port", port), ("dbname", dbname), ("user", user), ("passfile", passfile),
        ("application_name", application_name)))


def passfile_line(port, user, password):
    def esc(v):
        return str(v).replace("\\", "\\\\").replace(":", "\\:")
    return "*:%s:*:%s:%s" % (port, esc(user), esc(password))


def with_passfile_line(text, port, user, password):
    """The passfile text with the line for (port, user) set to ``password``."""
    prefix = "*:%s:*:%s:" % (port, user.replace("\\", "\\\\").replace(":", "\\:"))
    lines = [line for line in (text or "").splitlines() if line and not line.startswith(prefix)]
    return "\n".join(lines + [passfile_line(port, user, password)]) + "\n"


def default_passfile(target):
    """Beside the target's data directory, owned by its owner: the subscription's conninfo names it."""
    return os.path.join(os.path.dirname(os.path.abspath(target.data_dir)), "fleetdb_replication.pgpass")


def without_passfile_lines(text, user):
    """The passfile text without the lines ``passfile_line`` wrote for ``user`` (any port); "" when none is left."""
    ours = re.compile(r"^\*:\d+:\*:%s:" % re.escape(user.replace("\\", "\\\\").replace(":", "\\:")))
    lines = [line for line in (text or "").splitlines() if line and not ours.match(line)]
    return "\n".join(lines) + "\n" if lines else ""


def hba_lines(user, dbname):
    dbname, user = hba_quote(dbname), hba_quote(user)
    return ["local   %s   %s   scram-sha-256" % (dbname, user),
            "host    %s   %s   127.0.0.1/32   scram-sha-256" % (dbname, user),
            "host    %s   %s   ::1/128   scram-sha-256" % (dbname, user)]


def physical_hba_line(user):
    """The line a physical copy needs: ``user`` streams the cluster's WAL (pg_basebackup, the copy's standby)."""
    return "local   replication   %s   scram-sha-256" % hba_quote(user)


def standby_hba_line(user, address):
    """The line a standby of the new server streams through: ``user`` from the standby host's ``address``."""
    return "host    replication   %s   %s/%d   scram-sha-256" % (hba_quote(user), address, 128 if ":" in address else 32)


def with_standby_lines(text, user, addresses):
    """pg_hba.conf with our block holding a standby's line for each of ``addresses`` (the other lines kept)."""
    existing = HBA_BLOCK.lines(text)
    wanted = [standby_hba_line(user, address) for address in addresses]
    return HBA_BLOCK.put(text, existing + [line for line in wanted if line not in existing])


def with_hba_lines(text, user, dbname, physical=False):
    """pg_hba.conf with our block (in front of every other rule) holding the lines for ``user`` and ``dbname``
    (and, for a physical copy, the physical replication line)."""
    existing = HBA_BLOCK.lines(text)
    wanted = hba_lines(user, dbname) + ([physical_hba_line(user)] if physical else [])
    return HBA_BLOCK.put(text, existing + [line for line in wanted if line not in existing])


def without_hba_lines(text, user):
    """pg_hba.conf without the lines ``with_hba_lines`` added for ``user``; the block goes once it is empty."""
    if not HBA_BLOCK.present(text):
        return text

    def ours(line):
        database = re.match(r'^\S+\s+"([^"]*)"\s', line)  # hba_lines quotes every name
        return (database is not None and line in hba_lines(user, database.group(1))) or line == physical_hba_line(user)
    kept = [line for line in HBA_BLOCK.lines(text) if not ours(line)]
    return HBA_BLOCK.put(text, kept) if kept else HBA_BLOCK.without(text)


def scram_verifier(password, salt=None, iterations=4096):
    """SCRAM-SHA-256 verifier as PostgreSQL stores it, so the plain password never reaches the server."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    encoded = [base64.b64encode(data).decode() for data in (salt, stored_key, server_key)]
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, encoded[0], encoded[1], encoded[2])


def verifier_matches(verifier, password):
    try:
        head, _keys = verifier.split("$", 2)[1:]
        iterations, salt = head.split(":")
        return scram_verifier(password, base64.b64decode(salt), int(iterations)) == verifier
    except (AttributeError, ValueError):
        return False
