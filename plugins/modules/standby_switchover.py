#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: standby_switchover
short_description: Switch a standby host to its new standby, after the primary's cutover
version_added: "1.1.0"
description:
  - "On a standby host, once its primary's cutover is done: the new standby that
    M(fleetdb.online_upgrade.standby) made (O(new), running on O(temporary_port)) is pointed at the new primary on
    its production port (O(primary_host), O(primary_port)) and must replay the new primary's position taken after
    the cutover; then the old standby (O(old)) is stopped, the new one is restarted on the production port
    (O(new.port)), and the old one is configured for O(old_port_after), stopped, as the old primary is."
  - "The same module switches a standby host back in a rollback, once the old primary serves the production port
    again - O(old) the standby of the new release, O(new) the old standby (configured for the production port
    before its start there), O(position_from=receiver)."
  - "Read clients on this host see one pause, from the old standby's stop to the new one's first accepted read
    (RV(read_pause_seconds)), and never an older state than they read before: the old standby never showed more
    than the old primary had, which the new primary holds once its cutover is done."
  - "With O(position_from=primary), the primary is asked its position with C(IDENTIFY_SYSTEM) as O(replication_user); a primary whose production
    port still serves another cluster than the one the new standby was copied from (its cutover not done) is
    refused before anything changes."
  - "Each step follows from what the host shows, so a run killed at any point is finished by the next one; a run
    once the switch is done changes nothing."
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance.old_standby
  - fleetdb.online_upgrade.instance.made_standby
options:
  primary_host:
    description:
      - Address of the primary host, as this host reaches it.
    type: str
    required: true
  primary_port:
    description:
      - The new primary's production port; O(new.port) when not given.
    type: int
  replication_user:
    description:
      - The role the new standby streams as (C(REPLICATION), and a C(pg_hba.conf) line on the primary for this host).
    type: str
    default: fleetdb_replicator
  replication_password:
    description:
      - Its password (from a vault); written to the passfile beside the new data directory, never into the
        configuration.
    type: str
    required: true
  application_name:
    description:
      - The new standby's C(application_name) on the primary (the one M(fleetdb.online_upgrade.standby) was given).
    type: str
    required: true
  temporary_port:
    description:
      - The port the new standby runs on until the switch.
    type: int
    required: true
  old_port_after:
    description:
      - The port the old standby is configured for once stopped (the old primary's C(online_upgrade_old_port_after)).
    type: int
    required: true
  position_from:
    description:
      - "Where the new primary's position comes from - V(primary): C(IDENTIFY_SYSTEM) as O(replication_user),
        which also checks the cluster's system identifier; V(receiver): the end of WAL the primary's WAL sender
        reports to the new standby once it streams from O(primary_port) (no login as O(replication_user), whose
        C(pg_hba.conf) lines an old primary does not have: the switch back of a rollback)."
    type: str
    choices: [primary, receiver]
    default: primary
  settings_at_least:
    description:
      - Settings the new standby gets at least before it follows the primary (C(ALTER SYSTEM), then a restart on
        O(temporary_port) when one needs it) - the ones the primary raised since the new standby last ran (a hot
        standby stops replaying at a primary's larger C(max_worker_processes)).
    type: dict
  timeout:
    description:
      - Seconds to wait for each of - the new standby to stream, to catch up, to start.
    type: int
    default: 60
notes:
  - Supports check mode - RV(actions) lists what a run would do, and nothing changes.
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: The standby's own switch, after the primary's cutover
  fleetdb.online_upgrade.standby_switchover:
    old:
      data_dir: /var/lib/fleetdb/postgresql/16/main
      bin_dir: /opt/fleetdb/postgresql/16/bin
      port: 5432
    new:
      data_dir: /var/lib/fleetdb/postgresql/18/main
      bin_dir: /opt/fleetdb/postgresql/18/bin
      port: 5432
    primary_host: 10.0.0.11
    replication_password: "{{ online_upgrade_replication_password }}"
    application_name: "{{ inventory_hostname }}"
    temporary_port: 15432
    old_port_after: 5433
"""

RETURN = r"""
actions:
  description: The steps this run took (in check mode - would take), in order; empty once the switch is done.
  returned: always
  type: list
  elements: str
  sample: ["point the new standby's primary_conninfo at 10.0.0.11 port 5432 (the new primary) and wait until it
    streams from there", "wait until the new standby has replayed the new primary's current position",
    "stop the old standby (/var/lib/fleetdb/postgresql/16/main)", "restart the new standby on the production port
    5432", "configure the old standby for port 5433"]
read_pause_seconds:
  description: From the old standby's stop to the new one's first accepted read; null when this run stopped no
    old standby.
  returned: always
  type: float
  sample: 0.41
phases:
  description: Seconds per step (C(start_temporary), C(follow), C(catch_up), C(stop_old), C(start_new),
    C(retire_old)) and the final wait for C(streaming).
  returned: when not in check mode
  type: dict
phase_order:
  description: The steps in the order they ran.
  returned: when not in check mode
  type: list
  elements: str
primary_lsn:
  description: The new primary's position the new standby replayed before the old one stopped.
  returned: when not in check mode
  type: str
receiver:
  description: The new standby's walreceiver at the end - C(status), C(sender_host), C(sender_port).
  returned: when not in check mode
  type: dict
  sample: {"status": "streaming", "sender_host": "10.0.0.11", "sender_port": 5432}
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
            new=dict(type="dict", required=True, options=instance_suboptions()),
            primary_host=dict(type="str", required=True),
            primary_port=dict(type="int"),
            replication_user=dict(type="str", default="fleetdb_replicator"),
            replication_password=dict(type="str", required=True, no_log=True),
            application_name=dict(type="str", required=True),
            temporary_port=dict(type="int", required=True),
            old_port_after=dict(type="int", required=True),
            timeout=dict(type="int", default=60),
            position_from=dict(type="str", choices=["primary", "receiver"], default="primary"),
            settings_at_least=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    switch = get_engine(p["engine"]).standby_switch(
        module, spec_from(p["old"]), spec_from(p["new"]), primary_host=p["primary_host"],
        primary_port=p["primary_port"], user=p["replication_user"], password=p["replication_password"],
        application_name=p["application_name"], temporary_port=p["temporary_port"],
        old_port_after=p["old_port_after"], timeout=p["timeout"], position_from=p["position_from"],
        settings_at_least=p["settings_at_least"])
    try:
        result = switch.run()
    except OperationError as exc:
        module.fail_json(**exc.as_result())
    except DatabaseError as exc:
        module.fail_json(msg="database error during the standby's switch: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
