# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: fleet_summary
short_description: Fold the hosts' upgrade reports into one summary, per host and per wave
version_added: "1.1.0"
description:
  - Takes the reports the role C(fleetdb.online_upgrade.online_upgrade) writes on the controller, one per host
    (C(<online_upgrade_report_dir>/hosts/<host>.json)), and returns the run's summary - each host's timings
    (preflight, install, copy, indexes, catch_up, cutover, retire, total, the client window), outcome and, for a
    primary, the read pause of each standby switched after its cutover (C(standbys)), each wave's hosts, start, end,
    duration and longest read pause of its standbys (C(read_pause_s_max)), and the model a fleet plan is computed from (the fixed part of a host
    and the copy rate; see C(tools/fleetdb_waves.py)).
positional: _input
options:
  _input:
    description: The hosts' reports (parsed JSON).
    type: list
    elements: dict
    required: true
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Write the fleet summary
  ansible.builtin.copy:
    dest: reports/summary.json
    content: "{{ reports | fleetdb.online_upgrade.fleet_summary | to_nice_json }}"
    mode: "0644"
"""

RETURN = r"""
_value:
  description: The summary - C(hosts), C(waves), C(ok), C(failed), C(model).
  type: dict
"""

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.fleet_plan import summarize


class FilterModule(object):
    def filters(self):
        return {"fleet_summary": summarize}
