# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""postgresql.conf-style files: reading, writing, and the include of the collection's fleetdb.conf.

Settings managed by this collection live in ``fleetdb.conf`` beside ``postgresql.conf``, which includes it
from its last line (``include_if_exists``), so they override what is written above the include and leave the
rest of ``postgresql.conf`` as the DBA keeps it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
from collections import OrderedDict

MANAGED_FILE = "fleetdb.conf"
INCLUDE_LINE = "include_if_exists = '%s'" % MANAGED_FILE
HEADER = ("# Managed by fleetdb.online_upgrade (modules instance and port): edits here are overwritten.\n"
          "# postgresql.conf includes this file on its last line, so these settings win over the ones above it.\n")
# Set from module options, not from ``settings``.
OPTION_SETTINGS = ("port", "unix_socket_directories")
# Used when the release cannot tell (postgres --describe-config failed): the usual restart-only settings.
POSTMASTER_SETTINGS = frozenset([
    "archive_mode", "autovacuum_max_workers", "bonjour", "bonjour_name", "cluster_name", "data_directory",
    "dynamic_shared_memory_type", "hba_file", "hot_standby", "huge_pages", "ident_file", "listen_addresses",
    "max_connections", "max_files_per_process", "max_locks_per_transaction", "max_logical_replication_workers",
    "max_pred_locks_per_transaction", "max_prepared_transactions", "max_replication_slots", "max_wal_senders",
    "max_worker_processes", "port", "shared_buffers", "shared_memory_type", "shared_preload_libraries",
    "superuser_reserved_connections", "track_commit_timestamp", "unix_socket_directories", "unix_socket_group",
    "unix_socket_permissions", "wal_buffers", "wal_level", "wal_log_hints",
])


# -- configuration files -------------------------------------------------------------

_CONF_LINE = re.compile(
    r"""^\s*(?P<name>[A-Za-z_][\w.\-]*)\s*=?\s*
        (?P<value>'(?:[^'\\]|\\.|'')*'|[^\s#']+)?\s*(?:\#.*)?$""", re.VERBOSE)


def unquote(value):
    if len(value) >= 2 and value[0] == value[-1] == "'":
        inner = value[1:-1].replace("''", "'")
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), inner)
    return value


def parse_conf(text):
    """Settings of a postgresql.conf-style file: OrderedDict(name -> unquoted value); the last one wins.

    Include directives are configuration too, but not settings: they are skipped.
    """
    settings = OrderedDict()
    for line in (text or "").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _CONF_LINE.match(line)
        if not match:
            continue
        name = match.group("name").lower()
        if name in ("include", "include_if_exists", "include_dir"):
            continue
        settings.pop(name, None)
        settings[name] = unquote(match.group("value") or "")
    return settings


def conf_value(value):
    """A setting's value as postgresql.conf text, unquoted: True -> 'on', [a, b] -> 'a, b'."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ", ".join(conf_value(v) for v in value)
    return str(value)


def quote_conf(text):
    """Numbers stay bare, everything else is quoted: always valid, whatever the setting's type."""
    if re.match(r"^-?\d+(\.\d+)?$", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def normalize_settings(settings):
    """OrderedDict(name -> text) from a module's dict; names lower-cased, null values dropped."""
    normalized = OrderedDict()
    for name in sorted(settings or {}):
        if settings[name] is not None:
            normalized[name.lower()] = conf_value(settings[name])
    return normalized


def render_conf(settings):
    """fleetdb.conf text: the port and socket directory first, then the other settings by name."""
    names = [n for n in OPTION_SETTINGS if n in settings] + sorted(n for n in settings if n not in OPTION_SETTINGS)
    return HEADER + "".join("%s = %s\n" % (name, quote_conf(settings[name])) for name in names)


def changed_settings(before, after):
    """Names whose value differs between two settings dicts (added and removed ones too)."""
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))


def has_include(text):
    return re.search(r"^\s*include_if_exists\s*=?\s*'%s'" % re.escape(MANAGED_FILE), text or "", re.M) is not None


def with_include(text):
    """postgresql.conf text with the include of fleetdb.conf as its last line, added once."""
    if has_include(text):
        return text
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "\n# Settings managed by fleetdb.online_upgrade\n" + INCLUDE_LINE + "\n"


_DIRECTORY = re.compile(r'\s*"((?:[^"]|"")*)"\s*(?:,|$)|\s*([^,]*?)\s*(?:,|$)')


def split_directories(value):
    """unix_socket_directories -> its entries, split as PostgreSQL does: at commas, blanks around each
    trimmed, an entry in double quotes may hold commas ("" is one quote).  '' -> [] (no Unix socket)."""
    entries, pos, text = [], 0, value or ""
    while pos < len(text):
        match = _DIRECTORY.match(text, pos)
        quoted, bare = match.group(1), match.group(2)
        if quoted is not None:
            entries.append(quoted.replace('""', '"'))
        elif bare:
            entries.append(bare)
        pos = match.end() if match.end() > pos else len(text)
    return entries


def join_directories(entries):
    """The unix_socket_directories value of ``entries``: quoted where a comma, a quote or blanks would split."""
    return ", ".join('"%s"' % e.replace('"', '""') if re.search(r'[,"]|^\s|\s$', e) else e for e in entries)


def same_directory(one, other):
    return os.path.realpath(one) == os.path.realpath(other)


def with_socket_dir(entries, socket_dir):
    """``entries`` with ``socket_dir`` (where the collection's own sessions connect) added at the end, unless one
    of them is that directory already (/var/run/postgresql is /run/postgresql on most hosts)."""
    entries = list(entries or [])
    if socket_dir and not any(e.startswith("/") and same_directory(e, socket_dir) for e in entries):
        entries.append(socket_dir)
    return entries


def parse_describe_config(text):
    """``postgres --describe-config`` output -> {name: context} (tab-separated: name, context, group, ...)."""
    contexts = {}
    for line in (text or "").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0]:
            contexts[fields[0].lower()] = fields[1]
    return contexts
