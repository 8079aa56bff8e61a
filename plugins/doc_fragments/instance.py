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
"""
