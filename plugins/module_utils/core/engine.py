# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine interface: what the modules may ask of a database product.

The interface follows the online-upgrade procedure (install the new release
beside the old one, migrate, replicate, fence clients, stop the old server,
drain, start the new one on the same port).  Modules depend only on these
classes and on ``core``; ``engines.get_engine('postgresql')`` returns the PostgreSQL
implementation, and another product (a TimesTen engine: ttMigrate, ttRepAdmin,
ttDaemonAdmin) is added by implementing these classes and registering it in ``engines.py``.
Each class declares exactly what some module calls on it.

Every method that changes something takes ``check_mode`` into account through
the module it is given, and reports what it did (or would do) in a dict.
Failures the operator can act on raise ``common.OperationError``; errors the
database reports raise a ``common.DatabaseError``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from abc import ABC, abstractmethod


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


class Installer(ABC):
    """Put a release's binaries on the host, side by side with others."""

    @abstractmethod
    def probe(self, bin_dir):
        """dict(version, major, bin_dir) of the binaries in ``bin_dir``, or None."""

    @abstractmethod
    def install_archive(self, module, archive, checksum, prefix, version):
        """Unpack a binary distribution into its own directory."""

    @abstractmethod
    def install_package(self, module, version, update_cache=False):
        """Install the release from the operating system's package manager."""

    @abstractmethod
    def release_bin_dir(self, method, version, prefix=None):
        """Where ``method`` puts the release's binaries, known before it is installed."""

    @abstractmethod
    def check_provides(self, bin_dir, major, required):
        """Fail (OperationError) when the release lacks an extension or library the databases use."""

    @abstractmethod
    def remove(self, module, version, bin_dir):
        """Remove the release whose binaries are in ``bin_dir``; files a package owns are left to its manager."""


class Instance(ABC):
    """One server instance: a data directory served by one release's binaries."""

    def __init__(self, module, spec):
        self.module = module
        self.spec = spec

    @abstractmethod
    def binaries_version(self):
        """The full version of the instance's release binaries (text)."""

    @abstractmethod
    def binaries_major(self):
        """The major version of the instance's release binaries (text)."""

    @abstractmethod
    def status(self):
        """What a DBA looks at first: dict(data_dir, major, running, pid, port, accepting, version, configured_port)."""

    @abstractmethod
    def postmaster(self):
        """dict(pid, port, ...) of the running server, or None when it is stopped."""

    @abstractmethod
    def configured_port(self):
        """The port the configuration gives the server, or None when it does not load."""

    @abstractmethod
    def port_user(self, port):
        """Who listens on ``port`` (dict(pid, command, cmdline, user, this_instance)), or None."""

    @abstractmethod
    def create(self, data_checksums=None, locale=None):
        """Initialise the data directory with ``locale`` (dict); returns dict(created, data_checksums)."""

    @abstractmethod
    def remove(self):
        """Remove the stopped instance's data directory and what it alone uses; returns dict(changed, ...)."""

    @abstractmethod
    def ensure_socket_dir(self):
        """Create the directories the server puts its sockets in; True when one was created."""

    @abstractmethod
    def desired_settings(self, settings, inherited=None):
        """Fail (OperationError) on a setting this release does not know or cannot load; the settings to write."""

    @abstractmethod
    def read_hba(self):
        """The instance's client authentication rules (text)."""

    @abstractmethod
    def read_ident(self):
        """The instance's user name maps (text)."""

    @abstractmethod
    def carry_ssl_files(self, old, settings):
        """Copy the certificate files ``settings`` of the instance ``old`` name; returns (settings, files copied)."""

    @abstractmethod
    def configure(self, settings, inherited=None, hba_content=None, ident_content=None):
        """Write the configuration; dict(changed, diff, port, settings, restart_required, pending_restart, ...)."""

    @abstractmethod
    def set_port(self, port):
        """Configure the port without starting the server; dict(changed, diff, configured_port, ...)."""

    @abstractmethod
    def alter_system(self, settings, at_least=False, record=None):
        """Settings of the running server kept the way it keeps them last; dict(changed, statements, diff, pending_restart)."""

    @abstractmethod
    def give_back_settings(self, record):
        """The settings as they were before ``alter_system`` with ``record``; the same dict."""

    @abstractmethod
    def databases(self):
        """The names of the databases clients may connect to."""

    @abstractmethod
    def start(self, port=None, timeout=60):
        """Start and wait until connections are accepted; ``port`` overrides the configured one."""

    @abstractmethod
    def stop(self, mode="fast", timeout=60):
        """Stop the server and wait until it is gone."""

    @abstractmethod
    def restart(self, port=None, mode="fast", timeout=60):
        """Stop and start the server through its service manager."""

    @abstractmethod
    def reload(self):
        """Make the running server read its configuration again; False when it is not running."""


class Migrator(ABC):
    """Save databases into a file and restore them into another instance."""

    @abstractmethod
    def create(self, path, objects=None, schema_only=False, dbname=None, with_globals=True, role_passwords=False):
        """Save the instance's database (or ``objects``) into the file ``path``."""

    @abstractmethod
    def restore(self, path, sections=None, jobs=1, create_database=True, dbname=None, record=True,
                maintenance_work_mem_mb=None):
        """Restore ``path`` into the instance; records the upgrade (Record of Upgrades)."""

    @abstractmethod
    def list(self, path):
        """The table of contents of ``path``."""

    @abstractmethod
    def describe(self, path):
        """dict(size_bytes, sha256, ...) of ``path``."""


class Replication(ABC):
    """Keep the new instance in step with the old one; ``result`` holds what was done (dict with ``actions``)."""

    @abstractmethod
    def ensure(self, state):
        """Bring replication to ``state`` (present, absent, paused, started, synced, published, role_absent)."""

    @abstractmethod
    def compare(self, tables=None):
        """Per table, the row count and a hash of all rows on both sides."""

    @abstractmethod
    def close(self):
        """Close the sessions it opened."""


class PhysicalCopy(ABC):
    """The initial copy made from the old server's files; ``timer.timings`` holds seconds per phase."""

    @abstractmethod
    def run(self):
        """Make the copy; dict(changed, start_lsn, slots, phases, ...): where replication starts."""


class Preflight(ABC):
    """Every check before an upgrade."""

    @abstractmethod
    def run(self):
        """dict(problems, warnings, facts, ...); changes nothing."""


class Standby(ABC):
    """A standby host's new standby, made from its primary's new instance before the cutover."""

    @abstractmethod
    def run(self):
        """Make it and start it on its temporary port; dict(changed, made, started, receiver, ...)."""


class StandbySwitch(ABC):
    """A standby host's switch to its new standby, after the primary's cutover."""

    @abstractmethod
    def run(self):
        """Old standby stopped, new one on the production port; dict(changed, actions, read_pause_seconds, ...)."""


class Switchover(ABC):
    """Fence, final position, drain, sequences, stop old, start new; ``report`` holds what was reached."""

    @abstractmethod
    def run(self):
        """dict(changed, phases={name: seconds}, window_seconds, ...)."""

    @abstractmethod
    def unfence(self):
        """Lift the fence an interrupted cutover left on the old server; dict(changed, ...)."""

    @abstractmethod
    def back_up(self):
        """After the cutover, the backup of the new server its backup tool needs (it grows with the data, so never
        inside the cutover's call); dict(changed, msg, ...)."""


class Engine(ABC):
    """A database product: a factory for the pieces above, and what the modules ask of the product itself."""

    name = None

    @abstractmethod
    def installer(self, module):
        """An ``Installer``."""

    @abstractmethod
    def instance(self, module, spec):
        """The ``Instance`` that ``spec`` (an ``InstanceSpec``) locates."""

    @abstractmethod
    def inventory(self, module, spec):
        """What an instance is: its ``Instance.status()`` and, when it accepts connections, version, databases,
        subscriptions and slots."""

    @abstractmethod
    def migrator(self, module, spec, tool_bin_dir=None):
        """A ``Migrator`` for the instance, with the tools of ``tool_bin_dir``."""

    @abstractmethod
    def replication(self, module, source, target, dbname, **options):
        """A ``Replication`` from ``source`` to ``target``."""

    @abstractmethod
    def max_rate_problem(self, rate):
        """Why ``rate`` is no rate the physical copy can be limited to, or None."""

    @abstractmethod
    def physical_copy(self, module, old, new, databases, **options):
        """A ``PhysicalCopy`` of ``old`` into ``new``."""

    @abstractmethod
    def preflight(self, module, old, **options):
        """A ``Preflight`` of an upgrade of ``old``."""

    @abstractmethod
    def standby(self, module, new, **options):
        """A ``Standby``."""

    @abstractmethod
    def standby_switch(self, module, old, new, **options):
        """A ``StandbySwitch`` from the old standby ``old`` to the new one ``new``."""

    @abstractmethod
    def switchover(self, module, old, new, databases, **options):
        """A ``Switchover`` from ``old`` to ``new``."""

    @abstractmethod
    def pooler(self, params):
        """The connection pooler the module option ``pooler`` describes, or None without one."""

    @abstractmethod
    def discover(self, module, port, **options):
        """The running instance of ``port`` as its host runs it (InstanceSpec fields and its service)."""

    @abstractmethod
    def plan_new(self, old, new_major, prefix=None):
        """Where the new release's instance goes beside ``old`` (a result of ``discover``)."""

    @abstractmethod
    def progress(self, module, state_dir):
        """Where the upgrade of this host stands, as its runs recorded it in ``state_dir`` (a ``Progress``)."""

    @abstractmethod
    def new_instance_settings(self):
        """Settings the new instance needs for the upgrade, beneath the operator's own."""


class Progress(ABC):
    """What an upgrade left on its host for the runs after it: its versions and the phase it reached."""

    @abstractmethod
    def read(self, old_version, new_version, old_data_dir, port=None):
        """dict(phase, past_stop, another_upgrade, other_server, recorded, finished, ...) for a run of these
        versions of the server in ``old_data_dir`` on ``port``."""

    @abstractmethod
    def begin(self, old_version, new_version, port=None, old_data_dir=None):
        """Record that the host is in the upgrade from ``old_version`` to ``new_version`` of the server in
        ``old_data_dir`` on ``port``; dict(changed)."""

    @abstractmethod
    def start_over(self):
        """Forget the cutovers of a rolled back upgrade, so that the next one starts afresh; dict(changed)."""

    @abstractmethod
    def set_aside(self):
        """Move a finished upgrade's records and work files into the history; dict(changed, history_dir)."""

    @abstractmethod
    def record(self, phase, **details):
        """Record a phase reached outside the cutover (done offline, rolled_back, finalized); dict(changed)."""
