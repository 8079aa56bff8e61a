# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Instance options nested in a dict option: old/new (cutover) and source/target (replication).

Use as ``fleetdb.online_upgrade.instances.old`` and so on; each attribute documents one dict option.
The suboptions repeat on purpose: ansible-test wants every fragment as a plain string literal.
They match ``module_utils.args.instance_suboptions()``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options: {}
"""

    OLD = r"""
options:
  old:
    description:
      - The old instance, running and serving clients on the production port.
    type: dict
    required: true

    suboptions:
      data_dir:
        description: Data directory of the instance.
        type: path
        required: true
      bin_dir:
        description: Directory of the instance's release binaries, as returned by M(fleetdb.online_upgrade.install).
        type: path
        required: true
      owner:
        description: Operating system user that owns the data directory and runs the server.
        type: str
        default: postgres
      port:
        description: Port the instance listens on now.
        type: int
        default: 5432
      socket_dir:
        description: Directory of the server's Unix-domain socket, used for local administrative connections.
        type: path
        default: /var/run/postgresql
      login_user:
        description: Database role for administrative connections. Defaults to O(old.owner), authenticated by peer.
        type: str
      login_password:
        description: Password of O(old.login_user) when local connections need one. Never returned or logged.
        type: str
      dbname:
        description: Database for administrative connections.
        type: str
        default: postgres
      config_file:
        description: The instance's postgresql.conf when it is not in the data directory (Debian keeps it in /etc/postgresql/<version>/<cluster>).
        type: path
      service:
        description: Who runs the server and brings it back at boot (M(fleetdb.online_upgrade.discover) reports it).
        type: dict
        suboptions:
          kind:
            description: C(pg_ctl), C(systemd) or C(debian).
            type: str
            default: pg_ctl
            choices: [pg_ctl, systemd, debian]
          unit:
            description: The systemd unit.
            type: str
          version:
            description: The postgresql-common version directory (C(debian)).
            type: str
          cluster:
            description: The postgresql-common cluster name (C(debian)).
            type: str
"""

    NEW = r"""
options:
  new:
    description:
      - The new instance, running on its temporary port for a cutover and configured for the production port.
      - Required unless the module is told only to lift a fence (O(state=unfenced)).
    type: dict

    suboptions:
      data_dir:
        description: Data directory of the instance.
        type: path
        required: true
      bin_dir:
        description: Directory of the instance's release binaries, as returned by M(fleetdb.online_upgrade.install).
        type: path
        required: true
      owner:
        description: Operating system user that owns the data directory and runs the server.
        type: str
        default: postgres
      port:
        description: Port the instance listens on now.
        type: int
        default: 5432
      socket_dir:
        description: Directory of the server's Unix-domain socket, used for local administrative connections.
        type: path
        default: /var/run/postgresql
      login_user:
        description: Database role for administrative connections. Defaults to O(new.owner), authenticated by peer.
        type: str
      login_password:
        description: Password of O(new.login_user) when local connections need one. Never returned or logged.
        type: str
      dbname:
        description: Database for administrative connections.
        type: str
        default: postgres
      config_file:
        description: The instance's postgresql.conf when it is not in the data directory (Debian keeps it in /etc/postgresql/<version>/<cluster>).
        type: path
      service:
        description: Who runs the server and brings it back at boot (M(fleetdb.online_upgrade.discover) reports it).
        type: dict
        suboptions:
          kind:
            description: C(pg_ctl), C(systemd) or C(debian).
            type: str
            default: pg_ctl
            choices: [pg_ctl, systemd, debian]
          unit:
            description: The systemd unit.
            type: str
          version:
            description: The postgresql-common version directory (C(debian)).
            type: str
          cluster:
            description: The postgresql-common cluster name (C(debian)).
            type: str
"""

    # The new instance as the physical copy takes it: created, stopped, its port the temporary one.
    NEW_STOPPED = r"""
options:
  new:
    description:
      - The new instance, created and stopped; its port is the temporary one it is started on afterwards.
      - Required.
    type: dict

    suboptions:
      data_dir:
        description: Data directory of the instance.
        type: path
        required: true
      bin_dir:
        description: Directory of the instance's release binaries, as returned by M(fleetdb.online_upgrade.install).
        type: path
        required: true
      owner:
        description: Operating system user that owns the data directory and runs the server.
        type: str
        default: postgres
      port:
        description: Port the instance listens on now.
        type: int
        default: 5432
      socket_dir:
        description: Directory of the server's Unix-domain socket, used for local administrative connections.
        type: path
        default: /var/run/postgresql
      login_user:
        description: Database role for administrative connections. Defaults to O(new.owner), authenticated by peer.
        type: str
      login_password:
        description: Password of O(new.login_user) when local connections need one. Never returned or logged.
        type: str
      dbname:
        description: Database for administrative connections.
        type: str
        default: postgres
      config_file:
        description: The instance's postgresql.conf when it is not in the data directory (Debian keeps it in /etc/postgresql/<version>/<cluster>).
        type: path
      service:
        description: Who runs the server and brings it back at boot (M(fleetdb.online_upgrade.discover) reports it).
        type: dict
        suboptions:
          kind:
            description: C(pg_ctl), C(systemd) or C(debian).
            type: str
            default: pg_ctl
            choices: [pg_ctl, systemd, debian]
          unit:
            description: The systemd unit.
            type: str
          version:
            description: The postgresql-common version directory (C(debian)).
            type: str
          cluster:
            description: The postgresql-common cluster name (C(debian)).
            type: str
"""

    SOURCE = r"""
options:
  source:
    description:
      - The instance whose data is replicated (the old release, running).
    type: dict
    required: true

    suboptions:
      data_dir:
        description: Data directory of the instance.
        type: path
        required: true
      bin_dir:
        description: Directory of the instance's release binaries, as returned by M(fleetdb.online_upgrade.install).
        type: path
        required: true
      owner:
        description: Operating system user that owns the data directory and runs the server.
        type: str
        default: postgres
      port:
        description: Port the instance listens on now.
        type: int
        default: 5432
      socket_dir:
        description: Directory of the server's Unix-domain socket, used for local administrative connections.
        type: path
        default: /var/run/postgresql
      login_user:
        description: Database role for administrative connections. Defaults to O(source.owner), authenticated by peer.
        type: str
      login_password:
        description: Password of O(source.login_user) when local connections need one. Never returned or logged.
        type: str
      dbname:
        description: Database for administrative connections.
        type: str
        default: postgres
      config_file:
        description: The instance's postgresql.conf when it is not in the data directory (Debian keeps it in /etc/postgresql/<version>/<cluster>).
        type: path
      service:
        description: Who runs the server and brings it back at boot (M(fleetdb.online_upgrade.discover) reports it).
        type: dict
        suboptions:
          kind:
            description: C(pg_ctl), C(systemd) or C(debian).
            type: str
            default: pg_ctl
            choices: [pg_ctl, systemd, debian]
          unit:
            description: The systemd unit.
            type: str
          version:
            description: The postgresql-common version directory (C(debian)).
            type: str
          cluster:
            description: The postgresql-common cluster name (C(debian)).
            type: str
"""

    TARGET = r"""
options:
  target:
    description:
      - The instance that receives the data (the new release, running on its temporary port).
    type: dict
    required: true

    suboptions:
      data_dir:
        description: Data directory of the instance.
        type: path
        required: true
      bin_dir:
        description: Directory of the instance's release binaries, as returned by M(fleetdb.online_upgrade.install).
        type: path
        required: true
      owner:
        description: Operating system user that owns the data directory and runs the server.
        type: str
        default: postgres
      port:
        description: Port the instance listens on now.
        type: int
        default: 5432
      socket_dir:
        description: Directory of the server's Unix-domain socket, used for local administrative connections.
        type: path
        default: /var/run/postgresql
      login_user:
        description: Database role for administrative connections. Defaults to O(target.owner), authenticated by peer.
        type: str
      login_password:
        description: Password of O(target.login_user) when local connections need one. Never returned or logged.
        type: str
      dbname:
        description: Database for administrative connections.
        type: str
        default: postgres
      config_file:
        description: The instance's postgresql.conf when it is not in the data directory (Debian keeps it in /etc/postgresql/<version>/<cluster>).
        type: path
      service:
        description: Who runs the server and brings it back at boot (M(fleetdb.online_upgrade.discover) reports it).
        type: dict
        suboptions:
          kind:
            description: C(pg_ctl), C(systemd) or C(debian).
            type: str
            default: pg_ctl
            choices: [pg_ctl, systemd, debian]
          unit:
            description: The systemd unit.
            type: str
          version:
            description: The postgresql-common version directory (C(debian)).
            type: str
          cluster:
            description: The postgresql-common cluster name (C(debian)).
            type: str
"""

    INSTANCE_LIST = r"""
options:
  instances:
    description:
      - Instances to report on, each located by the instance options below.
    type: list
    elements: dict
    default: []

    suboptions:
      data_dir:
        description: Data directory of the instance.
        type: path
        required: true
      bin_dir:
        description: Directory of the instance's release binaries, as returned by M(fleetdb.online_upgrade.install).
        type: path
        required: true
      owner:
        description: Operating system user that owns the data directory and runs the server.
        type: str
        default: postgres
      port:
        description: Port the instance listens on now.
        type: int
        default: 5432
      socket_dir:
        description: Directory of the server's Unix-domain socket, used for local administrative connections.
        type: path
        default: /var/run/postgresql
      login_user:
        description: Database role for administrative connections. Defaults to O(instances[].owner), authenticated by peer.
        type: str
      login_password:
        description: Password of O(instances[].login_user) when local connections need one. Never returned or logged.
        type: str
      dbname:
        description: Database for administrative connections.
        type: str
        default: postgres
      config_file:
        description: The instance's postgresql.conf when it is not in the data directory (Debian keeps it in /etc/postgresql/<version>/<cluster>).
        type: path
      service:
        description: Who runs the server and brings it back at boot (M(fleetdb.online_upgrade.discover) reports it).
        type: dict
        suboptions:
          kind:
            description: C(pg_ctl), C(systemd) or C(debian).
            type: str
            default: pg_ctl
            choices: [pg_ctl, systemd, debian]
          unit:
            description: The systemd unit.
            type: str
          version:
            description: The postgresql-common version directory (C(debian)).
            type: str
          cluster:
            description: The postgresql-common cluster name (C(debian)).
            type: str
"""
