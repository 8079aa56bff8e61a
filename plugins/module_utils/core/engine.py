# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine interface: what the modules and roles may ask of a database product.

The interface follows the online-upgrade procedure (install the new release
beside the old one, migrate, replicate, fence clients, stop the old server,
drain, start the new one on the same port).  Modules depend only on these
classes; ``engines.get_engine('postgresql')`` returns the PostgreSQL implementation and
a TimesTen engine (ttMigrate, ttRepAdmin, ttDaemonAdmin) is added by
implementing these classes and registering it in ``engines.py``.

Every method that changes something takes ``check_mode`` into account through
the module it is given, and reports what it did (or would do) in a dict.
Failures the operator can act on raise ``common.OperationError``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class InstanceSpec:
    """Where an instance lives and how it is reached on its host."""

    def __init__(self, data_dir, bin_dir, owner="postgres", port=None, socket_dir=None,
                 log_file=None, login_user=None, login_password=None, dbname=None, config_file=None,
                 service=None, socket_directories=None):
        self.data_dir = data_dir
        self.bin_dir = bin_dir
        self.owner = owner
        self.port = port
        self.socket_dir = socket_dir    # where this collection's own sessions connect
        # Every directory the server serves its Unix socket in (None: socket_dir alone); clients may use any.
        self.socket_directories = socket_directories
        self.log_file = log_file
        self.login_user = login_user
        self.login_password = login_password
        self.dbname = dbname
        self.config_file = config_file  # None: in the data directory
        self.service = service or {}    # who runs it: dict(kind=pg_ctl|systemd|debian, unit, version, cluster)


class Installer:
    """Step 1: put a release's binaries on the host, side by side with others."""

    def probe(self, bin_dir):
        """dict(version, major, bin_dir) of the binaries in ``bin_dir``, or None."""
        raise NotImplementedError

    def install_archive(self, module, archive, checksum, prefix, version):
        """Unpack a binary distribution into its own directory (the TimesTen way)."""
        raise NotImplementedError

    def install_package(self, module, version):
        """Install the release from the operating system's package manager."""
        raise NotImplementedError

    def release_bin_dir(self, method, version, prefix=None):
        """Where ``method`` puts the release's binaries, known before it is installed."""
        raise NotImplementedError

    def check_provides(self, bin_dir, major, required):
        """Fail (OperationError) when the release lacks an extension or library the databases use."""
        raise NotImplementedError

    def remove(self, module, version, bin_dir):
        """Remove the release whose binaries are in ``bin_dir``; files a package owns are left to its manager."""
        raise NotImplementedError


class Instance:
    """One server instance: a data directory served by one release's binaries."""

    def __init__(self, module, spec):
        self.module = module
        self.spec = spec

    def facts(self):
        """dict(exists, major, configured_port, running, pid, port, accepting)."""
        raise NotImplementedError

    def create(self, data_checksums=None, locale=None):
        """Initialise the data directory with ``locale`` (dict: encoding, locale, lc_collate, lc_ctype, provider,
        provider_locale); never touch one of another major version."""
        raise NotImplementedError

    def configure(self, settings):
        """Apply settings; returns dict(changed, diff, restart_required, pending)."""
        raise NotImplementedError

    def set_port(self, port):
        """Change the configured port without starting the server."""
        raise NotImplementedError

    def alter_system(self, settings, at_least=False):
        """Settings of the running server, the way its own configuration keeps them last (with ``at_least``,
        numbers only raised).  Returns dict(changed, statements, diff, pending_restart)."""
        raise NotImplementedError

    def restart(self, port=None, mode="fast", timeout=60):
        """Stop and start the server through its service manager."""
        raise NotImplementedError

    def databases(self):
        """The databases clients may connect to."""
        raise NotImplementedError

    def start(self, port=None, timeout=60):
        """Start and wait until connections are accepted; ``port`` overrides the configured one."""
        raise NotImplementedError

    def stop(self, mode="fast", timeout=60):
        raise NotImplementedError

    def connect(self, dbname=None, port=None):
        """An administrative session (a ``pgwire.Connection``-like object)."""
        raise NotImplementedError


class Migrator:
    """Steps 2 and 6 of the seed: ttMigrate -c / -r, -l / -d."""

    def create(self, path, objects=None, schema_only=False):
        """Save the instance's database (or ``objects``) into the data file ``path``."""
        raise NotImplementedError

    def restore(self, path, sections=None):
        """Restore ``path`` into the instance; records the upgrade (Record of Upgrades)."""
        raise NotImplementedError

    def list(self, path):
        raise NotImplementedError

    def describe(self, path):
        raise NotImplementedError


class Replication:
    """Step 2 and 5: keep the new copy in step with the old one (ttRepAdmin)."""

    def ensure(self, state):
        """state: present, absent, paused, started or synced."""
        raise NotImplementedError

    def status(self):
        """dict(state, tables_total, tables_ready, lag_bytes, lag_seconds)."""
        raise NotImplementedError

    def compare(self, tables=None):
        """Per-table row count and hash of all rows on both sides."""
        raise NotImplementedError


class Switchover:
    """Steps 3 to 6 in one call: fence, final position, drain, sequences, stop old, start new."""

    def run(self):
        """dict(changed, phases={name: seconds}, window_seconds, ...)."""
        raise NotImplementedError


class Engine:
    """A database product: a factory for the pieces above."""

    name = None

    def installer(self, module):
        raise NotImplementedError

    def instance(self, module, spec):
        raise NotImplementedError

    def migrator(self, module, spec, tool_bin_dir=None):
        raise NotImplementedError

    def replication(self, module, source, target, dbname, **options):
        raise NotImplementedError

    def physical_copy(self, module, old, new, databases, **options):
        """The initial copy made from the old server's files (an object whose run() returns where replication
        starts): a base backup recovered to a replication point, then the new release's in-place upgrade."""
        raise NotImplementedError

    def preflight(self, module, old, **options):
        """Every check before an upgrade (an object whose run() returns problems, warnings and facts)."""
        raise NotImplementedError

    def switchover(self, module, old, new, databases, **options):
        """Steps 3 to 6 (a ``Switchover``)."""
        raise NotImplementedError

    def discover(self, module, port, **options):
        """The running instance of ``port`` as its host runs it (InstanceSpec fields and its service)."""
        raise NotImplementedError

    def progress(self, module, state_dir):
        """Where the upgrade of this host stands, as its runs recorded it in ``state_dir`` (a ``Progress``)."""
        raise NotImplementedError

    def new_instance_settings(self):
        """Settings the new instance needs for the upgrade, beneath the operator's own."""
        raise NotImplementedError


class Progress:
    """What an upgrade left on its host for the runs after it: its versions and the phase it reached."""

    def read(self, old_version, new_version, old_data_dir):
        """dict(phase, past_stop, another_upgrade, recorded, begins, finished, ...) for a run of these versions."""
        raise NotImplementedError

    def begin(self, old_version, new_version):
        """Record that the host is in the upgrade from ``old_version`` to ``new_version``; dict(changed)."""
        raise NotImplementedError

    def start_over(self):
        """Forget the cutovers of a rolled back upgrade, so that the next one starts afresh; dict(changed)."""
        raise NotImplementedError

    def set_aside(self):
        """Move a finished upgrade's records and work files into the history; dict(changed, history_dir)."""
        raise NotImplementedError

    def record(self, phase, **details):
        """Record a phase reached outside the cutover (done offline, rolled_back, finalized); dict(changed)."""
        raise NotImplementedError
