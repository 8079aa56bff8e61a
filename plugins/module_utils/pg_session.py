# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Administrative sessions to a local PostgreSQL instance."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.common import OperationError, effective_user


def connect(spec, dbname=None, port=None, timeout=10, application_name="fleetdb.online_upgrade"):
    """Open a session on the instance's Unix socket as ``spec.login_user``.

    When the module runs as root, the socket is opened with the owner's uid so
    that the default ``peer`` authentication of a fresh instance accepts it.
    """
    kwargs = dict(host=spec.socket_dir, port=port or spec.port, user=spec.login_user or spec.owner,
                  dbname=dbname or spec.dbname or "postgres", password=spec.login_password,
                  application_name=application_name)
    deadline = time.monotonic() + timeout
    try:
        with effective_user(spec.owner):
            return pgwire.connect_retry(deadline, **kwargs)
    except pgwire.PgConnectError as exc:
        raise OperationError(
            "cannot connect to the %s server on port %s (socket directory %s) as %s: %s"
            % ("local", kwargs["port"], spec.socket_dir, kwargs["user"], exc),
            "check that the server runs (fleetdb.online_upgrade.server state=started) and that "
            "pg_hba.conf lets %s in on the local socket" % kwargs["user"])
