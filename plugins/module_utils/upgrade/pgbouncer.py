# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PgBouncer in front of the old server: its admin console, PAUSE before the cutover and RESUME after it.

PAUSE <db> makes PgBouncer stop giving server connections to clients, wait until every server connection of
that database is released (in transaction pooling: every transaction in flight has ended), then close them.
Clients keep their PgBouncer sessions; their next queries wait in PgBouncer.  RESUME <db> lets them go: PgBouncer
connects again to the same host and port, which is the new server by then.  A PAUSE that cannot finish never
returns (a RESUME from another session does not end it), so the pause waits on its own session with a socket
timeout and, past it, RESUMEs from a second one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError

# The longest a cutover holds clients once paused (fence ... start) is well under a second in every measurement;
# PgBouncer's client-side limits must leave room for the pause itself and a slow start on top of that.
WINDOW_ALLOWANCE = 30
POOL_MODES = ("transaction", "statement")


def from_params(params):
    """A PgBouncer from the ``pooler`` option, or None when there is none."""
    if not params:
        return None
    return PgBouncer(params["host"], params["port"], params["admin_user"], params.get("admin_password"),
                     pause_timeout=params["pause_timeout"], databases=params.get("databases"),
                     sslmode=params["sslmode"], sslrootcert=params.get("sslrootcert"))


def _name(name):
    """A database name as the admin console's commands take it (they have no quoting)."""
    if not re.match(r"^[A-Za-z0-9_.$-]+$", name):
        raise OperationError("PgBouncer database name %r cannot be given to its admin console" % name,
                             "rename it in pgbouncer.ini's [databases] section")
    return name


class PauseTimeout(OperationError):
    """PAUSE did not finish in time: a client holds a transaction (or, in session pooling, its connection)."""


class PgBouncer:
    """One PgBouncer, through its admin console (the virtual database ``pgbouncer``)."""

    def __init__(self, host, port, admin_user, admin_password, pause_timeout=10.0, databases=None, sslmode="prefer",
                 sslrootcert=None):
        self.host = host
        self.port = int(port)
        self.admin_user = admin_user
        self.admin_password = admin_password
        self.pause_timeout = float(pause_timeout)
        self.databases = list(databases) if databases else None  # PgBouncer's names; None: found from the server's
        self.sslmode = sslmode  # over TCP (a Unix socket never uses TLS): the admin password crosses the network
        self.sslrootcert = sslrootcert

    def __repr__(self):
        return "PgBouncer %s:%d" % (self.host, self.port)

    def console(self, timeout=5):
        try:
            return pgwire.Connection(host=self.host, port=self.port, user=self.admin_user, dbname="pgbouncer",
                                     password=self.admin_password, connect_timeout=timeout, io_timeout=timeout,
                                     sslmode=self.sslmode, sslrootcert=self.sslrootcert)
        except pgwire.PgError as exc:
            raise OperationError("cannot reach the admin console of %r as %s: %s" % (self, self.admin_user, exc),
                                 "check pooler host/port, that %s is in its admin_users, the admin password, and "
                                 "for TLS its client_tls_* settings against the pooler's sslmode and sslrootcert"
                                 % self.admin_user)

    def show(self, what):
        session = self.console()
        try:
            return session.execute("SHOW %s" % what).dicts()
        finally:
            session.close()

    def version(self):
        return (self.show("VERSION") or [{}])[0].get("version")

    def entries(self, production_port, server_databases):
        """PgBouncer's databases that lead to ``server_databases`` on ``production_port`` (or the ones named)."""
        rows = self.show("DATABASES")
        if self.databases is not None:
            return [row for row in rows if row["name"] in self.databases]
        return [row for row in rows if row.get("database") in server_databases and row["name"] != "pgbouncer"
                and str(row.get("port")) == str(production_port)]

    def problems(self, production_port, server_databases):
        """What keeps PAUSE from holding clients through the cutover: [(problem, fix)]."""
        try:
            config = dict((row["key"], row["value"]) for row in self.show("CONFIG"))
            entries = self.entries(production_port, server_databases)
        except OperationError as exc:
            return [(exc.msg, exc.fix)]
        found = []
        if self.databases is not None:
            missing = sorted(set(self.databases) - set(row["name"] for row in entries))
            if missing:
                found.append(("%r has no database %s" % (self, ", ".join(missing)),
                              "name databases from its [databases] section (SHOW DATABASES)"))
        elif not entries:
            found.append(("no database of %r leads to %s on port %d"
                          % (self, ", ".join(server_databases), production_port),
                          "name its databases in the pooler option, or check its [databases] section"))
        for row in entries:
            mode = row.get("pool_mode") or config.get("pool_mode")
            if mode not in POOL_MODES:
                found.append(("PgBouncer database %s uses %s pooling: PAUSE would wait until every client "
                              "disconnects" % (row["name"], mode),
                              "use pool_mode = transaction for it, or upgrade without the pooler option "
                              "(clients then see errors at the cutover)"))
        held = self.pause_timeout + WINDOW_ALLOWANCE
        for setting in ("query_wait_timeout", "query_timeout"):
            seconds = float(config.get(setting) or 0)
            if 0 < seconds < held:
                found.append(("PgBouncer's %s is %g s: clients held by the pause (up to pause_timeout %g s plus "
                              "%d s for the window) would get errors" % (setting, seconds, self.pause_timeout,
                                                                         WINDOW_ALLOWANCE),
                              "set %s = 0 or at least %d in pgbouncer.ini and RELOAD, or lower pause_timeout"
                              % (setting, int(held) + 1)))
        return found

    def pause(self, names):
        """PAUSE each database; returns the seconds it took.  Past pause_timeout, every database is RESUMEd
        and PauseTimeout says which clients held the pause."""
        names = [_name(name) for name in names]
        started = time.monotonic()
        paused = []
        try:
            for name in names:
                left = self.pause_timeout - (time.monotonic() - started)
                session = self.console()
                try:
                    session.set_io_timeout(max(left, 0.001))
                    paused.append(name)  # from the moment it is sent: a RESUME must follow whatever happens
                    session.execute("PAUSE %s" % name)
                finally:
                    session.close()
        except (OperationError, pgwire.PgError) as exc:
            holders = self._holders(paused[-1:])
            self.resume(paused)
            if "timed out" in str(exc):
                raise PauseTimeout("PgBouncer could not PAUSE %s within %g s: %s still in a transaction; resumed"
                                   % (paused[-1], self.pause_timeout, holders or "a client"),
                                   "end the long transactions (or raise pause_timeout), then run again")
            raise OperationError("PAUSE %s failed on %r: %s; resumed" % (", ".join(names), self, exc))
        return time.monotonic() - started

    def _holders(self, names):
        try:
            return ", ".join("%s@%s:%s" % (row["user"], row["addr"], row["port"]) for row in self.show("CLIENTS")
                             if row["database"] in names and row["state"] == "active") or None
        except (OperationError, KeyError):
            return None

    def resume(self, names, attempts=50):
        """RESUME each database that is paused; tries for about 10 s, since every client waits on it."""
        names = [_name(name) for name in names]
        failure = None
        for _attempt in range(attempts):
            try:
                session = self.console()
                try:
                    for name in names:
                        try:
                            session.execute("RESUME %s" % name)
                        except pgwire.PgError as exc:
                            if "not paused" not in str(exc):
                                raise
                    return
                finally:
                    session.close()
            except (OperationError, pgwire.PgError, OSError) as exc:
                failure = exc
                time.sleep(0.2)
        raise OperationError("RESUME failed on %r: %s; its clients are still held" % (self, failure),
                             "connect to its admin console and run RESUME %s" % ", ".join(names))
