# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Administrative sessions to a local PostgreSQL instance."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError, effective_user


# Settings that keep a statement out of the server log, for the statements that carry password hashes.
UNLOGGED_SETTINGS = (("log_statement", "none"), ("log_min_duration_statement", "-1"),
                     ("log_min_duration_sample", "-1"), ("log_transaction_sample_rate", "0"),
                     ("log_min_error_statement", "panic"), ("log_duration", "off"))
# Branches per UNION ALL statement: the parser recurses once per branch, and 10,000 of them exceed the default
# max_stack_depth (2 MB): "stack depth limit exceeded".
UNION_ALL_BRANCHES = 500


def connect(spec, dbname=None, port=None, timeout=10, application_name="fleetdb.online_upgrade",
            io_timeout=None, options=None, retry_sqlstates=()):
    """Open a session on the instance's Unix socket as ``spec.login_user``.

    When the module runs as root, the socket is opened with the owner's uid so
    that the default ``peer`` authentication of a fresh instance accepts it.
    """
    kwargs = dict(host=spec.socket_dir, port=port or spec.port, user=spec.login_user or spec.owner,
                  dbname=dbname or spec.dbname or "postgres", password=spec.login_password,
                  application_name=application_name, io_timeout=io_timeout, options=options)
    deadline = time.monotonic() + timeout
    try:
        with effective_user(spec.owner):
            return pgwire.connect_retry(deadline, retry_sqlstates=retry_sqlstates, **kwargs)
    except pgwire.PgConnectError as exc:
        raise OperationError(
            "cannot connect to the %s server on port %s (socket directory %s) as %s: %s"
            % ("local", kwargs["port"], spec.socket_dir, kwargs["user"], exc),
            "check that the server runs (fleetdb.online_upgrade.server state=started) and that "
            "pg_hba.conf lets %s in on the local socket" % kwargs["user"])


def login(host, port, user, dbname, password=None, connect_timeout=10, io_timeout=None,
          application_name="fleetdb.online_upgrade", replication=None):
    """A session as ``user``, tried once, on ``host`` (a socket directory or an address): pgwire.PgError when it
    is refused, for the callers that test the login itself or word the refusal their own way.  ``replication``
    "true": a physical replication session, which takes replication commands (IDENTIFY_SYSTEM)."""
    return pgwire.Connection(host=host, port=port, user=user, dbname=dbname, password=password,
                             connect_timeout=connect_timeout, io_timeout=io_timeout,
                             application_name=application_name, replication=replication)


def identify_system(host, port, user, password, timeout, server, fix):
    """IDENTIFY_SYSTEM on ``server`` (its name in a refusal: "the primary (host port 5432)"), over a replication
    session as ``user``: its system identifier, timeline and WAL position.  A refused login says ``fix``."""
    try:
        session = login(host, port, user, "postgres", password, connect_timeout=10, io_timeout=timeout,
                        replication="true")
    except pgwire.PgError as exc:
        raise OperationError("cannot open a replication session to %s as %s: %s" % (server, user, exc), fix)
    try:
        return session.execute("IDENTIFY_SYSTEM").rows[0][:3]
    finally:
        session.close()


def execute_unlogged(session, sql):
    """Run ``sql`` (one statement that carries a secret, such as a password hash) so that the server does not
    log it, whatever log_statement says.  The settings are local to a transaction of their own, each sent
    alone: a statement is logged before it runs, so ``sql`` must not share a query string with them.
    Needs a superuser session (the settings are superuser-only)."""
    session.execute("BEGIN")
    try:
        for name, value in UNLOGGED_SETTINGS:
            session.execute("SET LOCAL %s = %s" % (name, pgwire.quote_literal(value)))
        session.execute(sql)
        session.execute("COMMIT")
    except pgwire.PgError:
        if not session.closed:
            session.execute("ROLLBACK")
        raise


def union_all_rows(session, selects):
    """The rows of ``selects`` (SELECTs of the same columns), read UNION ALL in statements of at most
    UNION_ALL_BRANCHES branches: one round trip per 500 relations.  In a transaction, they share its snapshot."""
    rows = []
    for start in range(0, len(selects), UNION_ALL_BRANCHES):
        rows += session.execute(" UNION ALL ".join(selects[start:start + UNION_ALL_BRANCHES])).rows
    return rows


def side_by_side(*calls):
    """Run each call in its own thread (each on its own session) and return their results in order; the
    first exception raised is raised here, once all are done."""
    results, errors = [None] * len(calls), []

    def run(index, call):
        try:
            results[index] = call()
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)  # raised again below, in the caller's thread
    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
