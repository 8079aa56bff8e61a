# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cutover's fence: pg_hba.conf rules that let no client in, and what no fence can stop.

While the fence is up, pg_hba.conf rejects every login, superusers included, on
the socket and on TCP; the only exception is the replication role on the Unix
socket (the subscription's own connection).  The cutover's sessions were opened
before the fence and stay.  What pg_hba cannot stop is refused instead
(``fence_blockers``): prepared transactions, which any session may commit later,
background workers of extensions, which never log in, but pg_cron's (its jobs are paused before the
fence), and the old server's own subscriptions, whose apply workers write what their publishers send.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.managed_block import ManagedBlock
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import cron as pg_cron

FENCE_BEGIN = "# BEGIN fleetdb.online_upgrade fence"
FENCE_END = "# END fleetdb.online_upgrade fence"
FENCE = ManagedBlock(FENCE_BEGIN, FENCE_END)   # always first in pg_hba.conf: put with first=True

# backend_type of the processes PostgreSQL itself runs (pg_stat_activity); anything else is an extension's.
CORE_BACKEND_TYPES = (
    "client backend", "autovacuum launcher", "autovacuum worker", "logical replication launcher",
    "logical replication worker", "logical replication apply worker", "logical replication tablesync worker",
    "logical replication parallel worker", "parallel worker", "background writer", "checkpointer", "archiver", "startup",
    "walreceiver", "walsender", "walwriter", "walsummarizer", "slotsync worker", "standalone backend", "io worker",
    # extensions' workers that read but never write data
    "autoprewarm leader", "autoprewarm worker",
    # pg_cron: the cutover pauses its jobs before the fence and waits for their runs to end (postgres/cron.py)
    pg_cron.LAUNCHER, pg_cron.JOB_WORKER,
)

PREPARED_SQL = "SELECT gid, owner, database, prepared::text FROM pg_prepared_xacts ORDER BY prepared"
# pg_subscription is shared: one query names the subscriptions of every database.
SUBSCRIPTIONS_SQL = ("SELECT s.subname, d.datname, array_to_string(s.subpublications, ', ') FROM pg_subscription s "
                     "JOIN pg_database d ON d.oid = s.subdbid WHERE s.subenabled ORDER BY 2, 1")

BACKGROUND_WORKERS_SQL = """
SELECT pid, backend_type, coalesce(datname, ''), coalesce(usename, '')
  FROM pg_stat_activity
 WHERE backend_type <> ALL ($1::text[])
 ORDER BY pid
"""


def hba_quote(name):
    """A database or role name as one pg_hba.conf token: always double-quoted, so that commas, spaces and
    keywords (all, sameuser, replication) keep no special meaning."""
    if '"' in name or "\n" in name or "\r" in name:
        raise OperationError("the name %r cannot be written to pg_hba.conf (it holds a double quote or a line "
                             "break)" % name, "rename it, or leave it out of the upgraded databases")
    return '"%s"' % name


def fence_lines(replication_user, databases):
    """pg_hba.conf lines put in front of the existing rules while the fence is up."""
    dbs = ",".join(hba_quote(db) for db in databases)
    return ["local   %s   %s   scram-sha-256" % (dbs, hba_quote(replication_user)),
            "local   all   all   reject",
            "host    all   all   all   reject"]


def retired_lines(admin_user, replication_user, databases, peer=True):
    """The fence a stopped old server keeps after the cutover: no client gets in should it ever be started on its
    other port, but the administrator does (a rollback, a look at the data)."""
    lines = fence_lines(replication_user, databases)
    return lines[:1] + ["local   all   %s   %s" % (hba_quote(admin_user), "peer" if peer else "scram-sha-256")] + lines[1:]


def fence_block(replication_user, databases):
    """The fence as the text in front of the existing rules."""
    return FENCE.put("", fence_lines(replication_user, databases))


def without_fence(hba_text):
    """The pg_hba.conf text with any fence block removed (idempotent)."""
    return FENCE.without(hba_text)


def is_fenced(hba_text):
    return FENCE.present(hba_text)


def fence_blockers(session):
    """What the fence cannot hold back, each as dict(kind, name, fix); empty when the cutover may run."""
    found = []
    for gid, owner, database, prepared in session.query(PREPARED_SQL).rows:
        found.append(dict(kind="prepared transaction",
                          name="%s (owner %s, database %s, prepared %s)" % (gid, owner, database, prepared),
                          fix="COMMIT PREPARED or ROLLBACK PREPARED %s in database %s" % (gid, database)))
    for pid, backend_type, database, user in session.query(BACKGROUND_WORKERS_SQL, [list(CORE_BACKEND_TYPES)]).rows:
        found.append(dict(kind="background worker",
                          name="%s (pid %s%s%s)" % (backend_type, pid, ", database " + database if database else "",
                                                    ", user " + user if user else ""),
                          fix="the cutover cannot hold back what %s writes (only pg_cron's jobs it pauses): stop "
                              "the worker for the upgrade (the library that starts it out of shared_preload_libraries, "
                              "a restart of the old server; its extension still needs its build for the new "
                              "release), or upgrade offline with online_upgrade_method=dump_restore" % backend_type))
    for name, database, publications in session.query(SUBSCRIPTIONS_SQL).rows:
        found.append(dict(kind="subscription", name="%s (database %s, publication %s)" % (name, database, publications),
                          fix="move the old server's subscriptions to the new server with the statements that "
                              "fleetdb.online_upgrade.preflight gives for them (its check `subscriptions`)"))
    return found


def blockers_message(blockers):
    return "; ".join("%s %s" % (b["kind"], b["name"]) for b in blockers)


def blockers_fix(blockers):
    return "; ".join(sorted(set(b["fix"] for b in blockers)))
