# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sequence values, which logical replication does not carry, copied from the old server to the new one.

The switchover copies them once before the fence, then again in the window, where only those that moved are set:
the window reads one catalog scan per server, not one relation per sequence."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import (
    side_by_side, union_all_rows)

# Every sequence and its last value once called.  NULL when never called, or set back with RESTART or
# setval(..., false): then only the sequence itself says which value comes next (exact_states()).
LAST_VALUES_SQL = """
SELECT format('%I.%I', n.nspname, c.relname), pg_catalog.pg_sequence_last_value(c.oid)::text
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'S' AND n.nspname <> ALL ($1::text[]) AND NOT pg_catalog.pg_is_other_temp_schema(n.oid)
"""

SETVAL_SQL = ("SELECT count(pg_catalog.setval(name::regclass, value, called)) "
              "  FROM unnest($1::text[], $2::bigint[], $3::bool[]) AS s(name, value, called)")


def states(session, excluded_schemas):
    """{sequence: (last_value, is_called)} of every sequence outside ``excluded_schemas``."""
    last = dict(session.query(LAST_VALUES_SQL, [list(excluded_schemas)]).rows)
    found = dict((name, (value, True)) for name, value in last.items() if value is not None)
    found.update(exact_states(session, [name for name, value in last.items() if value is None]))
    return found


def exact_states(session, names):
    """{sequence: (last_value, is_called)} read from each sequence relation (one query per 500 of them)."""
    selects = ["SELECT %s, last_value::text, is_called FROM %s" % (pgwire.quote_literal(name), name) for name in names]
    rows = union_all_rows(session, selects)
    return dict((name, (value, called == "t")) for name, value, called in rows)


def copy(old, new, excluded_schemas):
    """Set on ``new`` each sequence whose state differs from ``old``'s (both read at once); returns
    (sequences on the old server, sequences set)."""
    wanted, have = side_by_side(lambda: states(old, excluded_schemas), lambda: states(new, excluded_schemas))
    stale = sorted(name for name, state in wanted.items() if have.get(name) != state)
    if stale:
        new.query(SETVAL_SQL, [stale, [int(wanted[name][0]) for name in stale], [wanted[name][1] for name in stale]])
    return len(wanted), len(stale)
