#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: info
short_description: Installed releases, instances, replication and the Record of Upgrades of a host
version_added: "1.0.0"
description:
  - Read-only. Reports the PostgreSQL releases found in O(bin_dirs) and under O(scan_prefixes), and for each of
    O(instances) its data directory major version, configured port, whether it runs (pid, port, accepting
    connections), its subscriptions and replication slots with their lag, and per database the sets of the
    Record of Upgrades (see M(fleetdb.online_upgrade.migrate)).
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance.instance_list
options:
  bin_dirs:
    description:
      - bin directories to probe.
    type: list
    elements: path
    default: []
  scan_prefixes:
    description:
      - Glob patterns of bin directories to probe as well.
    type: list
    elements: str
    default: [/opt/fleetdb/postgresql/*/bin, /usr/lib/postgresql/*/bin]
notes:
  - Supports check mode (it never changes anything).
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: What is on this host
  fleetdb.online_upgrade.info:
    instances:
      - {data_dir: /var/lib/fleetdb/postgresql/16/main, bin_dir: /opt/fleetdb/postgresql/16/bin, port: 5432}
      - {data_dir: /var/lib/fleetdb/postgresql/18/main, bin_dir: /opt/fleetdb/postgresql/18/bin, port: 6432}
  register: facts
"""

RETURN = r"""
installed:
  description: Releases found (version, major, bin_dir); binaries that do not run are in RV(broken).
  returned: always
  type: list
broken:
  description: bin directories whose binaries do not run, with the reason.
  returned: always
  type: list
instances:
  description: Per instance, data_dir, exists, major, configured_port, running, pid, port, accepting,
    and when it accepts connections, subscriptions, slots and databases (name, record sets).
  returned: always
  type: list
"""

import glob

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.args import instance_suboptions, spec_from
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import DatabaseError, OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def main():
    module = AnsibleModule(
        argument_spec=dict(
            engine=engine_option(),
            bin_dirs=dict(type="list", elements="path", default=[]),
            scan_prefixes=dict(type="list", elements="str",
                               default=["/opt/fleetdb/postgresql/*/bin", "/usr/lib/postgresql/*/bin"]),
            instances=dict(type="list", elements="dict", default=[], options=instance_suboptions()),
        ),
        supports_check_mode=True,
    )
    p = module.params
    engine = get_engine(p["engine"])
    installer = engine.installer(module)
    bin_dirs = list(p["bin_dirs"])
    for pattern in p["scan_prefixes"]:
        bin_dirs.extend(d for d in sorted(glob.glob(pattern)) if d not in bin_dirs)
    installed, broken = [], []
    for bin_dir in bin_dirs:
        try:
            found = installer.probe(bin_dir)
        except OperationError as exc:
            broken.append(dict(bin_dir=bin_dir, reason=exc.as_result()["msg"]))
            continue
        if found:
            installed.append(found)
    instances = []
    for params in p["instances"]:
        spec = spec_from(params)
        try:
            instances.append(engine.inventory(module, spec))
        except (OperationError, DatabaseError) as exc:
            instances.append(dict(data_dir=spec.data_dir, error=str(exc)))
    module.exit_json(changed=False, installed=installed, broken=broken, instances=instances)


if __name__ == "__main__":
    main()
