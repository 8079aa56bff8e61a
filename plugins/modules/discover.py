#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: discover
short_description: Find the running server of a port as its host runs it, and plan the new instance alike
version_added: "1.1.0"
description:
  - Reads the running postmaster that serves O(port) (its socket lock file, or else its own C(postmaster.pid),
    found through the working directory of each running C(postgres) process, which names its data directory,
    port and first socket directory; its executable, owner, cgroup) and the server itself (C(SHOW
    data_directory), C(config_file), C(hba_file), C(ident_file), C(unix_socket_directories)), and finds its
    service manager - a postgresql-common cluster (Debian, Ubuntu), a systemd unit of its own (PGDG packages), or
    none (a bare C(pg_ctl) server). Its socket may be in any directory.
  - "A server with no Unix socket in a directory (C(unix_socket_directories = ''), TCP only) is refused before
    anything changes, since every session of the upgrade logs in as its owner by peer authentication on a socket.
    The fix names the statement that gives it one in O(socket_dir) and the command that restarts it on this host."
  - Plans the new instance in the same layout - for a Debian cluster C(/etc/postgresql/<new>/<cluster>),
    C(/var/lib/postgresql/<new>/<cluster>) and binaries under C(/usr/lib/postgresql/<new>); for a unit, the unit
    and data directory named with the new version.
  - What it found is recorded in O(state_file), so that later runs (after the cutover, when the new server
    serves the port, or for a rollback) see the layout as it was before the upgrade.
options:
  port:
    description:
      - The production port the old server serves.
    type: int
    default: 5432
  socket_dir:
    description:
      - Where to look first for the server's Unix socket (C(/var/run/postgresql), C(/run/postgresql) and C(/tmp)
        are looked at too, then every running postmaster's C(postmaster.pid)), and the directory the fix for a
        server without a Unix socket proposes.
    type: path
    default: /var/run/postgresql
  login_user:
    description:
      - Role to ask the server with; defaults to the OS user that runs it, by peer authentication.
    type: str
  login_password:
    description:
      - Password of O(login_user). Never returned or logged.
    type: str
  old_version:
    description:
      - Major version the old server must have; a server of another version on O(port) is an error.
    type: str
    required: true
  new_version:
    description:
      - Major version of the new release, for the plan of the new instance.
    type: str
    required: true
  prefix:
    description:
      - Where binary archives are unpacked (C(<prefix>/<major>)); defaults to C(/usr/lib/postgresql) for a Debian
        cluster and C(/opt/fleetdb/postgresql) otherwise.
    type: path
  state_file:
    description:
      - File recording what was found.
    type: path
    default: /var/lib/fleetdb/online_upgrade/discovery.json
  record:
    description:
      - Write what was found to O(state_file). The role reads first with V(false), and records only once the
        upgrade begins (its install step), so that a host refused by preflight is left exactly as it was.
    type: bool
    default: true
notes:
  - Supports check mode (it reads only; the record is not written).
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Find the server of port 5432 and plan PostgreSQL 18 beside it
  fleetdb.online_upgrade.discover:
    port: 5432
    old_version: "15"
    new_version: "18"
  register: found

- name: Show it
  ansible.builtin.debug:
    msg: "{{ found.old.service.kind }} {{ found.old.data_dir }} -> {{ found.new.data_dir }}"
"""

RETURN = r"""
old:
  description:
    - The old instance - C(data_dir), C(bin_dir), C(owner), C(port), C(socket_dir) (the socket directory this
      collection's sessions use), C(socket_directories) (every entry of its C(unix_socket_directories), in order;
      the new instance serves them all), C(config_file) (null when in the data directory), C(hba_file),
      C(ident_file), C(version), C(major), C(service) (C(kind), C(unit), C(version), C(cluster)).
  returned: always
  type: dict
  contains:
    socket_directories:
      description: Every directory the old server serves its Unix socket in; absent from a record of an older version.
      type: list
      elements: str
      sample: [/var/run/postgresql, /tmp]
reason:
  description:
    - Why discovery failed - C(not_found) (nothing serves O(port)), C(no_socket) (no Unix socket where this
      collection can log in) or C(login) (peer authentication refused).
  returned: on failure
  type: str
new:
  description: The planned new instance - C(data_dir), C(config_file), C(prefix), C(service).
  returned: always
  type: dict
recorded:
  description: Whether the result comes from O(state_file) (an earlier discovery) rather than the running server.
  returned: always
  type: bool
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, read_text, write_file)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def main():
    module = AnsibleModule(
        argument_spec=dict(
            engine=engine_option(),
            port=dict(type="int", default=5432),
            socket_dir=dict(type="path", default="/var/run/postgresql"),
            login_user=dict(type="str"),
            login_password=dict(type="str", no_log=True),
            old_version=dict(type="str", required=True),
            new_version=dict(type="str", required=True),
            prefix=dict(type="path"),
            state_file=dict(type="path", default="/var/lib/fleetdb/online_upgrade/discovery.json"),
            record=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    engine = get_engine(p["engine"])
    old_major = p["old_version"].split(".")[0]
    recorded = json.loads(read_text(p["state_file"]) or "{}")
    if recorded.get("old", {}).get("major") == old_major and recorded.get("old", {}).get("port") == p["port"]:
        recorded["new"] = engine.plan_new(recorded["old"], p["new_version"].split(".")[0], p["prefix"])
        module.exit_json(changed=False, old=recorded["old"], new=recorded["new"], recorded=True)
    try:
        old = engine.discover(module, p["port"], socket_dir=p["socket_dir"], login_user=p["login_user"],
                              login_password=p["login_password"])
    except OperationError as exc:
        module.fail_json(**exc.as_result())
    if old["major"] != old_major:
        module.fail_json(msg="port %d is served by PostgreSQL %s (%s), not %s. Fix: set online_upgrade_old_version "
                             "to %s, or online_upgrade_port to the port of the PostgreSQL %s server"
                             % (p["port"], old["version"], old["data_dir"], old_major, old["major"], old_major),
                         old=old)
    new = engine.plan_new(old, p["new_version"].split(".")[0], p["prefix"])
    changed = False
    if p["record"] and not module.check_mode:
        if not os.path.isdir(os.path.dirname(p["state_file"])):
            os.makedirs(os.path.dirname(p["state_file"]), 0o755)
        old.pop("pid", None)
        changed, _diff = write_file(module, p["state_file"], json.dumps(dict(old=old), indent=1, sort_keys=True) + "\n",
                                    mode=0o644)
    module.exit_json(changed=changed, old=old, new=new, recorded=False)


if __name__ == "__main__":
    main()
