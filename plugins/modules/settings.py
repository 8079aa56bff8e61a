#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: settings
short_description: Give a running server settings with ALTER SYSTEM, and restart it only when told to
version_added: "1.1.0"
description:
  - Sets each of O(settings) that the server does not have yet with C(ALTER SYSTEM SET) (kept in
    C(postgresql.auto.conf) in the data directory, read after every other configuration file on every layout, a
    Debian cluster's C(/etc/postgresql) included), then reloads the server.
  - Settings that only a restart applies (C(wal_level), C(max_replication_slots), C(max_wal_senders),
    C(max_locks_per_transaction)...) are listed in RV(pending_restart); the server is restarted only with
    O(restart=true), through its service manager, at the moment the operator chooses. This is how
    C(playbooks/prepare.yml) readies an old server for an upgrade.
  - Values are compared as text with what C(postgresql.auto.conf) (or, without it there, the server) has, so
    give them as the server shows them (C(logical), C(32)).
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance
  - fleetdb.online_upgrade.pooler
options:
  settings:
    description:
      - Name and value of each setting. Required with O(state=present).
    type: dict
  state:
    description:
      - V(present) sets O(settings); V(restored) gives back what O(record) recorded - C(ALTER SYSTEM SET) of the
        value C(postgresql.auto.conf) had, or C(ALTER SYSTEM RESET) of a setting it did not have - reloads the
        server and removes O(record) (nothing when it does not exist).
    type: str
    choices: [present, restored]
    default: present
  record:
    description:
      - A file (in the collection's state directory) where O(state=present) first records what
        C(postgresql.auto.conf) gives each of O(settings), unless it exists (a re-run keeps what they were before
        the first one), for O(state=restored). How a rollback holds C(synchronous_standby_names) empty on the old
        primary until its standbys follow it again.
    type: path
  at_least:
    description:
      - Treat each value as a minimum - a setting the server has at least that much of stays as it is (for
        counts like C(max_logical_replication_workers), where a larger value a DBA chose must not be lowered).
    type: bool
    default: false
  restart:
    description:
      - Restart the server when a setting only takes effect at start. Clients are disconnected for the restart;
        with O(pooler), PgBouncer's databases that lead to this server are PAUSEd around it, so that clients wait
        instead (RESUMEd whatever happens).
    type: bool
    default: false
notes:
  - Supports check mode (RV(statements) lists what would run) and diff mode.
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: What an online upgrade needs of the old server, applied by a restart now
  fleetdb.online_upgrade.settings:
    data_dir: /var/lib/postgresql/15/main
    bin_dir: /usr/lib/postgresql/15/bin
    config_file: /etc/postgresql/15/main/postgresql.conf
    service: {kind: debian, version: "15", cluster: main}
    settings: {wal_level: logical, max_replication_slots: 12, max_wal_senders: 12}
    restart: true

- name: No synchronous standby for a while, then the value given back as it was
  fleetdb.online_upgrade.settings:
    data_dir: /var/lib/fleetdb/postgresql/16/main
    bin_dir: /opt/fleetdb/postgresql/16/bin
    settings: {synchronous_standby_names: ""}
    record: /var/lib/fleetdb/online_upgrade/held_settings.json
"""

RETURN = r"""
statements:
  description: The C(ALTER SYSTEM) statements run (in check mode, that would run).
  returned: always
  type: list
  elements: str
  sample: ["ALTER SYSTEM SET wal_level = 'logical'"]
pending_restart:
  description: Settings that take effect only at the server's next start.
  returned: always
  type: list
  elements: str
restarted:
  description: Whether the server was restarted.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.args import instance_options, pooler_options, spec_from
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def restart(instance, pooler):
    """Restart the server; clients behind ``pooler`` wait in its PAUSE meanwhile."""
    names = []
    if pooler is not None:
        names = [row["name"] for row in pooler.entries(instance.postmaster()["port"], instance.databases())]
        pooler.pause(names)
    try:
        instance.restart()
    finally:
        if names:
            pooler.resume(names)


def main():
    argument_spec = instance_options()
    argument_spec.update(engine=engine_option(), settings=dict(type="dict"), restart=dict(type="bool", default=False),
                         at_least=dict(type="bool", default=False),
                         state=dict(type="str", choices=["present", "restored"], default="present"),
                         record=dict(type="path"),
                         pooler=dict(type="dict", options=pooler_options()))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "present", ("settings",)), ("state", "restored", ("record",))])
    p = module.params
    engine = get_engine(p["engine"])
    instance = engine.instance(module, spec_from(p))
    try:
        if p["state"] == "restored":
            result = instance.give_back_settings(p["record"])
        else:
            result = instance.alter_system(p["settings"], at_least=p["at_least"], record=p["record"])
        result["restarted"] = False
        if p["restart"] and result["pending_restart"] and not module.check_mode:
            restart(instance, engine.pooler(p["pooler"]))
            result.update(changed=True, restarted=True, pending_restart=[])
    except OperationError as exc:
        module.fail_json(**exc.as_result())
    if result["pending_restart"]:
        module.warn("these settings take effect at the next start of the server: %s (restart: true restarts it)"
                    % ", ".join(result["pending_restart"]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
