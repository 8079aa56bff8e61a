#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: port
short_description: Set the port an instance is configured to listen on, without starting it; or ask who holds a port
version_added: "1.0.0"
description:
  - "O(state=present) writes O(port) to C(<data_dir>/fleetdb.conf) (see M(fleetdb.online_upgrade.instance)),
    keeping the other settings there. The server is not started, stopped or restarted: a running server keeps
    its port until its next start (RV(restart_required)). This is how an upgrade gives the new instance the
    production port while the old one still serves it, and moves the old instance away afterwards."
  - Refuses a port that another process listens on (TCP, or a PostgreSQL Unix socket in O(socket_dir)), naming
    that process, unless O(force=true). The port held by this very instance is fine.
  - After the change, the configuration is loaded with C(postgres -C port) to make sure nothing read later
    (C(postgresql.auto.conf) from C(ALTER SYSTEM)) overrides it.
  - "O(state=query) only reports who holds O(port): RV(holder); it needs nothing but O(port)."
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance
options:
  port:
    description:
      - The port to configure (O(state=present)) or to look at (O(state=query)).
    type: int
    required: true
    default: null
  state:
    description:
      - V(present) configures the port; V(query) reports who holds it and changes nothing.
    type: str
    choices: [present, query]
    default: present
  force:
    description:
      - Configure the port even when another process holds it now, for example a server that is about to
        move away. The server of this instance will not start while the port stays held.
    type: bool
    default: false
  data_dir:
    description:
      - Data directory of the instance. Required with O(state=present).
    type: path
    required: false
  bin_dir:
    description:
      - Directory of the release's binaries. Required with O(state=present).
    type: path
    required: false
notes:
  - Supports check mode and diff mode (C(fleetdb.conf)).
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Configure the new instance for the production port while the old server still serves it
  fleetdb.online_upgrade.port:
    data_dir: /var/lib/fleetdb/postgresql/18/main
    bin_dir: /opt/fleetdb/postgresql/18/bin
    port: 5432
    force: true

- name: Who listens on 5433?
  fleetdb.online_upgrade.port:
    port: 5433
    state: query
  register: who

- name: Show it
  ansible.builtin.debug:
    msg: "{{ 'free' if who.holder is none else 'held by pid %s (%s)' % (who.holder.pid, who.holder.cmdline) }}"
"""

RETURN = r"""
configured_port:
  description: The port the instance is configured for now (in check mode, would be).
  returned: with O(state=present)
  type: int
  sample: 5433
previous_port:
  description: The port the configuration resolved to before, None when it did not load.
  returned: with O(state=present)
  type: int
  sample: 5432
holder:
  description:
    - Who listens on O(port), None when nobody does. C(pid) is None when the process is not visible.
    - C(this_instance) (when O(data_dir) is given) is true when it is the server of that instance.
  returned: always
  type: dict
  sample: {pid: 1234, command: postgres, cmdline: "/opt/fleetdb/postgresql/16/bin/postgres -D /data", user: postgres,
           this_instance: false}
in_use:
  description: Whether some process holds O(port).
  returned: always
  type: bool
running_port:
  description: The port the server of the instance runs on now, None when it is stopped.
  returned: with O(state=present)
  type: int
restart_required:
  description: Whether the running server listens elsewhere than configured (it moves at its next start).
  returned: with O(state=present)
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.args import instance_options, spec_from
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError, port_holder
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def main():
    argument_spec = instance_options(required_data_dir=False)
    argument_spec.update(
        engine=engine_option(),
        bin_dir=dict(type="path"),
        port=dict(type="int", required=True),
        state=dict(type="str", choices=["present", "query"], default="present"),
        force=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "present", ("data_dir", "bin_dir"))])
    p = module.params
    port = p["port"]
    if p["state"] == "query" and not p["data_dir"]:
        holder = port_holder(port)
        module.exit_json(changed=False, port=port, holder=holder, in_use=holder is not None)
    instance = get_engine(p["engine"]).instance(module, spec_from(p))
    try:
        holder = instance.port_user(port)
        if p["state"] == "query":
            module.exit_json(changed=False, port=port, holder=holder, in_use=holder is not None,
                             configured_port=instance.configured_port())
        if holder and not holder["this_instance"] and not p["force"]:
            raise OperationError(
                "port %d is held by pid %s (%s); the server of %s could not start on it, nothing was changed"
                % (port, holder["pid"] or "unknown", holder["cmdline"] or holder["command"] or "not visible",
                   p["data_dir"]),
                "stop that process, choose another port, or set force=true if it will be gone before this "
                "server starts", holder=holder)
        result = instance.set_port(port)
    except OperationError as exc:
        module.fail_json(**exc.as_result())
    running = instance.postmaster()
    module.exit_json(changed=result["changed"], diff=result["diff"], port=port,
                     configured_port=result["configured_port"], previous_port=result["previous_port"],
                     holder=holder, in_use=holder is not None, running_port=running["port"] if running else None,
                     restart_required=result["restart_required"])


if __name__ == "__main__":
    main()
