# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Instance options nested in a dict option: old/new (cutover) and source/target (replication).

Use as ``fleetdb.online_upgrade.instances.old`` ... : each attribute documents one dict option.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

SUBOPTIONS = r"""
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
        description: Database role for administrative connections. Defaults to O({name}.owner), authenticated by peer.
        type: str
      login_password:
        description: Password of O({name}.login_user) when local connections need one. Never returned or logged.
        type: str
      dbname:
        description: Database for administrative connections.
        type: str
        default: postgres
"""


def _option(name, description):
    return "  %s:\n    description:\n      - %s\n    type: dict\n    required: true\n%s" % (
        name, description, SUBOPTIONS.replace("{name}", name))


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options: {}
"""

    OLD = "options:\n" + _option(
        "old", "The old instance, running and serving clients on the production port.")

    NEW = "options:\n" + _option(
        "new", "The new instance, running on its temporary port for a cutover and configured for the production port.")

    SOURCE = "options:\n" + _option(
        "source", "The instance whose data is replicated (the old release, running).")

    TARGET = "options:\n" + _option(
        "target", "The instance that receives the data (the new release, running on its temporary port).")
