# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bodies of the protocol v3 messages ``pgwire`` sends and reads (the type byte and length are framing).

Standard library only, and no import of ``pgwire``: tools load ``pgwire.py`` and this file as plain files.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

PROTOCOL_VERSION = 196608  # 3.0


def startup(params):
    """StartupMessage: the protocol version and ``params`` (user, database, ...) as NUL-terminated pairs."""
    body = struct.pack("!i", PROTOCOL_VERSION)
    for key, value in params.items():
        body += key.encode() + b"\0" + value.encode() + b"\0"
    return body + b"\0"


def extended_query(sql, values):
    """Parse, Bind (``values``: text or None, all sent as text), Describe, Execute and Sync of one statement, in
    the unnamed statement and portal."""
    bind = b"\0\0" + struct.pack("!hh", 0, len(values))
    for value in values:
        if value is None:
            bind += struct.pack("!i", -1)
        else:
            data = value.encode()
            bind += struct.pack("!i", len(data)) + data
    bind += struct.pack("!h", 0)
    return [
        (b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!h", 0)),
        (b"B", bind),
        (b"D", b"P\0"),
        (b"E", b"\0" + struct.pack("!i", 0)),
        (b"S", b""),
    ]


def fields(payload):
    """The fields of an ErrorResponse or NoticeResponse: {code letter: text}."""
    found = {}
    for part in payload.split(b"\0"):
        if part:
            found[part[:1].decode()] = part[1:].decode("utf-8", "replace")
    return found


def error_text(found):
    """The message of an ErrorResponse's fields, with its detail and hint."""
    message = found.get("M", "unknown error")
    if found.get("D"):
        message += " (" + found["D"] + ")"
    if found.get("H"):
        message += " HINT: " + found["H"]
    return message


def row_description(payload):
    """The column names of a RowDescription."""
    count = struct.unpack("!h", payload[:2])[0]
    names, pos = [], 2
    for _index in range(count):
        end = payload.index(b"\0", pos)
        names.append(payload[pos:end].decode())
        pos = end + 1 + 18
    return names


def data_row(payload):
    """The values of a DataRow, as text (None for NULL)."""
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
