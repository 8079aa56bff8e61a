#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: replication
short_description: Replicate one database from the old server to the new one with logical replication
version_added: "1.0.0"
description:
  - "Publication and replication slot on O(source), subscription on O(target), all named after O(name): O(name) itself
    when O(databases) has one database (or is unset), C(<name>_<dbname>) otherwise, as M(fleetdb.online_upgrade.switchover)
    expects."
  - "The publication lists the tables of O(dbname) that exist on the source (not FOR ALL TABLES). Tables without a
    primary key or replica identity are refused before anything changes (their UPDATE and DELETE would fail once
    published) unless O(tables_without_key=replica_identity_full)."
  - "Before changing anything it checks C(wal_level=logical) and free C(max_replication_slots), C(max_wal_senders) on
    the source and C(max_logical_replication_workers), C(max_worker_processes) and replication origins on the target,
    and says what to set (with M(fleetdb.online_upgrade.instance)) and that a restart is needed."
  - "O(replication_user) gets LOGIN REPLICATION BYPASSRLS (row-level security would filter the copy), CONNECT on
    the database, USAGE on the schemas and SELECT on the published tables; never superuser. Its password is sent
    as a SCRAM verifier. The source's pg_hba.conf gets scram-sha-256 lines for it (local socket, 127.0.0.1, ::1)
    in front of the other rules when missing, then reloads."
  - "The password is written into a passfile (mode 0600, owned by the target's owner) and the subscription's conninfo
    names that file: it never shows in C(pg_subscription), in results or in logs."
  - "V(present): publication, slot and subscription with the initial copy. A failure while creating them removes them
    again, so no slot is left holding WAL on the source. V(absent): drops the subscription (detached from its slot first,
    so it works when the source is down), the slot and any table-copy slots (ending their walsender) and the
    publication. V(paused) / V(started): disable / enable the subscription. V(synced): V(present), then waits until
    every table finished its initial copy and the target confirmed the source's WAL position taken when the wait began
    (or, with O(max_lag_bytes), until the lag is below it)."
  - "V(role_absent): what replication set up for O(replication_user) goes, on the whole source server: the role (its
    privileges revoked first with C(DROP OWNED) in every database where it has any), its lines in the source's
    pg_hba.conf (then a reload) and its line in O(passfile) (the file too once empty). A role that owns anything, or is
    a superuser, is refused before anything changes, naming what it owns. O(name) is not used."
  - "V(published): only the replication role, its pg_hba.conf lines (with one for physical replication on the
    socket), the passfile and the publication, on the source (the target need not run): what
    M(fleetdb.online_upgrade.physical_copy) needs before it creates its slots."
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance.source
  - fleetdb.online_upgrade.instance.target
options:
  dbname:
    description:
      - The database replicated. Required but with O(state=role_absent), where it is the database of the first
        session (default C(postgres)).
    type: str
  name:
    description:
      - Base name of the publication, slot and subscription.
    type: str
    default: fleetdb_upgrade
  databases:
    description:
      - Every database replicated for this upgrade; with more than one, names are C(<name>_<dbname>).
    type: list
    elements: str
  replication_user:
    description:
      - Role the target logs in as; the only role the switchover's fence lets in.
    type: str
    default: fleetdb_replicator
  replication_password:
    description:
      - Password of O(replication_user). Needed to create the replication. Never logged or returned.
    type: str
  passfile:
    description:
      - Passfile for the target's server. Defaults to C(fleetdb_replication.pgpass) in the parent directory of the
        target's data directory.
    type: path
  tables_without_key:
    description:
      - What to do with tables that have neither a primary key nor a replica identity.
      - V(fail) names them and changes nothing; V(replica_identity_full) sets REPLICA IDENTITY FULL on them
        (an explicit opt-in).
    type: str
    choices: [fail, replica_identity_full]
    default: fail
  state:
    description:
      - What to make of the replication.
    type: str
    choices: [present, absent, paused, started, synced, role_absent, published]
    default: synced
  timeout:
    description:
      - Seconds V(synced) waits. Past it the module fails; the copy goes on and a re-run keeps waiting.
    type: int
    default: 3600
  poll:
    description:
      - With V(synced), return after at most this many seconds, in sync or not (RV(synced) says which), with the
        progress in RV(progress_line). A task that loops (C(until)) on RV(synced) then shows the progress of a
        long copy; the role does, and the callback C(fleetdb.online_upgrade.progress) prints it. V(0) waits up to
        O(timeout).
    type: int
    default: 0
  max_lag_bytes:
    description:
      - With V(synced), also done once every table is copied and the target is at most this many bytes behind.
    type: int
  compare:
    description:
      - After the state is reached, count rows and hash every row of each subscribed table on both servers
        (in parallel). Meaningful when writes have stopped.
    type: bool
    default: false
  existing_slot:
    description:
      - Subscribe to a slot that already exists on the source instead of creating one.
    type: bool
    default: false
  copy_data:
    description:
      - Copy the tables' existing rows when the subscription starts.
    type: bool
    default: true
  start_lsn:
    description:
      - With O(existing_slot) and O(copy_data=false), where replication starts - the recovery point of a physical
        copy (RV(fleetdb.online_upgrade.physical_copy#module:start_lsn)). The subscription is created disabled, its
        origin advanced to this LSN, then enabled, so that no transaction already in the copy is applied again.
    type: str
notes:
  - Supports check mode; it reports the actions it would take. Diff mode shows the changes to pg_hba.conf.
  - Sequences are not replicated; M(fleetdb.online_upgrade.switchover) copies them inside the window.
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Replicate app from 16 to 18 and wait for the initial copy
  fleetdb.online_upgrade.replication:
    source: {data_dir: /var/lib/fleetdb/postgresql/16/main, bin_dir: /opt/fleetdb/postgresql/16/bin, port: 5432}
    target: {data_dir: /var/lib/fleetdb/postgresql/18/main, bin_dir: /opt/fleetdb/postgresql/18/bin, port: 6432}
    dbname: app
    replication_password: "{{ vault_replication_password }}"
    state: synced
    timeout: 7200

- name: Remove it (no slot left behind)
  fleetdb.online_upgrade.replication:
    source: {data_dir: /var/lib/fleetdb/postgresql/16/main, bin_dir: /opt/fleetdb/postgresql/16/bin, port: 5432}
    target: {data_dir: /var/lib/fleetdb/postgresql/18/main, bin_dir: /opt/fleetdb/postgresql/18/bin, port: 6432}
    dbname: app
    state: absent

- name: After the upgrade, drop the replication role, its pg_hba.conf lines and passfile on the new server
  fleetdb.online_upgrade.replication:
    source: {data_dir: /var/lib/fleetdb/postgresql/18/main, bin_dir: /opt/fleetdb/postgresql/18/bin, port: 5432}
    target: {data_dir: /var/lib/fleetdb/postgresql/18/main, bin_dir: /opt/fleetdb/postgresql/18/bin, port: 5432}
    state: role_absent
"""

RETURN = r"""
name:
  description: Name of the publication, slot and subscription.
  returned: always
  type: str
actions:
  description: What was done (or would be, in check mode); statements without secrets.
  returned: always
  type: list
orphan_slot_dropped:
  description: The upgrade's own slot found on the source with no subscription on the target (a target that died,
    or a module killed, inside CREATE SUBSCRIPTION), unused, and dropped before the subscription was created again.
  returned: when it happened
  type: str
tables_total:
  description: Tables in the subscription.
  returned: unless state=absent or state=role_absent
  type: int
tables_ready:
  description: Tables whose initial copy is done (state r).
  returned: unless state=absent or state=role_absent
  type: int
tables_replica_identity_full:
  description: Tables set to REPLICA IDENTITY FULL by this run.
  returned: when replication was created
  type: list
lag_bytes:
  description: Bytes of WAL the target has not confirmed yet.
  returned: unless state=absent or state=role_absent
  type: int
lag_seconds:
  description: Replay lag reported by the source's walsender.
  returned: unless state=absent or state=role_absent
  type: float
bytes_copying:
  description: Bytes processed so far by the table copies in progress on the target.
  returned: unless state=absent or state=role_absent
  type: int
elapsed:
  description: Seconds V(synced) waited.
  returned: state=synced
  type: float
synced:
  description: Whether V(synced) was reached (false when O(poll) ended the wait first).
  returned: state=synced
  type: bool
progress_line:
  description: Where the copy stands, in one line - tables copied of total, bytes copied of total, rate, time left,
    lag.
  returned: state=synced
  type: str
  sample: "app: 14 of 31 tables copied, 1.2 GB of 3.4 GB, 57.6 MB/s, about 40 s left, lag 12.0 MB"
bytes_total:
  description: Bytes of the published tables on the source (heap and TOAST; indexes are built afterwards).
  returned: state=synced
  type: int
bytes_copied:
  description: Bytes the subscribed tables take on the target so far.
  returned: state=synced
  type: int
rate_bytes_per_second:
  description: Copy rate during this call.
  returned: state=synced
  type: int
eta_seconds:
  description: Estimated seconds until the copy is done, at that rate (null when it is done or not moving).
  returned: state=synced
  type: int
progress:
  description: Samples taken every 10 s while waiting.
  returned: state=synced
  type: list
comparison:
  description: Per table, source_rows, target_rows, source_hash, target_hash and equal.
  returned: compare=true
  type: list
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.args import instance_suboptions, spec_from
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import DatabaseError, OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def main():
    module = AnsibleModule(
        argument_spec=dict(
            engine=engine_option(),
            source=dict(type="dict", required=True, options=instance_suboptions()),
            target=dict(type="dict", required=True, options=instance_suboptions()),
            dbname=dict(type="str"),
            name=dict(type="str", default="fleetdb_upgrade"),
            databases=dict(type="list", elements="str"),
            replication_user=dict(type="str", default="fleetdb_replicator"),
            replication_password=dict(type="str", no_log=True),
            passfile=dict(type="path"),
            tables_without_key=dict(type="str", default="fail", choices=["fail", "replica_identity_full"]),
            state=dict(type="str", default="synced",
                       choices=["present", "absent", "paused", "started", "synced", "role_absent", "published"]),
            timeout=dict(type="int", default=3600),
            poll=dict(type="int", default=0),
            max_lag_bytes=dict(type="int"),
            compare=dict(type="bool", default=False),
            existing_slot=dict(type="bool", default=False),
            copy_data=dict(type="bool", default=True),
            start_lsn=dict(type="str"),
        ),
        required_if=[("state", state, ["dbname"]) for state in ("present", "absent", "paused", "started", "synced",
                                                                "published")],
        supports_check_mode=True,
    )
    p = module.params
    replication = get_engine(p["engine"]).replication(
        module, spec_from(p["source"]), spec_from(p["target"]), p["dbname"], name=p["name"],
        databases=p["databases"], replication_user=p["replication_user"],
        replication_password=p["replication_password"], tables_without_key=p["tables_without_key"],
        copy_data=p["copy_data"], existing_slot=p["existing_slot"], timeout=p["timeout"],
        max_lag_bytes=p["max_lag_bytes"], passfile=p["passfile"], poll=p["poll"], start_lsn=p["start_lsn"])
    try:
        result = replication.ensure(p["state"])
        if p["compare"] and p["state"] not in ("absent", "role_absent") and not module.check_mode:
            result["comparison"] = replication.compare()
            result["comparison_equal"] = all(c["equal"] for c in result["comparison"])
    except OperationError as exc:
        failure = exc.as_result()
        failure["actions"] = replication.result["actions"]
        module.fail_json(**failure)
    except DatabaseError as exc:
        module.fail_json(msg="database error: %s" % exc, actions=replication.result["actions"])
    finally:
        replication.close()
    diff = result.pop("diff", None)
    if diff and module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
