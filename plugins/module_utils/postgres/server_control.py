# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The commands that start and stop a server and read its configuration: the one place that runs pg_ctl.

``start`` waits (``pg_ctl -w``) or returns at once for callers that poll postmaster.pid themselves (the
cutover).  The log goes to ``spec.log_file``, by default ``log/server.log`` in the data directory; a
configuration kept outside the data directory is named by ``-c config_file=`` on every command line.
A reload is the signal pg_ctl reload sends (SIGHUP), so that it also works where no module runs (the fence's
guardian).  The service managers (pg_service) start a server through these commands or their unit's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import subprocess

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, ensure_directory, read_text, run_as)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import (
    archiving, cron as pg_cron, extensions as pg_extensions)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import signal_postmaster


def log_file(spec):
    """Where the server of ``spec`` writes its log (its stderr)."""
    return spec.log_file or os.path.join(spec.data_dir, "log", "server.log")


def log_tail(path, lines=15):
    text = read_text(path) if path else None
    if not text:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def config_options(spec):
    """What postgres and pg_ctl need to read a configuration kept outside the data directory."""
    return ["-c", "config_file=%s" % spec.config_file] if spec.config_file else []


def reload(data_dir):
    """Make the running server of ``data_dir`` read its configuration files again; False when none runs."""
    return signal_postmaster(data_dir, signal.SIGHUP) is not None


def unit_commands(spec):
    """The ExecStart, ExecStop and ExecReload command lines of a systemd unit for ``spec``."""
    pg_ctl = os.path.join(spec.bin_dir, "pg_ctl")
    options = ' -o "%s"' % " ".join(config_options(spec)) if spec.config_file else ""
    return dict(start="%s start -D %s -s -w -t 300 -l %s%s" % (pg_ctl, spec.data_dir, log_file(spec), options),
                stop="%s stop -D %s -s -m fast" % (pg_ctl, spec.data_dir),
                reload="%s reload -D %s -s" % (pg_ctl, spec.data_dir))


def start_debian_cluster(version, cluster):
    """Start a postgresql-common cluster where no systemd runs; return at once (pg_ctlcluster waits long after
    the server is ready: the caller polls postmaster.pid)."""
    subprocess.Popen(["pg_ctlcluster", version, cluster, "start"], env=dict(os.environ, LC_ALL="C"), cwd="/",
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


class ServerControl:
    """pg_ctl and postgres -C for the instance ``spec``, run as its owner."""

    def __init__(self, module, spec):
        self.module = module
        self.spec = spec

    @property
    def log_file(self):
        return log_file(self.spec)

    def _run(self, argv, **kwargs):
        # cwd=/ : the owner may not be allowed into the module's working directory (root's home).
        return run_as(self.module, self.spec.owner, argv, cwd="/", **kwargs)

    def _pg_ctl(self, *args):
        return self._run([os.path.join(self.spec.bin_dir, "pg_ctl")] + list(args) + ["-D", self.spec.data_dir])

    def postgres_c(self, name, settings=None):
        """(rc, out, err) of ``postgres -C name``: a setting's value as the configuration files (and ``settings``,
        checked like the files' values) make it."""
        argv = [os.path.join(self.spec.bin_dir, "postgres"), "-C", name, "-D", self.spec.data_dir]
        argv += config_options(self.spec)
        for setting, value in (settings or {}).items():
            argv += ["-c", "%s=%s" % (setting, value)]
        return self._run(argv, environ_update={"LC_ALL": "C"})

    def ensure_log_dir(self):
        ensure_directory(self.module, os.path.dirname(self.log_file), owner=self.spec.owner, mode=0o700)

    def start(self, port=None, timeout=None):
        """Start the server, on ``port`` (given on the command line, leaving the configured one as it is: a temporary
        port, where no pg_cron job runs and nothing is archived) or the configured one; with ``timeout``, wait that long for pg_ctl to see it
        up, else return at once."""
        self.ensure_log_dir()
        options = config_options(self.spec)
        if port:
            extension_dir = pg_extensions.release_dirs(self.module, self.spec.bin_dir)[0]
            cron_version = (pg_extensions.available(extension_dir).get("pg_cron") or (None,))[0]
            options += ["-p", str(port)] + pg_cron.temporary_port_options(cron_version) + archiving.TEMPORARY_PORT_OPTIONS
        wait = ["-w", "-t", str(int(timeout))] if timeout else ["--no-wait"]
        argv = ["start", "-l", self.log_file] + wait + (["-o", " ".join(options)] if options else [])
        rc, out, err = self._pg_ctl(*argv)
        if rc != 0:
            raise OperationError("the server of %s did not start on %s: %s\nlast lines of %s:\n%s"
                                 % (self.spec.data_dir, "port %d" % port if port else "its configured port",
                                    (err or out).strip(), self.log_file, log_tail(self.log_file)),
                                 "correct the cause named in the log and start again")

    def stop(self, mode, timeout):
        """pg_ctl stop in ``mode``, waiting ``timeout`` seconds; (rc, output)."""
        rc, out, err = self._pg_ctl("stop", "-m", mode, "-w", "-t", str(int(timeout)))
        return rc, (err or out).strip()
