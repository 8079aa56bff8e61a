#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: physical_copy
short_description: Make the new instance's data from a physical copy of the old server, at a replication point
version_added: "1.1.0"
description:
  - "The initial copy of the online upgrade at disk speed, instead of logical replication's table copy. While
    clients keep writing to O(old), it takes C(pg_basebackup) of it (its own release, WAL held by a physical
    slot, streamed as O(replication_user)), creates one logical slot per database in O(databases) (their
    publications must exist, see M(fleetdb.online_upgrade.replication) V(published)), recovers the copy as a
    standby on O(copy_port) to the last slot's point (C(recovery_target_lsn), exclusive) and promotes it there."
  - "Then C(initdb) of the new release with the old cluster's checksums, locale and encoding, and
    C(pg_upgrade) from the copy (C(--swap) where the new release has it, 18 and later, else C(--link)). The
    configuration files of the instance in O(new) (made by
    M(fleetdb.online_upgrade.instance)) are carried into the upgraded copy, which takes that instance's place. It
    is started on the port in O(new) (its temporary port) and gets a Record of Upgrades set per database."
  - "Replication then starts exactly where the copy ends, with M(fleetdb.online_upgrade.replication) and its options
    O(fleetdb.online_upgrade.replication#module:existing_slot=true),
    O(fleetdb.online_upgrade.replication#module:copy_data=false) and
    O(fleetdb.online_upgrade.replication#module:start_lsn) set to RV(start_lsn)."
  - "The copy goes to C(<new data_dir>.copy), the upgrade to C(<new data_dir>.staged), beside the new instance on
    its file system (hard links). Room for one copy of the old data is needed there while it runs."
  - "Each step is recorded in O(state_file). Until the upgraded copy took the new instance's place, a re-run starts
    over (the processes, directories and slots the interrupted run left are removed first); after that it changes
    nothing."
  - "Refused before anything changes: tablespaces other than the default ones, a template0 whose locale provider
    is not libc, too little free space beside the new instance."
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance.old
  - fleetdb.online_upgrade.instance.new_stopped
options:
  databases:
    description:
      - Databases replicated after the copy, one slot each (named as M(fleetdb.online_upgrade.replication) names
        them for O(subscription)).
    type: list
    elements: str
    required: true
  subscription:
    description:
      - Base name of the publications, slots and subscriptions.
    type: str
    default: fleetdb_upgrade
  replication_user:
    description:
      - The role that streams the WAL to the copy - the one M(fleetdb.online_upgrade.replication) V(published) made,
        with its pg_hba.conf line for physical replication and its passfile.
    type: str
    default: fleetdb_replicator
  copy_port:
    description:
      - Private port of the copy while it recovers (and V(copy_port + 1) during C(pg_upgrade)); it listens on no
        TCP address.
    type: int
    required: true
  max_rate:
    description:
      - Most the base backup reads from the old server per second (C(pg_basebackup --max-rate)), so that the copy
        leaves production its disk - kilobytes, or with a suffix V(k) or V(M), from V(32k) to V(1024M). The WAL
        is streamed unthrottled. Unlimited when unset.
    type: str
  jobs:
    description:
      - Parallel jobs of C(pg_upgrade).
    type: int
    default: 2
  timeout:
    description:
      - Seconds each long step (the recovery, the start) may take.
    type: int
    default: 3600
  state_file:
    description:
      - File on the host recording the step reached.
    type: path
    default: /var/lib/fleetdb/online_upgrade/physical_copy.json
notes:
  - Supports check mode; it runs the checks and says what it would do.
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Copy PostgreSQL 16 physically into the new 18 instance, then subscribe from the copy's point
  fleetdb.online_upgrade.physical_copy:
    old: {data_dir: /var/lib/postgresql/16/main, bin_dir: /usr/lib/postgresql/16/bin, port: 5432}
    new: {data_dir: /var/lib/postgresql/18/main, bin_dir: /usr/lib/postgresql/18/bin, port: 55432}
    databases: [app]
    copy_port: 55433
  register: copy

- name: Replicate from where the copy ends
  fleetdb.online_upgrade.replication:
    source: {data_dir: /var/lib/postgresql/16/main, bin_dir: /usr/lib/postgresql/16/bin, port: 5432}
    target: {data_dir: /var/lib/postgresql/18/main, bin_dir: /usr/lib/postgresql/18/bin, port: 55432}
    dbname: app
    replication_password: "{{ vault_replication_password }}"
    existing_slot: true
    copy_data: false
    start_lsn: "{{ copy.start_lsn }}"
"""

RETURN = r"""
start_lsn:
  description: The recovery point - the copy holds every transaction that committed before it, and none after.
  returned: success
  type: str
  sample: 0/5A0001F8
slots:
  description: Database to logical slot on the old server.
  returned: success
  type: dict
  sample: {"app": "fleetdb_upgrade"}
phases:
  description: Seconds per step - C(backup), C(slots), C(recover), C(upgrade), C(swap) (and C(start_over)).
  returned: always
  type: dict
pg_upgrade_mode:
  description: How C(pg_upgrade) moved the copy's files into the new release - V(swap) (C(--swap), PostgreSQL 18
    and later, moves the copy's directories) or V(link) (C(--link), hard-links each file).
  returned: when the copy ran
  type: str
  sample: swap
copied_bytes:
  description: Bytes the base backup wrote.
  returned: when the copy ran
  type: int
recovery:
  description: The copy's log line that says where recovery stopped.
  returned: when the copy ran
  type: str
record_sets:
  description: Database to the number of the Record of Upgrades set written for this copy.
  returned: success, outside check mode
  type: dict
extensions_updated:
  description:
    - Database to the extensions updated (C(ALTER EXTENSION ... UPDATE)) to the new release's default version,
      as C(<name> <old> -> <new>). pg_upgrade keeps the old versions; the copy updates them before it takes clients.
  returned: success, outside check mode
  type: dict
  sample: {"app": ["pg_stat_statements 1.10 -> 1.12"]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.args import instance_suboptions, spec_from
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import DatabaseError, OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def main():
    module = AnsibleModule(
        argument_spec=dict(
            engine=engine_option(),
            old=dict(type="dict", required=True, options=instance_suboptions()),
            new=dict(type="dict", options=instance_suboptions()),
            databases=dict(type="list", elements="str", required=True),
            subscription=dict(type="str", default="fleetdb_upgrade"),
            replication_user=dict(type="str", default="fleetdb_replicator"),
            copy_port=dict(type="int", required=True),
            jobs=dict(type="int", default=2),
            max_rate=dict(type="str"),
            timeout=dict(type="int", default=3600),
            state_file=dict(type="path", default="/var/lib/fleetdb/online_upgrade/physical_copy.json"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not p["new"]:
        module.fail_json(msg="new is required: the instance the copy goes into (created, stopped)")
    new = spec_from(p["new"])
    engine = get_engine(p["engine"])
    if engine.max_rate_problem(p["max_rate"]):
        module.fail_json(msg=engine.max_rate_problem(p["max_rate"]) + " (nothing was changed)")
    copy = engine.physical_copy(
        module, spec_from(p["old"]), new, p["databases"], subscription=p["subscription"], temporary_port=new.port,
        copy_port=p["copy_port"], state_file=p["state_file"], timeout=p["timeout"], jobs=p["jobs"],
        replication_user=p["replication_user"], max_rate=p["max_rate"])
    try:
        result = copy.run()
    except OperationError as exc:
        failure = exc.as_result()
        failure["phases"] = copy.timer.timings
        module.fail_json(**failure)
    except DatabaseError as exc:
        module.fail_json(msg="database error during the physical copy: %s" % exc, phases=copy.timer.timings)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
