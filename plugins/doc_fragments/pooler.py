# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pooler option: PgBouncer in front of the old server.  Matches ``core.args.pooler_options()``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  pooler:
    description:
      - PgBouncer that clients connect through, on this host or another one. Its admin console must be reachable
        from the database host. Omit it when clients connect to the server directly.
      - The cutover PAUSEs its databases that lead to the upgraded ones on the production port before the fence and
        RESUMEs them once the new server is ready, so that clients wait instead of seeing errors. Every failure
        path RESUMEs; a guardian process RESUMEs if the module itself dies.
    type: dict
    suboptions:
      type:
        description:
          - The pooler. Only C(pgbouncer).
        type: str
        default: pgbouncer
        choices: [pgbouncer]
      host:
        description:
          - Address of PgBouncer as the database host reaches it, or the directory of its Unix socket.
        type: str
        default: 127.0.0.1
      port:
        description:
          - Port PgBouncer listens on.
        type: int
        default: 6432
      admin_user:
        description:
          - A user listed in PgBouncer's C(admin_users).
        type: str
        default: pgbouncer
      admin_password:
        description:
          - That user's password (never logged).
        type: str
      pause_timeout:
        description:
          - Seconds PAUSE may wait for the transactions in flight to end. Past it, PgBouncer is RESUMEd, the
            cutover is abandoned before the fence, and the old server keeps serving.
        type: float
        default: 10
      databases:
        description:
          - PgBouncer's database names to PAUSE. Default, every entry of its C([databases]) section that leads to
            an upgraded database on the production port.
        type: list
        elements: str
      sslmode:
        description:
          - TLS to the admin console over TCP, as libpq's C(sslmode) (a Unix socket never uses TLS).
            C(prefer) uses TLS when PgBouncer offers it, without checking its certificate; C(require) refuses a
            PgBouncer without TLS; C(verify-full) also checks the certificate against C(sslrootcert) (or the
            system's trusted CAs) and the host name against it.
        type: str
        default: prefer
        choices: [disable, prefer, require, verify-full]
      sslrootcert:
        description:
          - CA certificates (PEM file on the database host) that PgBouncer's certificate must chain to.
        type: path
"""
