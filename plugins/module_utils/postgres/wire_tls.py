# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The socket under a ``pgwire`` session: Unix or TCP, TLS negotiated as libpq does, and the CancelRequest.

Standard library only, and no import of ``pgwire``: tools load ``pgwire.py`` and this file as plain files.
Failures are ``OSError`` (``ssl.SSLError`` is one); ``pgwire`` turns them into ``PgConnectError``.

``sslmode`` (TCP only: a Unix socket never uses TLS, like libpq):

- ``disable``: no TLS.
- ``prefer``: sends an SSLRequest; TLS when the server answers 'S', plain only when it answers 'N'.  The
  certificate is not checked (libpq's default mode: it protects from eavesdropping, not from impersonation).
- ``require``: TLS or no session.  With ``sslrootcert`` the certificate chain is checked (libpq does the same).
- ``verify-full``: TLS, the chain checked against ``sslrootcert`` (or the system's trusted CAs when none is
  given) and the host name against the certificate.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import ssl
import struct

SSLMODES = ("disable", "prefer", "require", "verify-full")
SSL_REQUEST_CODE = 80877103
CANCEL_REQUEST_CODE = 80877102


def open_socket(host, port, timeout, sslmode="prefer", sslrootcert=None):
    """A connected socket, wrapped in TLS when ``sslmode`` and the server agree on it."""
    if sslmode not in SSLMODES:
        raise ValueError("sslmode %r is none of %s" % (sslmode, ", ".join(SSLMODES)))
    if host.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(os.path.join(host, ".s.PGSQL.%d" % port))
        except (OSError, socket.error):
            sock.close()
            raise
        return sock
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if sslmode == "disable":
        return sock
    try:
        return _negotiate_tls(sock, host, sslmode, sslrootcert)
    except (OSError, socket.error):
        sock.close()
        raise


def _negotiate_tls(sock, host, sslmode, sslrootcert):
    sock.sendall(struct.pack("!ii", 8, SSL_REQUEST_CODE))
    # One byte and not one more: anything after the 'S' must come from inside TLS (CVE-2021-23222).
    answer = sock.recv(1)
    if answer == b"N":
        if sslmode == "prefer":
            return sock
        raise ssl.SSLError("the server at %s does not accept TLS (sslmode %s)" % (host, sslmode))
    if answer != b"S":
        raise ssl.SSLError("the server at %s answered the TLS request with %r (a server older than 7.2, or not "
                           "PostgreSQL)" % (host, answer or "nothing"))
    return tls_context(sslmode, sslrootcert).wrap_socket(sock, server_hostname=host)


def tls_context(sslmode, sslrootcert=None):
    """The client's TLS settings for ``sslmode``: TLS 1.2 at least, like libpq's ssl_min_protocol_version."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if sslmode == "verify-full":
        if sslrootcert:
            context.load_verify_locations(cafile=sslrootcert)
        else:
            context.load_default_certs()
    elif sslmode == "require" and sslrootcert:
        context.check_hostname = False
        context.load_verify_locations(cafile=sslrootcert)
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def cancel_request(host, port, backend_pid, secret_key, timeout, sslmode="prefer", sslrootcert=None):
    """Ask the server to cancel what backend ``backend_pid`` runs, on a connection of its own (the session's is
    busy), over TLS when the session's ``sslmode`` asks for it.  Returns once the server has closed that
    connection, which it does after signalling the backend."""
    sock = open_socket(host, port, timeout, sslmode, sslrootcert)
    try:
        sock.sendall(struct.pack("!iiii", 16, CANCEL_REQUEST_CODE, backend_pid, secret_key))
        while sock.recv(64):
            pass
    finally:
        sock.close()
