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
  - "The instance's configuration must live in its data directory (the bare C(pg_ctl) layout); the Debian layout is
    still to come."
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance.new_standby
options:
  primary_host:
    description:
      - Address of the primary host, as this host reaches it.
    type: str
    required: true
  primary_port:
    description:
      - Port of the primary's new instance during the copy (its temporary port).
    type: int
    required: true
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
    type: str
    required: true
  temporary_port:
    description:
      - Port the new standby runs on until its own cutover.
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
"""

RETURN = r"""
made:
  description: Whether this run copied the standby.
  returned: always
  type: bool
started:
  description: Whether this run started it.
  returned: always
  type: bool
data_dir:
  description: The new standby's data directory.
  returned: always
  type: str
passfile:
  description: The passfile its C(primary_conninfo) names.
  returned: always
  type: str
receiver:
  description: Its walreceiver - C(status) (C(streaming) once it streams), C(sender_host), C(sender_port).
  returned: when not in check mode
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
            new=dict(type="dict", required=True, options=instance_suboptions()),
            primary_host=dict(type="str", required=True),
            primary_port=dict(type="int", required=True),
            replication_user=dict(type="str", default="fleetdb_replicator"),
            replication_password=dict(type="str", required=True, no_log=True),
            application_name=dict(type="str", required=True),
            temporary_port=dict(type="int", required=True),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    p = module.params
    standby = get_engine(p["engine"]).standby(
        module, spec_from(p["new"]), primary_host=p["primary_host"], primary_port=p["primary_port"],
        user=p["replication_user"], password=p["replication_password"], application_name=p["application_name"],
        temporary_port=p["temporary_port"], timeout=p["timeout"])
    try:
        result = standby.run()
    except OperationError as exc:
        module.fail_json(**exc.as_result())
    except DatabaseError as exc:
        module.fail_json(msg="database error on the new standby: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
