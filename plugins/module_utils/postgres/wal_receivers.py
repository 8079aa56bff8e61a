# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streaming WAL receivers: ``pg_receivewal`` and barman's streaming archiver (``barman receive-wal``, which runs
pg_receivewal with application_name barman_receive_wal), told from standbys by their application_name.

They stream the old server's WAL, usually from a physical slot, which does not move to the new server.  The
cutover creates a physical slot of the same name on the new server, reserving WAL, before the new server takes
clients: the receiver, started again against the new server, resumes from it.  Into a new directory: the new
cluster's WAL begins again on timeline 1, with segment names the old directory may already hold.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.slots import create_reserving_slot

# application_name -> the tool
TOOLS = {"pg_receivewal": "pg_receivewal", "barman_receive_wal": "barman"}

# The receivers streaming now, with the physical slot each one streams from ('' for none).
RECEIVERS_SQL = """
SELECT r.application_name, coalesce(host(r.client_addr), 'local'), coalesce(s.slot_name, '')
  FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid AND s.slot_type = 'physical'
 WHERE r.application_name IN (%s) ORDER BY 3, 1, 2
""" % ", ".join("'%s'" % name for name in sorted(TOOLS))


def receivers(senders):
    """The senders (dicts application_name, client_addr, slot ...) that are WAL receivers, not standbys."""
    return [s for s in senders if s["application_name"] in TOOLS]


def streaming(session):
    """The WAL receivers streaming from the server of ``session``: dicts application_name, client_addr, slot."""
    return [dict(zip(("application_name", "client_addr", "slot"), row))
            for row in session.query(RECEIVERS_SQL).rows]


def give_slots(session, found):
    """A physical slot reserving WAL on the server of ``session`` for each receiver of ``found`` that streams
    from one (a slot of that name an interrupted run made is made again)."""
    for slot in sorted(set(r["slot"] for r in found if r["slot"])):
        create_reserving_slot(session, slot)


def what_next(receiver, port):
    """What the user must do with ``receiver`` once the new server serves ``port``: commands to run."""
    slot = receiver["slot"]
    where = "%s (from %s%s)" % (receiver["application_name"], receiver["client_addr"],
                                ", slot " + slot if slot else ", no slot")
    if TOOLS[receiver["application_name"]] == "barman":
        return ("%s: barman's streaming archiver loses the old server at the cutover; the new server is another "
                "PostgreSQL system to barman (new system identifier, WAL from timeline 1 again), so once it serves "
                "port %d: barman receive-wal --stop <server>; barman receive-wal --reset <server>; barman cron; "
                "barman switch-wal --force --archive <server>; barman backup <server>; barman check <server> "
                "(<server>: the barman server section of this database)" % (where, port))
    return ("%s: pg_receivewal loses the old server at the cutover; once the new server serves port %d, stop it "
            "and start it again into a new, empty directory (the new server's WAL starts again on timeline 1, "
            "with segment names the old directory may hold): pg_receivewal -h <this server> -p %d%s -D <a new "
            "directory>" % (where, port, port, " -S " + slot if slot else ""))
