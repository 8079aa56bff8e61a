# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  engine:
    description:
      - The database engine. Only C(postgresql) is implemented.
    type: str
    default: postgresql
    choices: [postgresql]
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
      - Database role for administrative connections. Defaults to O(owner), authenticated by peer.
    type: str
  login_password:
    description:
      - Password of O(login_user) when local connections need one. Never returned or logged.
    type: str
  dbname:
    description:
      - Database to connect to.
    type: str
    default: postgres
  config_file:
    description:
      - The instance's C(postgresql.conf) when it is not in O(data_dir) (Debian keeps it in
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
