# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgBackRest on the host of a server whose archive_command is ``pgbackrest ... archive-push %p``: its stanza,
version, ``check``, the stanza's pg1-path, ``stanza-upgrade``, a full backup and ``info``.

Every command runs as the instance owner, with the configuration file the archive command names (``--config``)
or pgBackRest's default (``/etc/pgbackrest/pgbackrest.conf``, else ``/etc/pgbackrest.conf``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shlex
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, read_text, replace_file, run_as)

DEFAULT_CONFIGS = ("/etc/pgbackrest/pgbackrest.conf", "/etc/pgbackrest.conf")

# The first pgBackRest that knows each major's final catalog number (2.55.0 had PostgreSQL 18's beta one: it
# refuses an 18.0 server; 2.57.0 carries the release's).
SUPPORTS_MAJOR = {14: (2, 36), 15: (2, 41), 16: (2, 48), 17: (2, 54), 18: (2, 57)}


def from_archive_command(command):
    """dict(stanza, config, binary) when ``command`` pushes through pgBackRest, else None (stanza None when the
    command names none)."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        return None
    if "archive-push" not in words or not any(os.path.basename(w) == "pgbackrest" for w in words):
        return None
    found = dict(stanza=None, config=None,
                 binary=next(w for w in words if os.path.basename(w) == "pgbackrest"))
    for i, word in enumerate(words):
        for option in ("stanza", "config"):
            if word.startswith("--%s=" % option):
                found[option] = word.split("=", 1)[1]
            elif word == "--" + option and i + 1 < len(words):
                found[option] = words[i + 1]
    return found


def supports(version, major):
    """Whether pgBackRest ``version`` ('2.57.0') backs up PostgreSQL ``major``; None when unknown."""
    needed = SUPPORTS_MAJOR.get(int(major))
    parts = tuple(int(p) for p in re.findall(r"\d+", version or "")[:2])
    if needed is None or not parts:
        return None
    return parts >= needed


class PgBackRest:
    """pgBackRest's commands for one stanza, run as ``owner``."""

    def __init__(self, module, owner, stanza, config=None, binary="pgbackrest"):
        self.module = module
        self.owner = owner
        self.stanza = stanza
        self.binary = binary
        self.config = config or next((path for path in DEFAULT_CONFIGS if os.path.exists(path)), DEFAULT_CONFIGS[0])

    def _argv(self, *args):
        return [self.binary, "--config=%s" % self.config, "--stanza=%s" % self.stanza] + list(args)

    def _run(self, *args):
        rc, out, err = run_as(self.module, self.owner, self._argv(*args), cwd="/")
        return rc, (out or "").strip(), (err or "").strip()

    def command_line(self, *args):
        """The command as this class runs it, for a fix text: runuser is on every Linux host, sudo is not."""
        return "runuser -u %s -- %s" % (self.owner, " ".join(shlex.quote(word) for word in self._argv(*args)))

    def version(self):
        rc, out, err = run_as(self.module, self.owner, [self.binary, "version"], cwd="/")
        return out.strip().split()[-1] if rc == 0 and out.strip() else None

    def check(self):
        """None when ``pgbackrest check`` passes, else its error."""
        rc, out, err = self._run("check")
        return None if rc == 0 else (err or out or "exit code %d" % rc)

    def pg_path(self):
        return _section_value(read_text(self.config) or "", self.stanza, "pg1-path")

    def set_pg_path(self, data_dir):
        """Point the stanza's pg1-path at ``data_dir``; whether the file changed."""
        text = read_text(self.config)
        if text is None:
            raise OperationError("pgBackRest's configuration %s does not exist" % self.config,
                                 "give the stanza %s a pg1-path in it" % self.stanza)
        changed = _set_section_value(text, self.stanza, "pg1-path", data_dir)
        if changed is None:
            raise OperationError("%s has no pg1-path in its section [%s]" % (self.config, self.stanza),
                                 "add pg1-path=%s to [%s]" % (data_dir, self.stanza))
        if changed != text:
            info = os.stat(self.config)
            replace_file(self.config, changed.encode("utf-8"), owner=(info.st_uid, info.st_gid),
                         mode=info.st_mode & 0o7777)
        return changed != text

    def stanza_upgrade(self):
        rc, out, err = self._run("stanza-upgrade")
        if rc != 0:
            raise OperationError("pgbackrest stanza-upgrade of stanza %s failed: %s" % (self.stanza, err or out),
                                 "correct the cause named, then run: %s" % self.command_line("stanza-upgrade"))

    def backup(self):
        """A full backup: dict(label, seconds)."""
        began = time.monotonic()
        rc, out, err = self._run("--type=full", "backup")
        if rc != 0:
            raise OperationError("the full pgBackRest backup of stanza %s failed: %s" % (self.stanza, err or out),
                                 "correct the cause named, then run the play again, which takes the backup (or take it yourself: %s)"
                                 % self.command_line("--type=full", "backup"))
        seconds = round(time.monotonic() - began, 1)
        backups = (self.info() or {}).get("backup") or [{}]
        return dict(label=backups[-1].get("label"), seconds=seconds)

    def current_backup(self):
        """The stanza's newest backup of its current database (the newest of its history: after stanza-upgrade,
        the upgraded server's) as dict(label, seconds), or None."""
        info = self.info() or {}
        ids = [db["id"] for db in info.get("db") or []]
        backups = [b for b in info.get("backup") or [] if ids and (b.get("database") or {}).get("id") == max(ids)]
        if not backups:
            return None
        times = backups[-1].get("timestamp") or {}
        return dict(label=backups[-1].get("label"), seconds=times.get("stop", 0) - times.get("start", 0))

    def info(self):
        """The stanza's entry of ``pgbackrest info --output=json``, or None."""
        rc, out, err = self._run("--output=json", "info")
        if rc != 0:
            return None
        stanzas = json.loads(out or "[]")
        return stanzas[0] if stanzas else None


def _sections(text):
    section = None
    for number, line in enumerate(text.splitlines()):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
        yield number, section, stripped


def _section_value(text, section, key):
    for number, name, line in _sections(text):
        if name == section and "=" in line and line.split("=", 1)[0].strip() == key:
            return line.split("=", 1)[1].strip()
    return None


def _set_section_value(text, section, key, value):
    lines = text.splitlines()
    for number, name, line in _sections(text):
        if name == section and "=" in line and line.split("=", 1)[0].strip() == key:
            lines[number] = "%s=%s" % (key, value)
            return "\n".join(lines) + "\n"
    return None
