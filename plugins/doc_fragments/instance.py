# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options that locate one instance on its host (``core.args.instance_options()``), written once.

``fleetdb.online_upgrade.instance`` documents them as a module's own options; ``fleetdb.online_upgrade.instance.old``
(``new``, ``new_stopped``, ``source``, ``target``, ``instance_list``) as the suboptions of one dict option.
The fragments are made from INSTANCE_OPTIONS below the class: ansible-test's yamllint takes every assignment in
the class body for a string literal.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# {at}: where a reference to a sibling option points (O({at}owner)); indented for the options of a module.
INSTANCE_OPTIONS = r"""
  data_dir:
    description:
      - Data directory of the instance (PostgreSQL C(PGDATA)).
    type: path
    required: true
  bin_dir:
    description:
      - Directory holding the server binaries of the instance's release, as returned by M(fleetdb.online_upgrade.install).
    type: path
    required: true
  owner:
    description:
      - Operating system user that owns the data directory and runs the server.
      - When the module runs as root it acts as this user for server commands and local connections.
    type: str
    default: postgres
  port:
    description:
      - Port the instance listens on (or is configured to listen on).
    type: int
    default: 5432
  socket_dir:
    description:
      - Directory of the server's Unix-domain socket, used for local administrative connections.
    type: path
    default: /var/run/postgresql
  login_user:
    description:
      - Database role for administrative connections. Defaults to O({at}owner), authenticated by peer.
    type: str
  login_password:
    description:
      - Password of O({at}login_user) when local connections need one. Never returned or logged.
    type: str
  dbname:
    description:
      - Database for administrative connections.
    type: str
    default: postgres
  config_file:
    description:
      - The instance's C(postgresql.conf) when it is not in the data directory (Debian keeps it in
        C(/etc/postgresql/<version>/<cluster>)). Its C(hba_file) and C(ident_file) settings say where the
        client authentication files are.
    type: path
  service:
    description:
      - Who runs the server and brings it back at boot, as M(fleetdb.online_upgrade.discover) reports it.
    type: dict
    suboptions:
      kind:
        description:
          - C(pg_ctl) a bare postmaster; C(systemd) a unit of its own; C(debian) a postgresql-common cluster
            (start.conf, C(postgresql@<version>-<cluster>)).
        type: str
        default: pg_ctl
        choices: [pg_ctl, systemd, debian]
      unit:
        description:
          - The systemd unit (C(systemd)); for C(debian) it defaults to C(postgresql@<version>-<cluster>.service).
        type: str
      version:
        description:
          - The postgresql-common version directory (C(debian)).
        type: str
      cluster:
        description:
          - The postgresql-common cluster name (C(debian)).
        type: str
"""


def nested(option, description, kind="type: dict\n    required: true", at=None):
    """The dict option ``option`` whose suboptions are the instance options."""
    suboptions = INSTANCE_OPTIONS.format(at=at or option + ".").replace("\n  ", "\n      ")
    lines = "".join("\n      - " + line for line in description)
    return "\noptions:\n  %s:\n    description:%s\n    %s\n    suboptions:%s" % (option, lines, kind, suboptions)


class ModuleDocFragment(object):
    """Its fragments are set below, from INSTANCE_OPTIONS."""


ModuleDocFragment.DOCUMENTATION = "\noptions:" + INSTANCE_OPTIONS.format(at="")
ModuleDocFragment.OLD = nested("old", ["The old instance, running and serving clients on the production port."])
ModuleDocFragment.NEW = nested("new", [
    "The new instance, running on its temporary port for a cutover and configured for the production port.",
    "Required unless the module is told only to lift a fence (O(state=unfenced)).",
], kind="type: dict")
# A standby host's new instance as the module standby makes it.
ModuleDocFragment.NEW_STANDBY = nested("new", [
    "The standby's new instance - its release installed, its data directory absent or empty until the copy; its port",
    "is the production port it is configured for."])
# The new instance as the physical copy takes it: created, stopped, its port the temporary one.
ModuleDocFragment.NEW_STOPPED = nested("new", [
    "The new instance, created and stopped; its port is the temporary one it is started on afterwards.",
    "Required.",
], kind="type: dict")
ModuleDocFragment.SOURCE = nested("source", ["The instance whose data is replicated (the old release, running)."])
ModuleDocFragment.TARGET = nested("target", [
    "The instance that receives the data (the new release, running on its temporary port)."])
ModuleDocFragment.INSTANCE_LIST = nested("instances", [
    "Instances to report on, each located by the instance options below.",
], kind="type: list\n    elements: dict\n    default: []", at="instances[].")
# A standby host's two instances at its own switch (the module standby_switchover).
ModuleDocFragment.OLD_STANDBY = nested("old", ["The old standby, serving reads on the production port until the switch."])
ModuleDocFragment.MADE_STANDBY = nested("new", [
    "The new standby as the module M(fleetdb.online_upgrade.standby) made it (running on its temporary port); its",
    "port is the production port it takes."])
