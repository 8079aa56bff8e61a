#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: progress
short_description: Where the upgrade of a host stands, and what a re-run must do; record the phases outside the cutover
version_added: "1.1.0"
description:
  - "Reads what the upgrade's runs recorded in O(state_dir) on the host: the phase the cutover (or rollback, finalize,
    the offline method) reached, and the versions of the upgrade the host is in. Returns the phase with what a run of
    O(old_version) to O(new_version) must do next: whether the old server was stopped by a cutover (only the cutover
    resumes then), whether an interrupted cutover may have left its fence up, whether the upgrade is finished,
    whether this run is another upgrade than the one recorded."
  - "Records what happens outside the cutover: the versions of the upgrade that begins (V(begun)), that a
    rolled back upgrade's cutovers are forgotten so that the next one starts afresh (V(restarted)), the records of
    a finished upgrade set aside in C(history/<old>-to-<new>-<time>/) for the next upgrade of the host
    (V(set_aside)), and the phases V(done) (the offline method), V(rolled_back) and V(finalized)."
  - "The phase names are those of the engine's one list (RV(phases)); the files behind them are the engine's own."
  - Not the callback C(fleetdb.online_upgrade.progress), which prints the copy's progress.
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
options:
  state:
    description:
      - V(query) reads and changes nothing; the others record, then report like V(query) where it applies.
    type: str
    default: query
    choices: [query, begun, restarted, set_aside, done, rolled_back, finalized]
  state_dir:
    description:
      - Directory of the upgrade's records on the host (the role's C(online_upgrade_state_dir)).
    type: path
    default: /var/lib/fleetdb/online_upgrade
  old_version:
    description:
      - The release upgraded from in this run. Required with V(query) and V(begun).
    type: str
  new_version:
    description:
      - The release upgraded to in this run. Required with V(query), V(begun) and V(finalized).
    type: str
  old_data_dir:
    description:
      - Data directory of the old instance (whether its server is still stopping tells a cutover interrupted at
        its stop). Required with V(query); with V(begun), recorded.
    type: path
  port:
    description:
      - The server's production port. With V(begun), recorded. With V(query), records of another port are another
        server's (RV(other_server)) - a server keeps its port across its upgrades, two servers of a host never share
        one.
    type: int
  method:
    description:
      - With V(done), how the data was copied (V(dump_restore) - a rollback is then refused, no slot kept the writes).
    type: str
  databases:
    description:
      - With V(done), the databases upgraded.
    type: list
    elements: str
  window_seconds:
    description:
      - With V(rolled_back), how long clients could not write during the cutover back.
    type: float
notes:
  - Supports check mode (it says what it would record, and records nothing) and diff mode.
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Where the upgrade from 16 to 18 stands on this host
  fleetdb.online_upgrade.progress:
    old_version: "16"
    new_version: "18"
    old_data_dir: /var/lib/fleetdb/postgresql/16/main
  register: progress

- name: Lift the fence an interrupted cutover may have left
  fleetdb.online_upgrade.switchover:
    state: unfenced
    old: {data_dir: /var/lib/fleetdb/postgresql/16/main, bin_dir: /opt/fleetdb/postgresql/16/bin}
    databases: "{{ progress.cutover.databases | default([]) }}"
    old_port_after: 5433
  when: progress.fence_may_be_up

- name: Record that the upgrade is finalized
  fleetdb.online_upgrade.progress:
    state: finalized
    new_version: "18"
"""

RETURN = r"""
phase:
  description: The phase the upgrade reached on this host, V(none) before any cutover.
  returned: with O(state=query)
  type: str
  sample: done
rollback_phase:
  description: The phase the cutover back of a rollback reached, V(none) before any; V(done) with RV(phase) still
    V(done) is a rollback whose cutover back finished and whose end (the backup after it) a re-run completes.
  returned: with O(state=query)
  type: str
  sample: none
recorded:
  description: The versions of the upgrade the host is in (C(old_version), C(new_version)), those known.
  returned: with O(state=query)
  type: dict
  sample: {"old_version": "16", "new_version": "18"}
another_upgrade:
  description: This run's versions differ from the recorded ones - a second upgrade of the host (16 -> 17, then
    17 -> 18), which may begin only once the recorded one is finished.
  returned: with O(state=query)
  type: bool
other_server:
  description: The port and old data directory of another server whose upgrade O(state_dir) records (two servers of
    one host need a state directory each), or V(null) when the records are this server's or name no port.
  returned: with O(state=query)
  type: dict
  sample: {"port": 5432, "old_data_dir": "/var/lib/fleetdb/postgresql/14/main"}
past_stop:
  description: A cutover told the old server to stop - only the cutover resumes, on the databases it recorded.
  returned: with O(state=query)
  type: bool
standby_switch_begun:
  description: On a standby host - its new standby was made (the record C(standby)) and the old standby is
    stopped - its switch after the primary's cutover began; its own checks, which ask the old standby, do not run
    again.
  returned: with O(state=query)
  type: bool
fence_may_be_up:
  description: A cutover was interrupted where its fence may still reject the old server's clients - lift it first.
  returned: with O(state=query)
  type: bool
finished:
  description: Nothing is left to do for this upgrade (done, finalized or rolled back).
  returned: with O(state=query)
  type: bool
in_progress:
  description: A cutover began and the upgrade is not finished (another upgrade is refused meanwhile).
  returned: with O(state=query)
  type: bool
cutover:
  description: What the cutover recorded that later runs use - C(databases), C(rollback_slots) (database to the
    name of its rollback slot and publication on the new server), C(method) - those recorded.
  returned: with O(state=query)
  type: dict
  sample: {"databases": ["app"], "rollback_slots": {"app": "fleetdb_rollback"}}
records:
  description: The file each module that keeps its own record on the host is given as its C(state_file) -
    C(cutover) (M(fleetdb.online_upgrade.switchover) upgrading), C(rollback) (the cutover back),
    C(physical_copy) (M(fleetdb.online_upgrade.physical_copy)), C(discovery) (M(fleetdb.online_upgrade.discover)),
    C(standby) (M(fleetdb.online_upgrade.standby) on a standby host) - and C(standbys), where the role keeps a
    primary's standbys as preflight saw them (their C(application_name)s, C(synchronous_standby_names)) for
    their switch after its cutover, which a re-run does without preflight.
  returned: with O(state=query)
  type: dict
phases:
  description: The phase names by what they mean for a re-run - C(window) (the cutover's client-visible window, in
    order), C(fence_may_be_up), C(past_stop), C(begins) (the old server serves and no cutover holds the new
    instance - the upgrade begins, again, by installing the new release and creating the new instance),
    C(finished), and C(all).
  returned: with O(state=query)
  type: dict
new_instance_settings:
  description: Settings the new instance needs for the upgrade (a rollback replicates out of it), beneath the
    operator's own.
  returned: with O(state=query)
  type: dict
  sample: {"wal_level": "logical"}
history_dir:
  description: Where O(state=set_aside) moved the records, none when there was nothing to move.
  returned: with O(state=set_aside)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def main():
    module = AnsibleModule(
        argument_spec=dict(
            engine=engine_option(),
            state=dict(type="str", default="query",
                       choices=["query", "begun", "restarted", "set_aside", "done", "rolled_back", "finalized"]),
            state_dir=dict(type="path", default="/var/lib/fleetdb/online_upgrade"),
            old_version=dict(type="str"),
            new_version=dict(type="str"),
            old_data_dir=dict(type="path"),
            port=dict(type="int"),
            method=dict(type="str"),
            databases=dict(type="list", elements="str"),
            window_seconds=dict(type="float"),
        ),
        required_if=[("state", "query", ["old_version", "new_version", "old_data_dir"]),
                     ("state", "begun", ["old_version", "new_version"]),
                     ("state", "finalized", ["new_version"])],
        supports_check_mode=True,
    )
    p = module.params
    engine = get_engine(p["engine"])
    progress = engine.progress(module, p["state_dir"])
    if p["state"] == "query":
        result = progress.read(p["old_version"], p["new_version"], p["old_data_dir"], p["port"])
        module.exit_json(changed=False, new_instance_settings=engine.new_instance_settings(), **result)
    if p["state"] == "begun":
        result = progress.begin(p["old_version"], p["new_version"], p["port"], p["old_data_dir"])
    elif p["state"] == "restarted":
        result = progress.start_over()
    elif p["state"] == "set_aside":
        result = progress.set_aside()
    else:
        details = dict((name, p[name]) for name in ("method", "databases", "window_seconds", "new_version")
                       if p[name] is not None)
        result = progress.record(p["state"], **details)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
