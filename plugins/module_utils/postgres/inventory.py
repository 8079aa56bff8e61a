# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an instance is, for the info module: its state, and when it accepts connections, what it holds."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import record as pg_record
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance import PostgresInstance
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect

SUBSCRIPTIONS_SQL = """
SELECT s.subname AS name, s.subenabled::text AS enabled, s.subslotname AS slot, d.datname AS dbname,
       (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid) AS tables_total,
       (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate = 'r') AS tables_ready
  FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
 WHERE d.datname = current_database() ORDER BY 1
"""
SLOTS_SQL = """
SELECT slot_name AS name, plugin, database AS dbname, active, active_pid,
       pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(confirmed_flush_lsn, restart_lsn))::bigint AS lag_bytes
  FROM pg_replication_slots ORDER BY 1
"""


def inventory(module, spec):
    """data_dir, bin_dir and the instance's facts; when it accepts connections, its version, slots, databases
    (with their record sets) and subscriptions."""
    facts = dict(data_dir=spec.data_dir, bin_dir=spec.bin_dir)
    facts.update(PostgresInstance(module, spec).facts())
    if not facts.get("accepting"):
        return facts
    session = connect(spec, dbname="postgres", port=facts["port"])
    try:
        facts["version"] = session.scalar("SHOW server_version")
        facts["slots"] = session.rows(SLOTS_SQL)
        names = [r[0] for r in session.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1").rows]
    finally:
        session.close()
    facts["databases"] = []
    facts["subscriptions"] = []
    for name in names:
        db = connect(spec, dbname=name, port=facts["port"])
        try:
            facts["databases"].append(dict(name=name, record=pg_record.list_sets(db)))
            facts["subscriptions"].extend(db.rows(SUBSCRIPTIONS_SQL))
        finally:
            db.close()
    return facts
