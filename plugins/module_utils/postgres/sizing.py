# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How much of the host the logical initial copy takes: table-sync workers, index-build jobs and their memory.

The copy runs beside production, on the same host: it takes half the cores (the other half keeps serving
clients), never less than PostgreSQL's defaults (two table syncs per subscription); each table-sync worker
holds a replication slot and a WAL sender on the old server (what is free there bounds them: raising those
needs a restart of production); the index builds after it share a quarter of the memory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

DEFAULT_SYNC_WORKERS = 2   # max_sync_workers_per_subscription's default
MAX_SYNC_WORKERS = 8
DEFAULT_APPLY_WORKERS = 2  # max_parallel_apply_workers_per_subscription's default
MAX_APPLY_WORKERS = 4        # past this, one table's COPY is the bottleneck, not the number of tables at once
MAX_RESTORE_JOBS = 8
MIN_MAINTENANCE_MB = 64     # PostgreSQL's default
MAX_MAINTENANCE_MB = 2048   # an index build gains little past it


def host_resources():
    """(cores, memory in bytes) of this host."""
    memory = 0
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use, as nproc counts them
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return cores, memory


def copy_parallelism(cores, memory, databases, free_slots, free_senders, new_major=18, old_settings=None, standbys=0):
    """The copy's workers for a host of ``cores`` and ``memory`` bytes, upgrading ``databases`` databases from an
    old server with ``free_slots`` replication slots and ``free_senders`` WAL senders unused (and its
    ``old_settings``, name -> value: the new server never gets fewer workers than the old one had), and ``standbys``
    new standbys streaming from the new server."""
    databases = max(1, databases)
    wanted = max(DEFAULT_SYNC_WORKERS, min(MAX_SYNC_WORKERS, cores // 2))
    # Each database keeps one slot and one sender for its subscription; its table syncs share the rest.
    room = max(0, min(free_slots, free_senders) - databases) // databases
    sync = max(1, min(wanted, room))
    limited_by = "cores" if sync == wanted else "free replication slots and WAL senders on the old server"
    restore_jobs = max(DEFAULT_SYNC_WORKERS, min(MAX_RESTORE_JOBS, cores // 2))
    maintenance_mb = min(MAX_MAINTENANCE_MB, max(MIN_MAINTENANCE_MB, memory // 4 // restore_jobs // 2 ** 20))
    # Per subscription: its apply worker, its table syncs, and parallel apply of large transactions.
    apply_workers = max(DEFAULT_APPLY_WORKERS, min(MAX_APPLY_WORKERS, cores // 4))
    logical_workers = databases * (1 + sync + apply_workers)
    settings = dict(max_sync_workers_per_subscription=sync, max_logical_replication_workers=logical_workers,
                    # the launcher, and PostgreSQL's default 8 for everything else (parallel queries...)
                    max_worker_processes=logical_workers + 1 + 8)
    if new_major >= 16:
        settings["max_parallel_apply_workers_per_subscription"] = apply_workers
    settings.update(replication_capacity(databases, sync, new_major, standbys))
    for name, value in (old_settings or {}).items():
        if name in settings and name != "max_sync_workers_per_subscription" and str(value).isdigit():
            settings[name] = max(settings[name], int(value))
    return dict(
        cores=cores, memory_mb=memory // 2 ** 20, databases=databases, limited_by=limited_by,
        sync_workers_per_subscription=sync, parallel_apply_workers_per_subscription=apply_workers,
        restore_jobs=restore_jobs, maintenance_work_mem_mb=maintenance_mb, settings=settings)


def replication_capacity(databases, sync_workers, new_major, standbys=0):
    """What the new server needs for the upgrade's replication, beyond PostgreSQL's defaults (10 each).

    During the copy it subscribes once per database; the databases are copied one after another, so the table
    syncs of one of them hold a replication origin at a time.  Origins count against max_replication_slots
    before PostgreSQL 18 and against max_active_replication_origins from 18 on.  After the cutover it keeps a
    rollback slot per database, which a rollback streams from through a WAL sender each.  Two to spare: a
    session's own slot (pg_basebackup, a check) must not be refused.  Each standby of the new server streams through
    a WAL sender of its own, and may keep a slot there: one more of each per standby."""
    origins = databases + sync_workers + 2
    rollback = databases + 2
    settings = dict(max_replication_slots=max(10, standbys + (rollback if new_major >= 18 else rollback + origins)),
                    max_wal_senders=max(10, rollback + standbys))
    if new_major >= 18:
        settings["max_active_replication_origins"] = max(10, origins)
    return settings
