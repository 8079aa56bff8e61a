# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small PostgreSQL client speaking the frontend/backend protocol v3.

The modules run on database hosts that may have no Python driver installed;
this client needs only the standard library.  It keeps a connection open for
as long as a module needs it, which matters in the cutover where every round
trip is inside the client-visible window.

Supported: Unix-socket and TCP connections, trust/peer, cleartext, md5 and
SCRAM-SHA-256 authentication, the simple query protocol (several statements),
and the extended protocol with text parameters (no SQL built from values).
Values come back as text; ``None`` for NULL.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import hmac
import os
import socket
import struct
import time

try:
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import DatabaseError
except ImportError:  # loaded alone as a file (tools, test hosts): the standard library is all there is
    DatabaseError = Exception


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
    """One session.  Use as a context manager or call :meth:`close`."""

    def __init__(self, host="/var/run/postgresql", port=5432, user="postgres", dbname="postgres",
                 password=None, connect_timeout=10, application_name="fleetdb.online_upgrade",
                 options=None, io_timeout=None):
        self.host = host
        self.port = int(port)
        self.user = user
        self.dbname = dbname
        self.parameters = {}
        self.notices = []
        self.backend_pid = None
        self._sock = None
        self._buf = b""
        self._connect(password, connect_timeout, application_name, options)
        self.set_io_timeout(io_timeout)

    # -- connection ---------------------------------------------------------
    def _connect(self, password, timeout, application_name, options):
        try:
            if self.host.startswith("/"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(os.path.join(self.host, ".s.PGSQL.%d" % self.port))
            else:
                sock = socket.create_connection((self.host, self.port), timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, socket.error) as exc:
            raise PgConnectError("cannot connect to %s port %d: %s" % (self.host, self.port, exc))
        sock.settimeout(None)
        self._sock = sock
        params = {"user": self.user, "database": self.dbname,
                  "application_name": application_name, "client_encoding": "UTF8"}
        if options:
            params["options"] = options
        body = struct.pack("!i", 196608)
        for key, value in params.items():
            body += key.encode() + b"\0" + value.encode() + b"\0"
        body += b"\0"
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
        scram = None
        while True:
            kind, payload = self._read_message()
            if kind == b"E":
                raise self._error(payload)
            if kind != b"R":
                raise PgConnectError("unexpected message %r during authentication" % kind)
            code = struct.unpack("!i", payload[:4])[0]
            if code == 0:
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
                scram = _Scram(password)
                first = scram.client_first().encode()
                self._send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
            elif code == 11:
                self._send(b"p", scram.client_final(payload[4:].decode()).encode())
            elif code == 12:
                scram.verify(payload[4:].decode())
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
        """Seconds any one read or write on the socket may take (None: no limit).  A timeout ends the session:
        its protocol state is unknown after it."""
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
        bind = b"\0\0" + struct.pack("!hh", 0, len(values))
        for value in values:
            if value is None:
                bind += struct.pack("!i", -1)
            else:
                data = value.encode()
                bind += struct.pack("!i", len(data)) + data
        bind += struct.pack("!h", 0)
        self._send_many([
            (b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!h", 0)),
            (b"B", bind),
            (b"D", b"P\0"),
            (b"E", b"\0" + struct.pack("!i", 0)),
            (b"S", b""),
        ])
        return self._collect()[-1]

    def rows(self, sql, params=()):
        return self.query(sql, params).dicts()

    def scalar(self, sql, params=()):
        return self.query(sql, params).scalar()

    def _collect(self):
        results = []
        current = Result()
        error = None
        while True:
            kind, payload = self._read_message()
            if kind == b"T":
                current = Result()
                current.columns = _row_description(payload)
            elif kind == b"D":
                current.rows.append(_data_row(payload))
            elif kind == b"C":
                current.command = payload.rstrip(b"\0").decode()
                results.append(current)
                current = Result()
            elif kind == b"I":
                results.append(current)
                current = Result()
            elif kind == b"E":
                error = self._error(payload)
            elif kind == b"Z":
                if error is not None:
                    raise error
                return results or [current]
            else:
                self._handle_async(kind, payload)

    def _read_until_ready(self):
        while True:
            kind, payload = self._read_message()
            if kind == b"Z":
                return
            if kind == b"E":
                raise self._error(payload)
            if kind == b"K":
                self.backend_pid = struct.unpack("!i", payload[:4])[0]
            else:
                self._handle_async(kind, payload)

    def _handle_async(self, kind, payload):
        if kind == b"S":
            key, value = payload.rstrip(b"\0").split(b"\0", 1)
            self.parameters[key.decode()] = value.decode()
        elif kind == b"N":
            self.notices.append(_fields(payload).get("M", ""))
        # ParseComplete, BindComplete, NoData, NotificationResponse: nothing to keep.

    def _error(self, payload):
        fields = _fields(payload)
        message = fields.get("M", "unknown error")
        if fields.get("D"):
            message += " (" + fields["D"] + ")"
        if fields.get("H"):
            message += " HINT: " + fields["H"]
        return PgError(message, fields.get("C"), fields)

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
            self._sock.close()
            self._sock = None
            raise PgError("connection lost: %s" % exc, "08006")

    def _read_message(self):
        header = self._read_exact(5)
        length = struct.unpack("!i", header[1:5])[0]
        return header[:1], self._read_exact(length - 4)

    def _read_exact(self, size):
        while len(self._buf) < size:
            try:
                chunk = self._sock.recv(max(65536, size - len(self._buf)))
            except (OSError, socket.error) as exc:
                chunk = b""
                reason = str(exc)
            else:
                reason = "server closed the connection"
            if not chunk:
                if self._sock is not None:
                    self._sock.close()
                self._sock = None
                raise PgError("connection lost: %s" % reason, "08006")
            self._buf += chunk
        data, self._buf = self._buf[:size], self._buf[size:]
        return data


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


def _fields(payload):
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[part[:1].decode()] = part[1:].decode("utf-8", "replace")
    return fields


def _row_description(payload):
    count = struct.unpack("!h", payload[:2])[0]
    names, pos = [], 2
    for _index in range(count):
        end = payload.index(b"\0", pos)
        names.append(payload[pos:end].decode())
        pos = end + 1 + 18
    return names


def _data_row(payload):
    count = struct.unpack("!h", payload[:2])[0]
    values, pos = [], 2
    for _index in range(count):
        size = struct.unpack("!i", payload[pos:pos + 4])[0]
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(payload[pos:pos + size].decode())
            pos += size
    return tuple(values)


class _Scram:
    """SCRAM-SHA-256 (RFC 5802/7677) without channel binding."""

    def __init__(self, password):
        self.password = password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.server_signature = None
        self.first_bare = None

    def client_first(self):
        self.first_bare = "n=,r=" + self.nonce
        return "n,," + self.first_bare

    def client_final(self, server_first):
        attrs = dict(item.split("=", 1) for item in server_first.split(","))
        if not attrs["r"].startswith(self.nonce):
            raise PgConnectError("SCRAM: server nonce does not extend the client nonce")
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = "c=biws,r=" + attrs["r"]
        auth_message = ",".join([self.first_bare, server_first, without_proof]).encode()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = base64.b64encode(hmac.new(server_key, auth_message, hashlib.sha256).digest()).decode()
        return without_proof + ",p=" + base64.b64encode(proof).decode()

    def verify(self, server_final):
        attrs = dict(item.split("=", 1) for item in server_final.split(","))
        if attrs.get("v") != self.server_signature:
            raise PgConnectError("SCRAM: the server's signature does not match")


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
