# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The settings of an instance: fleetdb.conf, the include in postgresql.conf, pg_hba.conf and pg_ident.conf.

Settings managed by this collection live in ``fleetdb.conf`` beside ``postgresql.conf`` (pg_conf), in the
data directory or where the host keeps the configuration (``config_file``: Debian's /etc/postgresql).  A
running server reloads them; what only a restart applies is reported.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time
from collections import OrderedDict

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import (
    alter_system as pg_alter_system, extensions as pg_extensions, ssl_files as pg_ssl_files)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, read_text, write_file)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.conf import (
    OPTION_SETTINGS, changed_settings, join_directories, normalize_settings, parse_conf, parse_describe_config,
    render_conf, split_directories, with_include, with_socket_dir)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.hba import HbaFile
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance_files import InstanceFiles


def restart_needed(contexts, names):
    """True when one of ``names`` takes effect only at server start (context postmaster, or unknown)."""
    return any(contexts.get(name, "postmaster") == "postmaster" for name in names)


class InstanceSettings(InstanceFiles):
    """What the configuration files of an instance hold, and what a running server makes of them."""

    def contexts(self):
        """{setting: context} of this release, from ``postgres --describe-config`` (no server needed)."""
        if self._contexts is None:
            rc, out, _err = self.module.run_command([self._bin("postgres"), "--describe-config"],
                                                    environ_update={"LC_ALL": "C"})
            self._contexts = parse_describe_config(out) if rc == 0 else {}
        return self._contexts

    def known_setting(self, name):
        contexts = self.contexts()
        # Extension settings (with a dot) are only known once the extension is loaded.
        return "." in name or not contexts or name in contexts

    def managed_settings(self):
        return parse_conf(read_text(self.conf_file))

    def desired_settings(self, settings, inherited=None, current=None):
        """What fleetdb.conf should hold: inherited settings the release knows, ``settings``, port and socket dir.

        Without ``spec.port`` the port in ``current`` (fleetdb.conf now) is kept, if there is one.
        Returns (settings, skipped inherited names).
        """
        for name in settings or {}:
            if name.lower() in OPTION_SETTINGS:
                raise OperationError("%s cannot be set in settings" % name,
                                     "use the module's %s option" % ("port" if name.lower() == "port"
                                                                     else "socket_dir"))
            if not self.known_setting(name.lower()):
                raise OperationError("PostgreSQL %s has no setting named %s" % (self.binaries_version(), name),
                                     "correct the name (postgres --describe-config lists them all)")
        desired = OrderedDict()
        skipped = []
        for name, value in normalize_settings(inherited).items():
            if name in OPTION_SETTINGS:
                continue
            if self.known_setting(name):
                desired[name] = value
            else:
                skipped.append(name)
        desired.update(normalize_settings(settings))
        if self.spec.port is not None:
            desired["port"] = str(self.spec.port)
        elif current and "port" in current:
            desired["port"] = current["port"]
        desired["unix_socket_directories"] = join_directories(self.socket_directories())
        self._check_preload_libraries(desired.get("shared_preload_libraries"))
        return desired, skipped

    def _check_preload_libraries(self, value):
        """Each library of shared_preload_libraries must be in this release: without it the server cannot start."""
        names = pg_extensions.preload_libraries(value)
        if not names:
            return
        libdir = pg_extensions.release_dirs(self.module, self.spec.bin_dir)[1]
        missing = pg_extensions.missing_libraries(libdir, names)
        if missing:
            raise OperationError(
                "shared_preload_libraries names libraries that PostgreSQL %s in %s lacks: %s (the server could not "
                "start); nothing was changed" % (self.binaries_version(), libdir, ", ".join(missing)),
                "install them for this release (Debian: the postgresql-%s-<extension> package), or remove them from "
                "shared_preload_libraries on the old server first" % self.binaries_version().split(".", 1)[0],
                missing_libraries=missing)

    def carry_ssl_files(self, old, settings):
        """``settings`` inherited from the instance ``old``, with the SSL files it keeps in its data directory
        copied into this one; returns (settings, files copied)."""
        return pg_ssl_files.carry(self.module, settings, old.spec.data_dir, self.spec.data_dir, self.spec.owner)

    def read_hba(self):
        return read_text(self.hba_path())

    def read_ident(self):
        return read_text(self.ident_path())

    def configure(self, settings, inherited=None, hba_content=None, ident_content=None):
        """Write fleetdb.conf (and pg_hba.conf when given); a running server reloads them.

        Returns dict(changed, diff, settings, changed_settings, skipped_settings, restart_required,
        pending_restart, reloaded).
        """
        current = self.managed_settings()
        desired, skipped = self.desired_settings(settings, inherited, current)
        names = changed_settings(current, desired)
        result = dict(changed=False, diff=[], settings=dict(desired), changed_settings=names,
                      skipped_settings=skipped, restart_required=False, pending_restart=[], reloaded=False)
        self._include_managed(result)
        if names:
            self._write_managed(desired, result)
        if hba_content is not None:
            self._write_hba(hba_content, result)
        if ident_content is not None:
            changed, diff = write_file(self.module, self.ident_path(), ident_content, owner=self.spec.owner, mode=0o640)
            if changed:
                result["diff"].append(diff)
                result["changed"] = True
        self._apply(result, names)
        result["port"] = int(desired["port"]) if "port" in desired else (self.configured_port() or 5432)
        return result

    def set_port(self, port):
        """Change the configured port in fleetdb.conf, leaving every other setting as it is."""
        self._require_data_dir()
        previous = self.configured_port()
        before = self.managed_settings()
        after = OrderedDict(before)
        after["port"] = str(port)
        if "unix_socket_directories" not in after:
            # What the instance serves stays (a rollback starts the old server again); socket_dir is added if missing.
            configured = split_directories(self.show_configured("unix_socket_directories"))
            served = with_socket_dir(configured, self.spec.socket_dir)
            if served != configured:
                after["unix_socket_directories"] = join_directories(served)
        names = changed_settings(before, after)
        result = dict(changed=False, diff=[], previous_port=previous, configured_port=port,
                      restart_required=False, pending_restart=[], reloaded=False)
        self._include_managed(result)
        if names:
            self._write_managed(after, result)
        if not (self.module.check_mode and result["changed"]):
            effective = self.configured_port()
            if effective != port:
                raise OperationError(
                    "fleetdb.conf sets port %d, but the configuration resolves to port %s: a setting read after "
                    "it overrides it" % (port, effective),
                    "remove port from %s (ALTER SYSTEM RESET port) or from postgresql.conf below the include of "
                    "fleetdb.conf" % self._path("postgresql.auto.conf"))
        self._apply(result, names)
        info = self.postmaster()
        # The port is the one setting that matters here: does the running server listen elsewhere?
        result["restart_required"] = bool(info and info["port"] != port)
        return result

    def _apply(self, result, names):
        """restart_required from the changed settings' contexts; reload a running server that has changes."""
        info = self.postmaster()
        if info is None:
            result["restart_required"] = restart_needed(self.contexts(), names)
            return
        if self.module.check_mode:
            contexts = self.contexts()
            result["restart_required"] = restart_needed(contexts, names)
            result["pending_restart"] = [n for n in names if restart_needed(contexts, [n])]
            return
        try:
            session = self.connect()
        except OperationError as exc:
            result["restart_required"] = restart_needed(self.contexts(), names)
            if result["changed"]:
                self.reload()
                result["reloaded"] = True
            self.module.warn("settings written, but pending restarts are unknown: %s" % exc.msg)
            return
        try:
            contexts = dict(self.contexts())
            contexts.update(session.query("SELECT name, context FROM pg_settings WHERE name = ANY($1::text[])",
                                          [names]).rows)
            result["restart_required"] = restart_needed(contexts, names)
            if result["changed"]:
                self._reload_and_wait(session)
                result["reloaded"] = True
            result["pending_restart"] = sorted(r[0] for r in session.query(
                "SELECT name FROM pg_settings WHERE pending_restart").rows)
        finally:
            session.close()
        result["restart_required"] = result["restart_required"] or bool(result["pending_restart"])

    def _reload_and_wait(self, session):
        """Reload, then wait until ``session``'s backend has read the files (pending_restart is set then)."""
        loaded = session.scalar("SELECT pg_conf_load_time()::text")
        self.reload()
        deadline = time.monotonic() + 5
        while session.scalar("SELECT (pg_conf_load_time() > $1::timestamptz)::text", [loaded]) != "true":
            if time.monotonic() > deadline:
                self.module.warn("the server did not confirm the reload within 5 s; pending_restart may be stale")
                return
            time.sleep(0.01)

    def _write_managed(self, settings, result):
        """Write fleetdb.conf once PostgreSQL has accepted the values; check that the files still load."""
        if self.major() is not None:
            error = self._config_error(settings)
            if error:
                raise OperationError("PostgreSQL does not accept the new settings, nothing was written: %s" % error,
                                     "correct the value named above")
        previous = read_text(self.conf_file)
        changed, diff = write_file(self.module, self.conf_file, render_conf(settings), owner=self.spec.owner,
                                   mode=0o600)
        if not changed:
            return
        result["diff"].append(diff)
        result["changed"] = True
        if self.module.check_mode or self.major() is None:
            return
        error = self._config_error()
        if error:
            if previous is None:
                os.unlink(self.conf_file)
            else:
                write_file(self.module, self.conf_file, previous, owner=self.spec.owner, mode=0o600)
            raise OperationError("the configuration files do not load with the new fleetdb.conf, the previous one "
                                 "was put back: %s" % error, "correct the setting named above")

    def _include_managed(self, result):
        """Append the include of fleetdb.conf to postgresql.conf, once."""
        main_conf = self.main_conf
        text = read_text(main_conf)
        if text is None:
            if self.major() is not None:
                raise OperationError(
                    "%s does not exist: the configuration of %s lives elsewhere" % (main_conf, self.spec.data_dir),
                    "pass config_file (SHOW config_file on the running server; fleetdb.online_upgrade.discover "
                    "finds it)")
            return
        changed, _diff = write_file(self.module, main_conf, with_include(text), owner=self.spec.owner, mode=0o600)
        if changed:
            # The lines appended, not the whole file: postgresql.conf is long and otherwise unchanged.
            appended = with_include(text)[len(text):]
            result["diff"].append(dict(before_header="%s (end)" % main_conf, after_header="%s (end)" % main_conf,
                                       before="", after=appended))
            result["changed"] = True

    def _write_hba(self, content, result):
        if not content.endswith("\n"):
            content += "\n"
        hba = HbaFile(self.module, self.hba_path(), self.spec.owner, self.spec.data_dir)
        if hba.read() == content:
            return
        session = None
        if not self.module.check_mode and self.postmaster() is not None:
            try:
                session = self.connect()
            except OperationError as exc:
                self.module.warn("pg_hba.conf written but not checked: %s" % exc.msg)
        try:
            _changed, diff = hba.write_checked(content, session, "correct hba_content")
        finally:
            if session is not None:
                session.close()
        result["diff"].append(diff)
        result["changed"] = result["hba_changed"] = True

    def alter_system(self, settings, at_least=False, record=None):
        """Settings of the running server through ALTER SYSTEM and a reload (pg_alter_system); returns its
        result: what only a restart applies is in ``pending_restart``.  With ``record``, what postgresql.auto.conf
        had of them is recorded there first, for ``give_back_settings``."""
        if self.postmaster() is None and self.module.check_mode:   # a check run that would have started it
            return dict(changed=True, statements=["ALTER SYSTEM SET %s = ... (compared once it runs)" % name
                                                  for name in settings], diff={}, pending_restart=[])
        if self.postmaster() is None:
            raise OperationError("the server of %s is not running" % self.spec.data_dir,
                                 "start it (fleetdb.online_upgrade.server state=started): ALTER SYSTEM needs it")
        session = self.connect()
        try:
            if record and not self.module.check_mode:
                pg_alter_system.record_auto_conf(self.module, session, settings, record, self.spec.owner)
            return pg_alter_system.alter_system(self.module, session, settings, self.reload, at_least)
        finally:
            session.close()

    def give_back_settings(self, record):
        """The settings ``alter_system`` recorded in ``record``, as postgresql.auto.conf had them; ``record`` goes."""
        if self.postmaster() is None:
            raise OperationError("the server of %s is not running" % self.spec.data_dir,
                                 "start it (fleetdb.online_upgrade.server state=started): ALTER SYSTEM needs it")
        session = self.connect()
        try:
            return pg_alter_system.give_back(self.module, session, record, self.reload)
        finally:
            session.close()
