#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: server
short_description: Start, stop, restart or reload the server of an instance, or report its status
version_added: "1.0.0"
description:
  - Runs C(pg_ctl) as O(owner) (never as root) with the server log in O(log_file).
  - "V(started): starts the server and waits until it B(accepts connections) (a login attempt on the Unix socket
    gets past the startup phase, as C(pg_isready) means it), not just until C(pg_ctl) returns. A server already
    running on the requested port is left alone (no change)."
  - "O(port) starts the server on another port than the configured one (C(pg_ctl -o \"-p N\")) without changing
    the configuration, as an upgrade does with the new server while the old one holds the production port.
    A server running on a different port than requested is B(restarted) on the requested one."
  - Before starting (or restarting) it checks that no other process holds the port, naming the process when one
    does; nothing is changed then.
  - "V(stopped): stops the server in O(mode). V(restarted): stops it if it runs, then starts it. V(reloaded):
    makes a running server read its configuration files again (no change, with a warning, when it is stopped).
    V(status): changes nothing."
  - Every state returns the status after the action (in check mode, the status as it is).
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance
options:
  state:
    description:
      - What to do with the server.
    type: str
    choices: [started, stopped, restarted, reloaded, status]
    required: true
  port:
    description:
      - Port to start the server on. Unset means the configured port (C(fleetdb.conf), see
        M(fleetdb.online_upgrade.port)).
      - A port other than the configured one is given on the command line and lasts until the server stops.
    type: int
    default: null
  mode:
    description:
      - Shutdown mode for V(stopped) and V(restarted). V(smart) waits for every session to end, V(fast) ends
        them and checkpoints, V(immediate) stops without a checkpoint (crash recovery at the next start).
    type: str
    choices: [smart, fast, immediate]
    default: fast
  timeout:
    description:
      - Seconds to wait for the server to accept connections after a start, or to stop.
    type: int
    default: 60
  log_file:
    description:
      - Server log (C(pg_ctl -l)). Its directory is created, owned by O(owner), when missing.
      - Defaults to C(<data_dir>/log/server.log).
    type: path
notes:
  - Supports check mode.
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Start the new server on a temporary port, leaving its configured production port as it is
  fleetdb.online_upgrade.server:
    data_dir: /var/lib/fleetdb/postgresql/18/main
    bin_dir: /opt/fleetdb/postgresql/18/bin
    port: 15432
    state: started

- name: Stop the old server, waiting for its sessions to end
  fleetdb.online_upgrade.server:
    data_dir: /var/lib/fleetdb/postgresql/16/main
    bin_dir: /opt/fleetdb/postgresql/16/bin
    state: stopped
    mode: smart
    timeout: 300

- name: Is it up?
  fleetdb.online_upgrade.server:
    data_dir: /var/lib/fleetdb/postgresql/18/main
    bin_dir: /opt/fleetdb/postgresql/18/bin
    state: status
  register: pg18

- name: Report
  ansible.builtin.debug:
    msg: "PostgreSQL {{ pg18.version }} pid {{ pg18.pid }} on port {{ pg18.port }}, accepting: {{ pg18.accepting }}"
"""

RETURN = r"""
running:
  description: Whether the server runs (a live postmaster owns C(postmaster.pid)).
  returned: always
  type: bool
pid:
  description: Process id of the postmaster, None when stopped.
  returned: always
  type: int
  sample: 4242
port:
  description: Port the server runs on (line 4 of C(postmaster.pid)), None when stopped.
  returned: always
  type: int
  sample: 15432
configured_port:
  description: Port the configuration files set, used when the server starts without O(port).
  returned: always
  type: int
  sample: 5432
accepting:
  description: Whether the server accepts connections now.
  returned: always
  type: bool
version:
  description: Version of the running server, or of the binaries in O(bin_dir) when it is stopped.
  returned: always
  type: str
  sample: "16.15"
postmaster_status:
  description: The server's own state from C(postmaster.pid) (C(starting), C(ready), C(standby), C(stopping)).
  returned: when the server runs
  type: str
  sample: ready
major:
  description: Major version of the data directory.
  returned: always
  type: str
  sample: "16"
restarted:
  description: Whether a running server was stopped and started again (to move it to O(port), or V(restarted)).
  returned: with O(state=started) and O(state=restarted)
  type: bool
log_file:
  description: The server log.
  returned: always
  type: str
  sample: /var/lib/fleetdb/postgresql/16/main/log/server.log
holder:
  description: The process that holds the requested port.
  returned: when the server cannot start because the port is held
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.args import instance_options, spec_from
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def act(instance, params):
    state = params["state"]
    if state == "started":
        return instance.start(port=params["port"], timeout=params["timeout"])
    if state == "stopped":
        return instance.stop(mode=params["mode"], timeout=params["timeout"])
    if state == "restarted":
        return instance.restart(port=params["port"], mode=params["mode"], timeout=params["timeout"])
    if state == "reloaded":
        if instance.reload():
            return dict(changed=True, msg="reloaded the configuration")
        instance.module.warn("the server of %s is not running: nothing to reload" % params["data_dir"])
        return dict(changed=False, msg="the server is not running")
    return dict(changed=False)


def main():
    argument_spec = instance_options()
    argument_spec.update(
        engine=engine_option(),
        state=dict(type="str", choices=["started", "stopped", "restarted", "reloaded", "status"], required=True),
        port=dict(type="int"),
        mode=dict(type="str", choices=["smart", "fast", "immediate"], default="fast"),
        timeout=dict(type="int", default=60),
        log_file=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    spec = spec_from(p)
    spec.log_file = p["log_file"]
    instance = get_engine(p["engine"]).instance(module, spec)
    try:
        result = act(instance, p)
        status = instance.status()
    except OperationError as exc:
        module.fail_json(**exc.as_result())
    status.update((key, result[key]) for key in ("changed", "msg", "restarted") if key in result)
    module.exit_json(**status)


if __name__ == "__main__":
    main()
