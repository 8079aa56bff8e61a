# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight of a primary's physical standbys: on the primary, the standbys it streams to matched to the hosts the
inventory names for them (``online_upgrade_primary: <primary>`` on each standby host); on each standby host, its
own checks (StandbyPreflight).  Nothing changes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import parse_version
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import Preflight
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_host import Findings, HostChecks
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_server import ServerChecks

# Physical senders only (a walsender of a logical slot has a database), with the slot each one streams from.
STANDBYS_SQL = """
SELECT coalesce(r.application_name, ''), coalesce(host(r.client_addr), 'local'), coalesce(r.sync_state, ''),
       coalesce(s.slot_name, '')
  FROM pg_stat_replication r JOIN pg_stat_activity a ON a.pid = r.pid
  LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid
 WHERE a.datname IS NULL ORDER BY 1, 2
"""

# Logical walsenders (a database) of another consumer: a subscriber elsewhere, with the slot it streams from.
LOGICAL_REPLICAS_SQL = """
SELECT coalesce(r.application_name, ''), coalesce(host(r.client_addr), 'local'), a.datname, coalesce(s.slot_name, '')
  FROM pg_stat_replication r JOIN pg_stat_activity a ON a.pid = r.pid
  LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid
 WHERE a.datname IS NOT NULL ORDER BY 1, 2
"""

DETACH_FIX = ("detach it before the upgrade and rebuild it from the new server afterwards (pg_basebackup -R from the "
              "new server on the production port)")


def addresses_of(name):
    """The IP addresses ``name`` resolves to on this host, or ``name`` itself (already an address, or unknown)."""
    try:
        return set(info[4][0] for info in socket.getaddrinfo(name, None)) | set([name])
    except (socket.gaierror, UnicodeError):
        return set([name])


def match_standbys(senders, standbys, resolve=addresses_of):
    """Each streaming standby (``senders``: dicts application_name, client_addr, sync_state, slot) matched to the
    inventory host that names it (``standbys``: dicts host, application_name, address): its application_name, or
    its address, is the host's.  Returns (matched, unnamed senders, inventory hosts that stream not)."""
    matched, unnamed, seen = [], [], set()
    for sender in senders:
        host = next((s for s in standbys if s["host"] not in seen and (
            sender["application_name"] == (s.get("application_name") or s["host"]) or
            sender["client_addr"] in resolve(s.get("address") or s["host"]))), None)
        if host is None:
            unnamed.append(sender)
            continue
        seen.add(host["host"])
        matched.append(dict(sender, host=host["host"]))
    return matched, unnamed, [s for s in standbys if s["host"] not in seen]


def senders(session):
    """The physical standbys streaming from the server of ``session`` (dicts as ``match_standbys`` takes them)."""
    return [dict(zip(("application_name", "client_addr", "sync_state", "slot"), row))
            for row in session.query(STANDBYS_SQL).rows]


def describe(sender):
    return "application_name %s from %s, %s%s" % (
        sender["application_name"] or "(none)", sender["client_addr"], sender["sync_state"] or "async",
        ", slot " + sender["slot"] if sender["slot"] else "")


class StandbyChecks:
    """The primary's part of PostgresPreflight: who streams from the old server, and which inventory host each is."""

    def _standbys(self, senders):
        """Lists the standbys the inventory names (their new instances are made before the cutover); refuses, by name
        and with what the inventory needs, the others.  The slots of named standbys are theirs, not another
        consumer's.  Returns those slots."""
        matched, unnamed, missing = match_standbys(senders, self.standbys)
        primary = self.inventory_host or "<this primary's inventory name>"
        self.facts["standbys"] = matched
        for sender in unnamed:
            self.findings.problem(
                "standbys", "a physical standby the inventory does not name streams from the old server (%s)"
                % describe(sender),
                "name its host in the inventory: online_upgrade_primary: %s in its host vars (it is matched by its "
                "application_name, else by its address: online_upgrade_standby_application_name, "
                "online_upgrade_standby_address), or %s" % (primary, DETACH_FIX))
        for standby in missing:
            self.findings.problem(
                "standbys", "the inventory names %s as a standby of this server (online_upgrade_primary: %s), but no "
                "standby streams from it with application_name %s or from %s"
                % (standby["host"], primary, standby.get("application_name") or standby["host"],
                   standby.get("address") or standby["host"]),
                "start that standby streaming from this server, or set online_upgrade_standby_application_name on "
                "its host to the application_name of its primary_conninfo, or remove online_upgrade_primary from it")
        return set(s["slot"] for s in matched if s["slot"])

    def _logical_replicas(self, session):
        """A logical replica of the old server (a subscriber elsewhere) does not follow it to the new server: refused
        by name.  Returns the slots they stream from (named here, not again as another consumer's)."""
        replicas = [dict(zip(("application_name", "client_addr", "database", "slot"), row))
                    for row in session.query(LOGICAL_REPLICAS_SQL).rows]
        replicas = [r for r in replicas if not (r["slot"] and self._ours(r["slot"]))]
        for replica in replicas:
            self.findings.problem(
                "standbys", "a logical replica streams from the old server: application_name %s from %s, database "
                "%s%s; it would miss every change after the cutover"
                % (replica["application_name"] or "(none)", replica["client_addr"], replica["database"],
                   ", slot " + replica["slot"] if replica["slot"] else ""),
                "stop that subscriber (ALTER SUBSCRIPTION ... DISABLE on its server) and drop its slot here once it "
                "can start again from the new server (SELECT pg_drop_replication_slot('%s')), or upgrade it with its "
                "own procedure" % (replica["slot"] or "<its slot>"))
        return set(r["slot"] for r in replicas if r["slot"])


class StandbyPreflight(HostChecks, ServerChecks, Preflight):
    """A standby host's own checks: its server is a hot standby of the old major, streaming from the primary and to
    nobody, with room for the new instance's copy, and the ports the new standby will use are free."""

    def __init__(self, module, old, new_version, new_data_dir, temporary_port, old_port_after, primary,
                 min_free_disk_ratio=1.2, **_checks_of_a_primary):
        self.module = module
        self.old = old
        self.new_version_text = "" if new_version is None else str(new_version)
        self.new_major = parse_version(self.new_version_text)
        self.new_data_dir = new_data_dir
        self.temporary_port = temporary_port
        self.old_port_after = old_port_after
        self.primary = primary
        self.min_free_disk_ratio = min_free_disk_ratio
        self.method = "standby"
        self.findings = Findings()
        self.facts = {}

    def run(self):
        if not self._old_server_reachable():
            return self._result()
        session = connect(self.old, timeout=5)
        try:
            self._versions(session)
            if session.scalar("SELECT pg_is_in_recovery()") != "t":
                self.findings.problem(
                    "standby", "the server on port %d is not a standby (it is not in recovery), but the inventory "
                    "names this host a standby of %s" % (self.old.port, self.primary),
                    "remove online_upgrade_primary from this host's inventory vars, or point online_upgrade_port at "
                    "its standby")
                return self._result()
            if session.scalar("SHOW hot_standby") != "on":
                self.findings.problem("standby", "hot_standby is off: the standby serves no reads",
                                      "set hot_standby = on and restart the standby, or detach it from the upgrade")
            self._cascading(session)
            self._disk(session)
            self._ports()
            self._ha_managers()
        finally:
            session.close()
        return self._result()

    def _cascading(self, session):
        for sender in [dict(zip(("application_name", "client_addr", "sync_state", "slot"), row))
                       for row in session.query(STANDBYS_SQL).rows]:
            self.findings.problem(
                "standby", "a cascading standby streams from this standby (%s): it would be left behind"
                % describe(sender),
                "point it at %s instead (primary_conninfo), and name its host in the inventory with "
                "online_upgrade_primary: %s" % (self.primary, self.primary))

    def _result(self):
        result = dict(problems=self.findings.problems, warnings=self.findings.warnings, databases=[],
                      ok=not self.findings.problems, primary=self.primary)
        result.update(self.facts)
        return result
