# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replication slots and the subscriptions that use them: the catalog operations, each written once."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError


def slot_exists(session, slot):
    return session.scalar("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [slot]) is not None


def slot_names(session, name=None, like=None):
    """The slots named ``name`` or whose name is LIKE ``like`` (a subscription's table-sync slots: pg_<oid>_sync_%)."""
    return [r[0] for r in session.query("SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1 "
                                        "OR slot_name LIKE $2", [name, like]).rows]


def drop_slot(session, slot):
    """Drop ``slot``, which must exist and be held by no other session (this session's temporary slots are
    active: the other drops would leave them)."""
    session.query("SELECT pg_drop_replication_slot($1)", [slot])


def drop_unused_slot(session, slot):
    """Drop ``slot`` if it exists and no one streams from it: a slot in use is its consumer's, left alone."""
    session.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                  "WHERE slot_name = $1 AND NOT active", [slot])


def end_walsender(session, slot, timeout, interval=0.05):
    """Terminate the walsender streaming from ``slot`` until none does (its consumer reconnects if it is
    enabled: disable it first)."""
    deadline = time.monotonic() + timeout
    while True:
        pid = session.scalar("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", [slot])
        if pid is None:
            return
        session.query("SELECT pg_terminate_backend($1::int)", [pid])
        if time.monotonic() > deadline:
            raise OperationError("slot %s stays in use by pid %s (its walsender did not end within %g s)"
                                 % (slot, pid, timeout), "check the server's log")
        time.sleep(interval)


def drop_slot_in_use(session, slot, timeout=30):
    """Drop ``slot`` if it exists, ending first the walsender that streams from it."""
    end_walsender(session, slot, timeout)
    session.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", [slot])


def drop_subscription_keeping_slot(session, subscription):
    """DROP SUBSCRIPTION that never reaches the publisher: detached from its slot first, which stays there."""
    name = pgwire.quote_ident(subscription)
    session.execute("ALTER SUBSCRIPTION %s DISABLE" % name)
    session.execute("ALTER SUBSCRIPTION %s SET (slot_name = NONE)" % name)
    session.execute("DROP SUBSCRIPTION %s" % name)


def reattach_subscription(target, source, subscription, slot):
    """Give a subscription that a cutover detached (slot_name = NONE, disabled) its slot back, if the source still
    has it, and enable it: replication continues where it stopped.  True when it did."""
    row = target.rows("SELECT subenabled::text AS enabled, subslotname AS slot FROM pg_subscription "
                      "WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                      [subscription])
    if not row:
        return False
    name = pgwire.quote_ident(subscription)
    if row[0]["slot"] is None:
        if not slot_exists(source, slot):
            return False
        target.execute("ALTER SUBSCRIPTION %s SET (slot_name = %s)" % (name, pgwire.quote_literal(slot)))
    elif row[0]["slot"] != slot:
        return False
    if row[0]["enabled"] != "true":
        target.execute("ALTER SUBSCRIPTION %s ENABLE" % name)
    return True


# Keeps the old server's WAL from the first round of the large objects' copy on, for the rounds that read it
# (upgrade/large_object_sync.py); dropped by every path that ends that copy, and by abandon.
LARGE_OBJECTS_SLOT = "fleetdb_large_objects"


def create_reserving_slot(session, slot):
    """A physical slot that holds the WAL from now on (``slot`` of an interrupted run is dropped first)."""
    drop_slot_in_use(session, slot)
    session.query("SELECT pg_create_physical_replication_slot($1, true)", [slot])


def advance_slot(session, slot, lsn):
    """Let the server recycle the WAL ``slot`` holds before ``lsn``."""
    session.query("SELECT pg_replication_slot_advance($1, $2::pg_lsn)", [slot, lsn])
