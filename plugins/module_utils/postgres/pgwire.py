# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small PostgreSQL client speaking the frontend/backend protocol v3.

The modules run on database hosts that may have no Python driver installed;
this client needs only the standard library.  It keeps a connection open for
as long as a module needs it, which matters in the cutover where every round
trip is inside the client-visible window.

Supported: Unix-socket and TCP connections, TLS on TCP (``sslmode``, see
``wire_tls``), trust/peer, cleartext, md5 and SCRAM-SHA-256 authentication
(``scram``), the simple query protocol (several statements), and the extended
protocol with text parameters (no SQL built from values).  Values come back as
text; ``None`` for NULL.  Not supported: COPY FROM STDIN / TO STDOUT and
replication streams; they raise ``PgError``.

The three sibling files are imported from the collection, or, when this file is
loaded as a file of its own (tools/fleetdb_proof.py, test hosts), from beside it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import socket
import ssl
import struct
import time

try:
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import DatabaseError
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import scram, wire_messages, wire_tls
except ImportError:  # loaded alone as a file (tools, test hosts): its siblings beside it, the standard library
    import importlib.util

    DatabaseError = Exception

    def _sibling(name):
        spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), name + ".py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    scram, wire_messages, wire_tls = _sibling("scram"), _sibling("wire_messages"), _sibling("wire_tls")

# A server's answers to a COPY, which this client does not speak.
COPY_RESPONSES = {b"G": "COPY FROM STDIN", b"H": "COPY TO STDOUT", b"W": "a replication stream (CopyBoth)"}


class PgError(DatabaseError):
    """An error reported by the server (``ErrorResponse``) or the connection."""

    def __init__(self, message, sqlstate=None, fields=None):
        super(PgError, self).__init__(message)
        self.sqlstate = sqlstate
        self.fields = fields or {}


class PgConnectError(PgError):
    """The server could not be reached or refused the login."""


def quote_ident(name):
    """Quote an SQL identifier the way ``quote_ident()`` does."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value):
    """Quote a value as an SQL literal, for the few statements (DDL) that take no parameters."""
    if value is None:
        return "NULL"
    text = str(value)
    if "\\" in text:
        return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + text.replace("'", "''") + "'"


class Result:
    """Rows of one statement: ``columns`` names, ``rows`` tuples of text, ``command`` tag."""

    def __init__(self):
        self.columns = []
        self.rows = []
        self.command = ""

    def dicts(self):
        return [dict(zip(self.columns, row)) for row in self.rows]

    def scalar(self):
        return self.rows[0][0] if self.rows else None

    @property
    def rowcount(self):
        parts = self.command.split()
        if parts and parts[-1].isdigit():
            return int(parts[-1])
        return len(self.rows)


class Connection:
    """One session.  Use as a context manager or call :meth:`close`.

    ``sslmode`` (disable, prefer, require, verify-full) and ``sslrootcert`` apply to TCP (``wire_tls``).
    ``io_timeout``: see :meth:`set_io_timeout`."""

    def __init__(self, host="/var/run/postgresql", port=5432, user="postgres", dbname="postgres",
                 password=None, connect_timeout=10, application_name="fleetdb.online_upgrade",
                 options=None, io_timeout=None, sslmode="prefer", sslrootcert=None, replication=None):
        self.host = host
        self.port = int(port)
        self.user = user
        self.dbname = dbname
        self.sslmode = sslmode
        self.sslrootcert = sslrootcert
        self.connect_timeout = connect_timeout
        self.parameters = {}
        self.notices = []
        self.backend_pid = None
        self._secret_key = None
        self._io_timeout = None
        self._sock = None
        self._buf = b""
        self._connect(password, connect_timeout, application_name, options, replication)
        self.set_io_timeout(io_timeout)

    # -- connection ---------------------------------------------------------
    def _connect(self, password, timeout, application_name, options, replication=None):
        try:
            sock = wire_tls.open_socket(self.host, self.port, timeout, self.sslmode, self.sslrootcert)
        except (OSError, socket.error) as exc:
            raise PgConnectError("cannot connect to %s port %d: %s" % (self.host, self.port, exc))
        sock.settimeout(None)
        self._sock = sock
        params = {"user": self.user, "database": self.dbname,
                  "application_name": application_name, "client_encoding": "UTF8"}
        for name, value in (("options", options), ("replication", replication)):   # replication "true": a walsender
            if value:
                params[name] = value
        body = wire_messages.startup(params)
        try:
            self._sock.sendall(struct.pack("!i", len(body) + 4) + body)
        except (OSError, socket.error) as exc:  # a server that closed at once (starting up, shutting down)
            self.close()
            raise PgConnectError("cannot connect to %s port %d: %s" % (self.host, self.port, exc))
        try:
            self._authenticate(password)
            self._read_until_ready()
        except PgError as exc:
            self.close()
            if isinstance(exc, PgConnectError):
                raise
            raise PgConnectError(str(exc), exc.sqlstate, exc.fields)

    def _authenticate(self, password):
        exchange = None
        while True:
            kind, payload = self._read_message()
            if kind == b"E":
                raise self._error(payload)
            if kind != b"R":
                raise PgConnectError("unexpected message %r during authentication" % kind)
            code = struct.unpack("!i", payload[:4])[0]
            if code == 0:
                if exchange is not None and not exchange.verified:
                    raise PgConnectError("the server ended SCRAM authentication without proving it knows the "
                                         "password")
                return
            if password is None and code in (3, 5, 10):
                raise PgConnectError("the server asks for a password for role %s and none was given" % self.user)
            if code == 3:
                self._send(b"p", password.encode() + b"\0")
            elif code == 5:
                salt = payload[4:8]
                inner = hashlib.md5((password + self.user).encode()).hexdigest().encode()
                self._send(b"p", b"md5" + hashlib.md5(inner + salt).hexdigest().encode() + b"\0")
            elif code == 10:
                mechanisms = payload[4:].split(b"\0")
                if b"SCRAM-SHA-256" not in mechanisms:
                    raise PgConnectError("no supported SASL mechanism offered: %r" % mechanisms)
                exchange = scram.ScramSha256(password)
                first = exchange.client_first().encode()
                self._send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
            elif code in (11, 12) and exchange is not None:
                try:
                    if code == 11:
                        self._send(b"p", exchange.client_final(payload[4:].decode()).encode())
                    else:
                        exchange.verify(payload[4:].decode())
                except scram.ScramError as exc:
                    raise PgConnectError(str(exc))
            else:
                raise PgConnectError("unsupported authentication method %d" % code)

    def close(self):
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.sendall(b"X" + struct.pack("!i", 4))
            except (OSError, socket.error):
                pass  # the server may already have closed its end (a rejected login, "starting up")
            sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_io_timeout(self, seconds):
        """Seconds any one read or write on the socket may take (None: no limit).  A statement that overruns it
        is cancelled on the server (a CancelRequest on a connection of its own), then the session is closed and
        PgError says "timed out"."""
        self._io_timeout = seconds
        if self._sock is not None:
            self._sock.settimeout(seconds)

    @property
    def closed(self):
        return self._sock is None

    def server_version_num(self):
        return int(self.parameters.get("server_version_num") or self.query("SHOW server_version_num").scalar())

    # -- queries ------------------------------------------------------------
    def execute(self, sql):
        """Run one or more statements with the simple protocol; returns the last result."""
        self._send(b"Q", sql.encode() + b"\0")
        return self._collect()[-1]

    def query(self, sql, params=()):
        """Run one statement with text parameters ($1, $2, ...); returns its result."""
        values = [None if p is None else (p if isinstance(p, str) else _to_text(p)) for p in params]
        self._send_many(wire_messages.extended_query(sql, values))
        return self._collect(extended=True)[-1]

    def rows(self, sql, params=()):
        return self.query(sql, params).dicts()

    def scalar(self, sql, params=()):
        return self.query(sql, params).scalar()

    def _collect(self, extended=False):
        results = []
        current = Result()
        error = None
        while True:
            kind, payload = self._read_message()
            if kind == b"T":
                current = Result()
                current.columns = wire_messages.row_description(payload)
            elif kind == b"D":
                current.rows.append(wire_messages.data_row(payload))
            elif kind == b"C":
                current.command = payload.rstrip(b"\0").decode()
                results.append(current)
                current = Result()
            elif kind == b"I":
                results.append(current)
                current = Result()
            elif kind == b"E":
                error = error or self._error(payload)  # after a refused COPY, the server's "COPY ... failed"
            elif kind == b"Z":
                if error is not None:
                    raise error
                return results or [current]
            elif kind in COPY_RESPONSES:
                error = self._refuse_copy(kind, extended)
            else:
                self._handle_async(kind, payload)

    def _refuse_copy(self, kind, extended):
        """Leave the COPY the server started: CopyFail ends a COPY FROM STDIN (then a Sync, which copy-in mode
        ignored, ends an extended query); the rows of a COPY TO STDOUT (CopyData, CopyDone) are dropped as they
        come; a replication stream has no end, so the session is closed.  Returns the error to raise at
        ReadyForQuery."""
        error = PgError("%s is not supported by this client (pgwire speaks no COPY sub-protocol); the statement "
                        "was abandoned" % COPY_RESPONSES[kind], "0A000")
        if kind == b"G":
            self._send_many([(b"f", b"not supported by fleetdb pgwire\0")] + ([(b"S", b"")] if extended else []))
        elif kind == b"W":
            self.close()
            raise error
        return error

    def _read_until_ready(self):
        while True:
            kind, payload = self._read_message()
            if kind == b"Z":
                return
            if kind == b"E":
                raise self._error(payload)
            if kind == b"K":
                self.backend_pid, self._secret_key = struct.unpack("!ii", payload[:8])
            else:
                self._handle_async(kind, payload)

    def _handle_async(self, kind, payload):
        if kind == b"S":
            key, value = payload.rstrip(b"\0").split(b"\0", 1)
            self.parameters[key.decode()] = value.decode()
        elif kind == b"N":
            self.notices.append(wire_messages.fields(payload).get("M", ""))
        # ParseComplete, BindComplete, NoData, NotificationResponse: nothing to keep.

    def _error(self, payload):
        fields = wire_messages.fields(payload)
        return PgError(wire_messages.error_text(fields), fields.get("C"), fields)

    # -- framing --------------------------------------------------------------
    def _send(self, kind, payload):
        self._send_many([(kind, payload)])

    def _send_many(self, messages):
        if self._sock is None:
            raise PgError("the connection is closed")
        data = b"".join(kind + struct.pack("!i", len(p) + 4) + p for kind, p in messages)
        try:
            self._sock.sendall(data)
        except (OSError, socket.error) as exc:
            raise self._lost(exc)

    def _read_message(self):
        header = self._read_exact(5)
        length = struct.unpack("!i", header[1:5])[0]
        return header[:1], self._read_exact(length - 4)

    def _read_exact(self, size):
        while len(self._buf) < size:
            if self._sock is None:
                raise PgError("the connection is closed")
            try:
                chunk = self._sock.recv(max(65536, size - len(self._buf)))
            except (OSError, socket.error) as exc:
                raise self._lost(exc)
            if not chunk:
                raise self._lost("server closed the connection")
            self._buf += chunk
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def _lost(self, reason):
        """The error that ends the session.  On a timeout past the login, the statement still running on the
        server is cancelled first: closing the socket alone would leave it running until it next writes."""
        timed_out = isinstance(reason, socket.timeout) and self._secret_key is not None
        outcome = self._cancel() if timed_out else None
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if timed_out:
            return PgError("timed out: no answer from %s port %d within io_timeout %s s; %s and the session closed"
                           % (self.host, self.port, self._io_timeout, outcome), "57014")
        return PgError("connection lost: %s" % reason, "08006")

    def _cancel(self):  # given no longer than the timeout it follows: a host that stopped answering may not answer it
        sslmode = self.sslmode if isinstance(self._sock, ssl.SSLSocket) else "disable"
        try:
            wire_tls.cancel_request(self.host, self.port, self.backend_pid, self._secret_key,
                                    min(self.connect_timeout, self._io_timeout), sslmode, self.sslrootcert)
        except (OSError, socket.error) as exc:
            return "cancelling the statement failed (%s)" % exc
        return "the statement was cancelled"


def _to_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return array_literal(value)
    return str(value)


def array_literal(values):
    """A one-dimensional array literal for a ``$n::type[]`` parameter."""
    def item(value):
        if value is None:
            return "NULL"
        text = _to_text(value)
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "{" + ",".join(item(v) for v in values) + "}"


def connect_retry(deadline, retry_sqlstates=(), **kwargs):
    """Connect, retrying until ``deadline`` (a ``time.monotonic()`` value) while the server starts, and
    on the SQLSTATEs of ``retry_sqlstates`` (e.g. 53300, too many clients)."""
    # Short, flat intervals: in a cutover every millisecond after the server is ready is client downtime,
    # and a refused local connection costs next to nothing.
    delay = 0.005
    while True:
        try:
            return Connection(**kwargs)
        except PgConnectError as exc:
            retryable = exc.sqlstate in (None, "57P03") or exc.sqlstate in retry_sqlstates  # not reachable / starting
            if not retryable or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 1.5, 0.02)
