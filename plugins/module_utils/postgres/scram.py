# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client side of SCRAM-SHA-256 (RFC 5802/7677) without channel binding, for ``pgwire``.

Standard library only, and no import of ``pgwire``: tools load ``pgwire.py`` and this file as plain files.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import hmac
import os

# The iteration count comes from the server, before it has proven anything: a server (or whatever answers on its
# address) could ask for 2**31 and hold the client in PBKDF2 for minutes.  PostgreSQL's default is 4096, PgBouncer
# passes the server's count on (or uses 4096 for its own auth_file), and OWASP's advice for PBKDF2-HMAC-SHA256 is
# 600,000: one million allows that with room and costs a fraction of a second (about 0.2 s on a 2-core VM).
MAX_ITERATIONS = 1000000


class ScramError(Exception):
    """The server's side of the exchange is malformed, refused, or does not prove it knows the password."""


def _attributes(message):
    try:
        return dict(item.split("=", 1) for item in message.split(","))
    except ValueError:
        raise ScramError("SCRAM: malformed server message %r" % message)


class ScramSha256:
    """One exchange: ``client_first()``, ``client_final(server_first)``, ``verify(server_final)``."""

    def __init__(self, password):
        self.password = password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.server_signature = None
        self.first_bare = None
        self.verified = False  # the server proved it knows the password: only then may it say "authenticated"

    def client_first(self):
        self.first_bare = "n=,r=" + self.nonce
        return "n,," + self.first_bare

    def client_final(self, server_first):
        attrs = _attributes(server_first)
        if not attrs.get("r", "").startswith(self.nonce):
            raise ScramError("SCRAM: server nonce does not extend the client nonce")
        try:
            salt = base64.b64decode(attrs["s"])
            iterations = int(attrs["i"])
        except (KeyError, ValueError, binascii.Error):
            raise ScramError("SCRAM: the server's first message lacks a valid salt or iteration count: %r"
                             % server_first)
        if not 0 < iterations <= MAX_ITERATIONS:
            raise ScramError("SCRAM: the server asks for %d iterations, outside 1 to %d that this client computes"
                             " (PostgreSQL's default is 4096): lower scram_iterations and set the role's password"
                             " again" % (iterations, MAX_ITERATIONS))
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iterations)
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
        attrs = _attributes(server_final)
        if "e" in attrs:
            raise ScramError("SCRAM: the server refused the proof: %s" % attrs["e"])
        if self.server_signature is None or attrs.get("v") != self.server_signature:
            raise ScramError("SCRAM: the server's signature does not match")
        self.verified = True
