# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One PostgreSQL instance on its host: data directory, managed settings, port, server process.

Settings managed by this collection live in ``fleetdb.conf`` beside ``postgresql.conf`` (pg_conf), in the
data directory or where the host keeps the configuration (``config_file``: Debian's /etc/postgresql).
The server is started and set to start at boot through its service manager (pg_service).  Server
commands run as the owner.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import time
from collections import OrderedDict

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import (
    alter_system as pg_alter_system, extensions as pg_extensions, ssl_files as pg_ssl_files, pgwire)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, effective_user, ensure_directory, parse_version, port_holder, process_info, read_text, run_as,
    user_ids, write_file)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Instance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.cluster_objects import DATABASES_SQL
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.conf import (
    MANAGED_FILE, OPTION_SETTINGS, changed_settings, join_directories, normalize_settings, parse_conf,
    parse_describe_config, render_conf, split_directories, with_include, with_socket_dir)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.install import major_of
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.cluster_locale import (
    initdb_locale_arguments)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import (
    ControlDataError, controldata, parse_postmaster_pid, postmaster, process_alive)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.hba import HbaFile, hba_path
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.server_control import (
    ServerControl, log_file, log_tail, reload)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.service import manager as service_manager
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect as pg_connect

DATA_CHECKSUMS_DEFAULT_FROM = 18   # initdb enables data checksums by default from PostgreSQL 18 on


DEFAULT_LOCALE = {"encoding": "UTF8", "locale": "C.UTF-8"}


def initdb_arguments(initdb, data_dir, major, data_checksums=None, locale=None):
    """``locale``: a pg_locale.cluster_locale() dict, DEFAULT_LOCALE when None."""
    argv = [initdb, "-D", data_dir, "--auth-local=peer", "--auth-host=scram-sha-256"]
    argv += initdb_locale_arguments(locale or DEFAULT_LOCALE)
    if data_checksums:
        argv.append("--data-checksums")
    elif data_checksums is False and int(str(major).split(".", maxsplit=1)[0]) >= DATA_CHECKSUMS_DEFAULT_FROM:
        argv.append("--no-data-checksums")
    return argv


def restart_needed(contexts, names):
    """True when one of ``names`` takes effect only at server start (context postmaster, or unknown)."""
    return any(contexts.get(name, "postmaster") == "postmaster" for name in names)


# -- the instance ----------------------------------------------------------------------

class PostgresInstance(Instance):
    """A data directory served by the binaries of ``spec.bin_dir``, run by ``spec.owner``."""

    def __init__(self, module, spec):
        super(PostgresInstance, self).__init__(module, spec)
        self._contexts = None
        self._binaries_version = None
        self.service = service_manager(module, spec)
        self.control = ServerControl(module, spec)

    # -- paths ------------------------------------------------------------------
    def _path(self, *names):
        return os.path.join(self.spec.data_dir, *names)

    @property
    def conf_file(self):
        """fleetdb.conf, beside postgresql.conf (which includes it)."""
        return os.path.join(os.path.dirname(self.main_conf), MANAGED_FILE)

    @property
    def main_conf(self):
        return self.spec.config_file or self._path("postgresql.conf")

    def hba_path(self):
        return hba_path(self.module, self.spec)

    def ident_path(self):
        return self.show_configured("ident_file") or self._path("pg_ident.conf")

    @property
    def log_file(self):
        return log_file(self.spec)

    def _bin(self, name):
        return os.path.join(self.spec.bin_dir, name)

    # -- commands as the owner -------------------------------------------------------
    def _run(self, argv, **kwargs):
        # cwd=/ : the owner may not be allowed into the module's working directory (root's home).
        return run_as(self.module, self.spec.owner, argv, cwd="/", **kwargs)

    def check_owner(self):
        """The server never runs as root; a module not running as root can only act as itself."""
        owner = self.spec.owner
        if owner == "root":
            raise OperationError("PostgreSQL refuses to run as root and so does this module",
                                 "set owner to the unprivileged user that owns the data directory (e.g. postgres)")
        uid, _gid, _home = user_ids(owner)
        if os.geteuid() not in (0, uid):
            raise OperationError("the module runs as uid %d and cannot act as %s" % (os.geteuid(), owner),
                                 "run it with become: true, or as %s" % owner)

    def binaries_version(self):
        """'16.15' from ``postgres --version`` of ``bin_dir``."""
        if self._binaries_version is None:
            postgres = self._bin("postgres")
            if not os.path.isfile(postgres):
                raise OperationError("%s has no postgres binary" % self.spec.bin_dir,
                                     "install the release first (fleetdb.online_upgrade.install) and pass its bin_dir")
            rc, out, err = self.module.run_command([postgres, "--version"], environ_update={"LC_ALL": "C"})
            parts = parse_version(out) if rc == 0 else None
            if not parts:
                raise OperationError("%s --version failed: %s" % (postgres, (err or out).strip()),
                                     "check the installation with fleetdb.online_upgrade.install")
            self._binaries_version = ".".join(str(p) for p in parts)
        return self._binaries_version

    def binaries_major(self):
        return major_of(self.binaries_version())

    # -- what is there ---------------------------------------------------------------
    def major(self):
        """Major version of the data directory (PG_VERSION), None when it is no data directory."""
        text = read_text(self._path("PG_VERSION"))
        return text.strip() if text else None

    def postmaster(self):
        """postmaster.pid of a running server, None when the server is not running (or the file is stale)."""
        return postmaster(self.spec.data_dir)

    def configured_port(self):
        """The port the configuration files set (what the server takes when started without -p)."""
        value = self.show_configured("port")
        if value and value.isdigit():
            return int(value)
        return None

    def show_configured(self, name):
        """``postgres -C name``: a setting's value from the configuration files, None when they do not load."""
        if self.major() is None:
            return None
        rc, out, _err = self.control.postgres_c(name)
        return out.strip() if rc == 0 else None

    def facts(self):
        info = self.postmaster()
        return dict(exists=self.major() is not None, major=self.major(), configured_port=self.configured_port(),
                    running=info is not None, pid=info["pid"] if info else None,
                    port=info["port"] if info else None,
                    accepting=self.accepting(info["port"]) if info else False)

    def status(self):
        """What a DBA looks at first: is it running, where, does it answer, which version."""
        version = self.binaries_version()
        info = self.postmaster()
        result = dict(data_dir=self.spec.data_dir, major=self.major(), running=info is not None,
                      pid=None, port=None, accepting=False, version=None, configured_port=self.configured_port(),
                      log_file=self.log_file)
        if info:
            result.update(pid=info["pid"], port=info["port"], postmaster_status=info["status"])
            result["accepting"], result["version"] = self._ping(info["port"], 0)
        result["version"] = result["version"] or version
        return result

    def accepting(self, port, timeout=0):
        return self._ping(port, timeout)[0]

    def _ping(self, port, timeout):
        """(accepting, server_version) like pg_isready: a refused login still proves the server accepts."""
        spec = self.spec
        deadline = time.monotonic() + timeout
        try:
            with effective_user(spec.owner):
                session = pgwire.connect_retry(
                    deadline, host=spec.socket_dir, port=port, user=spec.login_user or spec.owner,
                    dbname=spec.dbname or "postgres", password=spec.login_password, connect_timeout=2,
                    application_name="fleetdb.online_upgrade ping")
        except pgwire.PgConnectError as exc:
            return exc.sqlstate not in (None, "57P03"), None
        try:
            parts = parse_version(session.parameters.get("server_version"))
            return True, ".".join(str(p) for p in parts) if parts else None
        finally:
            session.close()

    def port_user(self, port):
        """Who holds ``port``: None, or dict(pid, command, cmdline, user, this_instance)."""
        holder = port_holder(port)
        if holder is not None and holder["pid"] is None:
            # Root without CAP_SYS_PTRACE (a container) cannot see other users' sockets; the owner sees its own.
            with effective_user(self.spec.owner):
                holder = port_holder(port) or holder
        if holder is None:
            holder = self._socket_lock_holder(port)
        if holder is None:
            return None
        info = self.postmaster()
        ours = info and (holder["pid"] == info["pid"] or (holder["pid"] is None and info["port"] == int(port)))
        holder["this_instance"] = bool(ours)
        return holder

    def _socket_lock_holder(self, port):
        """A server listening on the Unix socket only still holds the port in our socket directory."""
        lock = read_text(os.path.join(self.spec.socket_dir, ".s.PGSQL.%d.lock" % int(port)))
        info = parse_postmaster_pid(lock)
        if not info or not process_alive(info["pid"]):
            return None
        return dict(process_info(info["pid"]), data_dir=info["data_dir"])

    # -- create -------------------------------------------------------------------------
    def create(self, data_checksums=None, locale=None):
        """initdb when there is no data directory yet; returns dict(created, data_checksums)."""
        self.check_owner()
        binaries = self.binaries_major()
        existing = self.major()
        if existing is not None:
            self._check_existing(existing, binaries, data_checksums)
            return dict(created=False, data_checksums=self.data_checksums())
        if os.path.isdir(self.spec.data_dir) and os.listdir(self.spec.data_dir):
            raise OperationError("%s is not empty but is no PostgreSQL data directory (no PG_VERSION)"
                                 % self.spec.data_dir,
                                 "choose an empty or new directory for data_dir; this one is left alone")
        if self.module.check_mode:
            return dict(created=True, data_checksums=data_checksums)
        if self.service.kind == "debian":
            return self._create_cluster(binaries, data_checksums, locale or DEFAULT_LOCALE)
        created_dir = ensure_directory(self.module, self.spec.data_dir, owner=self.spec.owner, mode=0o700)
        argv = initdb_arguments(self._bin("initdb"), self.spec.data_dir, binaries, data_checksums, locale)
        rc, out, err = self._run(argv)
        if rc != 0:
            if created_dir:
                shutil.rmtree(self.spec.data_dir, ignore_errors=True)
            raise OperationError("initdb of %s failed (rc=%d): %s" % (self.spec.data_dir, rc, (err or out).strip()),
                                 "fix the cause shown by initdb (the locale %s must exist on the host, locale -a "
                                 "lists them; a provider's locale must be known to this release)"
                                 % " ".join(initdb_locale_arguments(locale or DEFAULT_LOCALE)))
        if self.service.kind == "systemd":
            self.service.install_unit()  # disabled: the cutover enables it
        return dict(created=True, data_checksums=self.data_checksums())

    def _create_cluster(self, major, data_checksums, locale):
        """A postgresql-common cluster (pg_createcluster, as root), not started and not started at boot
        (start.conf manual) until the cutover makes it the production server."""
        service = self.service
        expected = "/etc/postgresql/%s/%s/postgresql.conf" % (service.version, service.cluster)
        if self.spec.config_file and self.spec.config_file != expected:
            raise OperationError("a postgresql-common cluster keeps its configuration in %s, not %s"
                                 % (expected, self.spec.config_file), "leave config_file unset or set it to %s" % expected)
        if service.version != major:
            raise OperationError("service.version %s is not the release's major version %s" % (service.version, major),
                                 "set service.version to %s" % major)
        argv = ["pg_createcluster", "-u", self.spec.owner, "-d", self.spec.data_dir, "-s", self.spec.socket_dir,
                "--start-conf", "manual"]
        # pg_createcluster's own options for encoding and libc locale (it writes them into postgresql.conf too),
        # initdb's (after --) for the rest
        initdb_options = initdb_arguments("initdb", self.spec.data_dir, major, data_checksums, locale)
        own = ("--encoding=", "--locale=", "--lc-")
        argv += [a for a in initdb_options if a.startswith(own)]
        if self.spec.port:
            argv += ["-p", str(self.spec.port)]
        wanted = [a for a in initdb_options[3:] if not a.startswith(own)]
        argv += [major, service.cluster, "--"] + wanted
        rc, out, err = self.module.run_command(argv, environ_update={"LC_ALL": "C"})
        if rc != 0:
            raise OperationError("pg_createcluster %s %s failed (rc %d): %s"
                                 % (major, service.cluster, rc, (err or out).strip()),
                                 "fix the cause it names; nothing else was changed")
        return dict(created=True, data_checksums=self.data_checksums())

    def remove(self):
        """Stop the server and remove the instance as its layout has it (a Debian cluster with pg_dropcluster, a
        unit file this collection installed, the data directory, its directories in the tablespaces).
        dict(changed, msg)."""
        changed = self.stop("fast")["changed"] if self.postmaster() else False
        changed = self._remove_tablespace_dirs() or changed
        changed = self.service.remove() or changed
        if os.path.isdir(self.spec.data_dir):
            if not self.module.check_mode:
                shutil.rmtree(self.spec.data_dir)
            changed = True
        return dict(changed=changed, msg="removed the instance of %s" % self.spec.data_dir if changed
                    else "there is no instance in %s" % self.spec.data_dir)

    def _remove_tablespace_dirs(self):
        """This instance's own directory (PG_<major>_<catalog version>) in each of its tablespaces: another major
        version's, beside it at the same location, is the other instance's and stays."""
        major, links = self.major(), self._path("pg_tblspc")
        if major is None or not os.path.isdir(links):
            return False
        removed = False
        for name in sorted(os.listdir(links)):
            location = os.path.realpath(os.path.join(links, name))
            for mine in sorted(os.listdir(location)) if os.path.isdir(location) else []:
                if re.match(r"^PG_%s_\d+$" % re.escape(major), mine):
                    if not self.module.check_mode:
                        shutil.rmtree(os.path.join(location, mine))
                    removed = True
        return removed

    def _check_existing(self, existing, binaries, data_checksums):
        if existing != binaries:
            raise OperationError(
                "%s is a data directory of PostgreSQL %s, but bin_dir holds PostgreSQL %s; it is left untouched"
                % (self.spec.data_dir, existing, self.binaries_version()),
                "give each major version its own data_dir (e.g. .../%s/main), or the bin_dir of PostgreSQL %s"
                % (binaries, existing))
        uid, _gid, _home = user_ids(self.spec.owner)
        if os.stat(self.spec.data_dir).st_uid != uid:
            raise OperationError("%s is not owned by %s" % (self.spec.data_dir, self.spec.owner),
                                 "set owner to the user that owns the data directory")
        actual = self.data_checksums()
        if data_checksums is not None and actual is not None and actual != data_checksums:
            raise OperationError(
                "%s has data checksums %s, data_checksums=%s was asked; initdb decides this only once"
                % (self.spec.data_dir, "on" if actual else "off", "true" if data_checksums else "false"),
                "switch them with pg_checksums --%s -D %s while the server is stopped, or drop the option"
                % ("enable" if data_checksums else "disable", self.spec.data_dir))

    def data_checksums(self):
        """Whether the data directory has page checksums (pg_controldata), None when unknown."""
        if self.major() is None or not os.path.isfile(self._bin("pg_controldata")):
            return None
        try:
            version = controldata([self.spec])[0].get("Data page checksum version")
        except ControlDataError:
            return None
        return None if version is None else version != "0"

    def socket_directories(self):
        """Every directory the server is to serve its socket in: spec.socket_directories and socket_dir."""
        return with_socket_dir(self.spec.socket_directories or [], self.spec.socket_dir)

    def ensure_socket_dir(self):
        """The socket directories, created owner-owned 2775 like postgresql-common does; True when one was created.
        Abstract sockets (@name) and relative entries (under the data directory) need no directory here."""
        created = False
        for directory in self.socket_directories():
            if directory.startswith("/"):
                created = ensure_directory(self.module, directory, owner=self.spec.owner, mode=0o2775) or created
        return created

    # -- settings ---------------------------------------------------------------------------
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

    def _config_error(self, settings=None):
        """The error postgres reports when loading the configuration files (with ``settings`` given as -c
        options, which it checks like the files' values), None when they load."""
        rc, out, err = self.control.postgres_c("port", settings)
        if rc == 0:
            return None
        # Drop the log line prefix ('2026-01-01 10:00:00.000 UTC [123] '): the messages are what matters.
        lines = [re.sub(r"^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] ", "", line)
                 for line in (err or out).splitlines() if line.strip()]
        return " ".join(lines[-4:]) or "postgres -C port failed with rc=%d" % rc

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

    # -- the server process -----------------------------------------------------------
    def start(self, port=None, timeout=60):
        """Start on ``port`` (default: the configured one) and wait until it accepts connections.

        A server already running on another port is restarted on ``port``.
        Returns dict(changed, port, pid, restarted, msg).
        """
        self.check_owner()
        self._require_data_dir()
        configured = self.configured_port()
        target = port or configured
        if target is None:
            raise OperationError("the configuration of %s does not load, so its port is unknown: %s"
                                 % (self.spec.data_dir, self._config_error()), "correct the setting named above")
        info = self.postmaster()
        if info and info["port"] == target:
            self.wait_accepting(target, timeout)
            return dict(changed=False, port=target, pid=info["pid"], restarted=False,
                        msg="the server already runs on port %d" % target)
        self._check_port_free(target)
        if self.module.check_mode:
            action = ("restart on port %d (it runs on %s)" % (target, info["port"]) if info
                      else "start on port %d" % target)
            return dict(changed=True, port=target, pid=None, restarted=bool(info), msg="would " + action)
        if info:
            self.stop("fast", timeout)
        pid = self._start_server(target, configured, timeout)
        return dict(changed=True, port=target, pid=pid, restarted=bool(info),
                    msg="%s on port %d" % ("restarted" if info else "started", target))

    def _require_data_dir(self):
        if self.major() is None:
            raise OperationError("%s is not a PostgreSQL data directory" % self.spec.data_dir,
                                 "create the instance first (fleetdb.online_upgrade.instance)")
        if self.major() != self.binaries_major():
            raise OperationError("%s is a data directory of PostgreSQL %s, bin_dir holds PostgreSQL %s"
                                 % (self.spec.data_dir, self.major(), self.binaries_version()),
                                 "pass the bin_dir of PostgreSQL %s" % self.major())

    def _check_port_free(self, port):
        holder = self.port_user(port)
        if holder and not holder["this_instance"]:
            raise OperationError(
                "port %d is held by pid %s (%s, user %s); nothing was changed"
                % (port, holder["pid"] or "unknown", holder["cmdline"] or holder["command"] or "not visible",
                   holder["user"] or "unknown"),
                "stop that process or choose another port", holder=holder)

    def _start_server(self, port, configured, timeout):
        self.ensure_socket_dir()
        began = time.monotonic()
        if port == configured and self.service.kind != "pg_ctl":
            # On its own port the server runs under its manager (systemd, postgresql-common), which restarts it
            # at boot; on a temporary port it is a bare process (its manager would take the configured port).
            self.control.ensure_log_dir()
            self.service.start()
            self.wait_accepting(port, timeout)
            self.service.wait_started(timeout)
        else:
            # A command-line port leaves the configured one as it is (the temporary port of an upgrade).
            self.control.start(port if port != configured else None, timeout)
            self.wait_accepting(port, max(1.0, timeout - (time.monotonic() - began)))
        info = self.postmaster()
        return info["pid"] if info else None

    def wait_accepting(self, port, timeout):
        """Wait until a connection on ``port`` gets past the startup phase (pg_isready's meaning of ready)."""
        if not self.accepting(port, timeout):
            raise OperationError("the server of %s runs but did not accept connections on port %d within %d s\n"
                                 "last lines of %s:\n%s" % (self.spec.data_dir, port, timeout, self.log_file,
                                                            log_tail(self.log_file)),
                                 "look for recovery still in progress in the log, or raise timeout")

    def stop(self, mode="fast", timeout=60):
        """Stop the server (smart waits for sessions to end, fast ends them, immediate skips the checkpoint)."""
        self.check_owner()
        info = self.postmaster()
        if info is None:
            return dict(changed=False, msg="the server is not running")
        if self.module.check_mode:
            return dict(changed=True, msg="would stop the server (pid %d, %s mode)" % (info["pid"], mode))
        rc, output = self.control.stop(mode, timeout)
        if rc != 0 and self.postmaster() is not None:
            raise OperationError(
                "the server of %s did not stop within %d s in %s mode: %s%s"
                % (self.spec.data_dir, timeout, mode, output,
                   "; it goes on shutting down and refuses new connections meanwhile" if mode == "smart" else ""),
                "smart mode waits for every session to end: stop with mode=fast (ends them), or raise timeout")
        return dict(changed=True, msg="stopped the server (pid %d, %s mode)" % (info["pid"], mode))

    def restart(self, port=None, mode="fast", timeout=60):
        self.check_owner()
        self._require_data_dir()
        info = self.postmaster()
        target = port or self.configured_port()
        if target:
            self._check_port_free(target)
        if self.module.check_mode:
            return dict(changed=True, port=target, restarted=bool(info),
                        msg="would %s on port %s" % ("restart" if info else "start", target))
        if info:
            self.stop(mode, timeout)
        result = self.start(port, timeout)
        result.update(changed=True, restarted=bool(info),
                      msg="%s on port %d" % ("restarted" if info else "started", result["port"]))
        return result

    def reload(self):
        """Make a running server read its configuration files again; False when it is not running."""
        if self.module.check_mode:
            return self.postmaster() is not None
        return reload(self.spec.data_dir)

    def alter_system(self, settings, at_least=False):
        """Settings of the running server through ALTER SYSTEM and a reload (pg_alter_system); returns its
        result: what only a restart applies is in ``pending_restart``."""
        if self.postmaster() is None and self.module.check_mode:   # a check run that would have started it
            return dict(changed=True, statements=["ALTER SYSTEM SET %s = ... (compared once it runs)" % name
                                                  for name in settings], diff={}, pending_restart=[])
        if self.postmaster() is None:
            raise OperationError("the server of %s is not running" % self.spec.data_dir,
                                 "start it (fleetdb.online_upgrade.server state=started): ALTER SYSTEM needs it")
        session = self.connect()
        try:
            return pg_alter_system.alter_system(self.module, session, settings, at_least)
        finally:
            session.close()

    def databases(self):
        session = self.connect()
        try:
            return [row[0] for row in session.query(DATABASES_SQL).rows]
        finally:
            session.close()

    def connect(self, dbname=None, port=None):
        info = self.postmaster()
        return pg_connect(self.spec, dbname=dbname, port=port or (info["port"] if info else None))
