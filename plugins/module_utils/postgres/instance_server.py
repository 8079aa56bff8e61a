# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server process of an instance: start, stop, restart, status, and who holds its port.

Started on its own port through its service manager (pg_service), on another port as a bare process; the
commands are pg_server_control's.  Ready means a connection gets past the startup phase (pg_isready's meaning).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, effective_user, parse_version, port_holder, process_info, read_text)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.cluster_objects import DATABASES_SQL
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import (
    parse_postmaster_pid, process_alive)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.server_control import log_tail
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance_settings import InstanceSettings


class InstanceServer(InstanceSettings):
    """The server of an instance, as a DBA starts, stops and looks at it."""

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

    def wait_accepting(self, port, timeout):
        """Wait until a connection on ``port`` gets past the startup phase (pg_isready's meaning of ready)."""
        if not self.accepting(port, timeout):
            raise OperationError("the server of %s runs but did not accept connections on port %d within %d s\n"
                                 "last lines of %s:\n%s" % (self.spec.data_dir, port, timeout, self.log_file,
                                                            log_tail(self.log_file)),
                                 "look for recovery still in progress in the log, or raise timeout")

    # -- the port -------------------------------------------------------------------

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

    def _check_port_free(self, port):
        holder = self.port_user(port)
        if holder and not holder["this_instance"]:
            raise OperationError(
                "port %d is held by pid %s (%s, user %s); nothing was changed"
                % (port, holder["pid"] or "unknown", holder["cmdline"] or holder["command"] or "not visible",
                   holder["user"] or "unknown"),
                "stop that process or choose another port", holder=holder)

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

    def databases(self):
        session = self.connect()
        try:
            return [row[0] for row in session.query(DATABASES_SQL).rows]
        finally:
            session.close()
