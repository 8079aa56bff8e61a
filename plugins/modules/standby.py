#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: standby
short_description: Make a standby host's new standby from its primary's new instance, before the cutover
version_added: "1.1.0"
description:
  - "On a standby host whose new release is installed: C(pg_basebackup -R) of the primary host's new instance
    (O(primary_host), on its temporary port O(primary_port)) into the new data directory of O(new), as
    O(replication_user) (its password in a passfile beside the data directory, which the standby's
    C(primary_conninfo) names, with a line for the production port it streams from after the cutover), with
    C(application_name=)O(application_name)."
  - "The copy carries the new instance's configuration, so the new standby is configured for the production port
    (O(new.port)); it is started on O(temporary_port) and the module waits
    until it streams. The old standby keeps serving reads on the production port meanwhile."
  - "A re-run changes nothing once the standby is made and running. A new data directory that holds anything but a
    standby (an interrupted copy) is refused, with the way to clear it."
  - "A copy this host's runs began (recorded in O(state_file) before it starts) and a kill interrupted is removed and
    made again by the next run; so is a standby they made of another cluster than the primary's new instance as it
    is now (the upgrade before a rollback: the next upgrade makes that instance again), stopped."
  - "The instance's configuration must live in its data directory (the bare C(pg_ctl) layout); the Debian layout is
    still to come."
  - "With O(state=allowed), on the primary host instead: its new instance O(new), running on O(temporary_port), lets
    the standby hosts at O(addresses) stream - O(replication_user) gets C(LOGIN REPLICATION) and the password there,
    and its C(pg_hba.conf) a line C(host replication <user> <address>/32 scram-sha-256) per address (in the
    collection's replication block), then the server reloads it."
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance.new_standby
options:
  state:
    description:
      - V(streaming) on a standby host, V(allowed) on its primary host.
    type: str
    choices: [streaming, allowed]
    default: streaming
  primary_host:
    description:
      - Address of the primary host, as this host reaches it. Required with O(state=streaming).
    type: str
  primary_port:
    description:
      - Port of the primary's new instance during the copy (its temporary port). Required with O(state=streaming).
    type: int
  addresses:
    description:
      - With O(state=allowed), the IP addresses the standby hosts stream from.
    type: list
    elements: str
    default: []
  state_file:
    description:
      - Where this host's runs record the copy they begin (the collection's state directory); without it, a killed
        copy's leftover is refused with the way to clear it.
    type: path
  replication_user:
    description:
      - The role that streams from the primary's new instance (C(REPLICATION), and a C(pg_hba.conf) line there
        for this host).
    type: str
    default: fleetdb_replicator
  replication_password:
    description:
      - Its password (from a vault).
    type: str
    required: true
  application_name:
    description:
      - The standby's C(application_name) in the primary's C(pg_stat_replication) (the inventory name of the host).
        Required with O(state=streaming).
    type: str
  temporary_port:
    description:
      - Port the new standby runs on until its own cutover; with O(state=allowed), the port the primary's new
        instance runs on.
    type: int
    required: true
  timeout:
    description:
      - Seconds to wait for the standby to start and to stream.
    type: int
    default: 60
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Make the new standby from the primary's new instance
  fleetdb.online_upgrade.standby:
    new:
      data_dir: /var/lib/fleetdb/postgresql/18/main
      bin_dir: /opt/fleetdb/postgresql/18/bin
      port: 5432
    primary_host: 10.0.0.11
    primary_port: 15432
    replication_password: "{{ online_upgrade_replication_password }}"
    application_name: "{{ inventory_hostname }}"
    temporary_port: 15432
    state_file: /var/lib/fleetdb/online_upgrade/standby.json

- name: On the primary host - let the standby hosts stream from its new instance
  fleetdb.online_upgrade.standby:
    state: allowed
    new:
      data_dir: /var/lib/fleetdb/postgresql/18/main
      bin_dir: /opt/fleetdb/postgresql/18/bin
      port: 5432
    temporary_port: 15432
    addresses: [10.0.0.12]
    replication_password: "{{ online_upgrade_replication_password }}"
"""

RETURN = r"""
made:
  description: Whether this run copied the standby.
  returned: with O(state=streaming)
  type: bool
started:
  description: Whether this run started it.
  returned: with O(state=streaming)
  type: bool
data_dir:
  description: The new standby's data directory.
  returned: with O(state=streaming)
  type: str
passfile:
  description: The passfile its C(primary_conninfo) names.
  returned: with O(state=streaming)
  type: str
actions:
  description: With O(state=allowed), what was changed on the primary's new instance (no password).
  returned: with O(state=allowed)
  type: list
  elements: str
receiver:
  description: Its walreceiver - C(status) (C(streaming) once it streams), C(sender_host), C(sender_port).
  returned: with O(state=streaming), when not in check mode
  type: dict
  sample: {"status": "streaming", "sender_host": "10.0.0.11", "sender_port": 15432}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.args import instance_suboptions, spec_from
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import DatabaseError, OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def main():
    module = AnsibleModule(
        argument_spec=dict(
            engine=engine_option(),
            state=dict(type="str", choices=["streaming", "allowed"], default="streaming"),
            new=dict(type="dict", required=True, options=instance_suboptions()),
            primary_host=dict(type="str"),
            primary_port=dict(type="int"),
            addresses=dict(type="list", elements="str", default=[]),
            state_file=dict(type="path"),
            replication_user=dict(type="str", default="fleetdb_replicator"),
            replication_password=dict(type="str", required=True, no_log=True),
            application_name=dict(type="str"),
            temporary_port=dict(type="int", required=True),
            timeout=dict(type="int", default=60),
        ),
        required_if=[("state", "streaming", ("primary_host", "primary_port", "application_name"))],
        supports_check_mode=True,
    )
    p = module.params
    engine = get_engine(p["engine"])
    if p["state"] == "allowed":
        standby = engine.standby(module, spec_from(p["new"]), state="allowed", temporary_port=p["temporary_port"],
                                 user=p["replication_user"], password=p["replication_password"],
                                 addresses=p["addresses"])
    else:
        standby = engine.standby(
            module, spec_from(p["new"]), primary_host=p["primary_host"], primary_port=p["primary_port"],
            user=p["replication_user"], password=p["replication_password"], application_name=p["application_name"],
            temporary_port=p["temporary_port"], timeout=p["timeout"], state_file=p["state_file"])
    try:
        result = standby.run()
    except OperationError as exc:
        module.fail_json(**exc.as_result())
    except DatabaseError as exc:
        module.fail_json(msg="database error on the new standby: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
