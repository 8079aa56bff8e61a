#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: instance
short_description: Create a database instance and manage its settings, without starting it
version_added: "1.0.0"
description:
  - Creates the data directory of an instance when there is none (C(initdb) as O(owner), with
    C(--auth-local=peer --auth-host=scram-sha-256), the O(encoding) and O(locale) given, and data checksums as
    O(data_checksums) says), then writes the settings this collection manages.
  - "Managed settings live in C(<data_dir>/fleetdb.conf): O(port), O(socket_directories) and O(socket_dir) (as
    C(unix_socket_directories)), O(inherited_settings) and O(settings). The file holds exactly these: a
    setting dropped from O(settings) is removed from it; without O(port) the configured port is kept.
    C(postgresql.conf) includes it from one line
    appended once, C(include_if_exists = 'fleetdb.conf'), so these settings win over the ones above that line
    and the rest of C(postgresql.conf) stays as it is."
  - A data directory of another major version than the one in O(bin_dir) is never touched; the task fails
    naming both versions. So is a non-empty directory that is no data directory.
  - New values are checked by PostgreSQL itself (C(postgres -C) with them as C(-c) options) before
    C(fleetdb.conf) is written; a value it rejects fails the task with its message, and nothing is written.
  - When the server runs, it is reloaded after a change, and RV(pending_restart) lists what needs a restart.
    The server is never started, stopped or restarted here; use M(fleetdb.online_upgrade.server).
  - Makes sure each socket directory exists (a missing one is created owned by O(owner), mode 2775).
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance
options:
  settings:
    description:
      - Server settings for C(fleetdb.conf), for example C(wal_level), C(max_replication_slots),
        C(listen_addresses), C(shared_buffers). Values may be strings, numbers, booleans (written C(on)/C(off))
        or lists (joined with commas, for C(shared_preload_libraries)).
      - C(port) and C(unix_socket_directories) are set with O(port), O(socket_directories) and O(socket_dir) instead.
      - A name the release does not know fails the task (extension settings, with a dot, are accepted).
    type: dict
    default: {}
  inherited_settings:
    description:
      - Settings carried over from another instance, typically the old instance of an upgrade
        (the C(old_settings) that M(fleetdb.online_upgrade.preflight) returns). O(settings) win over them.
      - Names the release does not know (settings removed in the new major version) are skipped and reported
        in RV(skipped_settings).
    type: dict
    default: {}
  socket_directories:
    description:
      - Every directory the server serves its Unix-domain socket in (C(unix_socket_directories)), in order, for
        example those of the old instance of an upgrade (RV(fleetdb.online_upgrade.discover#module:old.socket_directories)),
        so that its clients find the new server wherever they look.
      - O(socket_dir), where this collection's own sessions connect, is added at the end unless it is one of them.
      - Unset, the server serves O(socket_dir) alone.
    type: list
    elements: str
  data_checksums:
    description:
      - Whether a new data directory gets data page checksums. Unset means the release's default, which is
        on from PostgreSQL 18 and off before.
      - Set it explicitly to make a new instance match the old one. For an existing data directory a
        mismatch fails the task (C(pg_checksums) changes it while the server is stopped).
    type: bool
  locale:
    description:
      - Locale of a new data directory (C(initdb --locale)), for every category that O(lc_collate) and
        O(lc_ctype) do not set.
    type: str
    default: C.UTF-8
  lc_collate:
    description:
      - C(LC_COLLATE) of a new data directory, when it differs from O(locale).
    type: str
  lc_ctype:
    description:
      - C(LC_CTYPE) of a new data directory, when it differs from O(locale).
    type: str
  locale_provider:
    description:
      - Locale provider of a new data directory (C(initdb --locale-provider)); C(icu) and C(builtin) take their
        locale from O(provider_locale).
    type: str
    choices: [libc, icu, builtin]
    default: libc
  provider_locale:
    description:
      - The ICU locale (C(--icu-locale)) or the builtin one (C(--builtin-locale)) of O(locale_provider).
    type: str
  encoding:
    description:
      - Encoding of a new data directory (C(initdb --encoding)).
    type: str
    default: UTF8
  port:
    description:
      - Port to write to C(fleetdb.conf).
      - Unset keeps the port the instance is configured for (changed by M(fleetdb.online_upgrade.port), for
        example); a new instance then gets PostgreSQL's default, 5432.
    type: int
    default: null
  hba_content:
    description:
      - The whole content of C(pg_hba.conf), for example the old instance's rules. Unset leaves the file alone.
      - When the server runs, the new rules are checked with C(pg_hba_file_rules) before the reload; rules with
        errors are not kept.
    type: str
  state:
    description:
      - C(absent) stops the server and removes the instance the way its layout has it - C(pg_dropcluster) for a
        Debian cluster (configuration and data), the unit file this collection installed, the data directory,
        and the instance's own C(PG_<major>_<catalog>) directory in each of its tablespaces (another major
        version's beside it stays).
    type: str
    default: present
    choices: [present, absent]
  inherit_from:
    description:
      - An instance (running or not) whose client authentication files (C(pg_hba.conf) and C(pg_ident.conf),
        wherever its configuration keeps them) this instance gets, unless O(hba_content) is given.
      - The SSL files that O(inherited_settings) name inside its data directory (C(ssl_cert_file),
        C(ssl_key_file), C(ssl_ca_file), C(ssl_crl_file), C(ssl_crl_dir), C(ssl_dh_params_file); a relative name is
        relative to it) are copied into this data directory under the same name, with their mode, owned by
        O(owner); files elsewhere are named by their absolute path. Their contents are never shown.
    type: dict
    suboptions:
      data_dir:
        description: Data directory of that instance.
        type: path
        required: true
      bin_dir:
        description: Its release's binaries.
        type: path
        required: true
      owner:
        description: Its owner.
        type: str
        default: postgres
      port:
        description: Its port.
        type: int
        default: 5432
      socket_dir:
        description: Its socket directory.
        type: path
        default: /var/run/postgresql
      login_user:
        description: Role for administrative connections.
        type: str
      login_password:
        description: Password of O(inherit_from.login_user).
        type: str
      dbname:
        description: Database for administrative connections.
        type: str
        default: postgres
      config_file:
        description: Its postgresql.conf when not in its data directory.
        type: path
      service:
        description: Who runs it.
        type: dict
        suboptions:
          kind:
            description: C(pg_ctl), C(systemd) or C(debian).
            type: str
            default: pg_ctl
            choices: [pg_ctl, systemd, debian]
          unit:
            description: The systemd unit.
            type: str
          version:
            description: The postgresql-common version directory.
            type: str
          cluster:
            description: The postgresql-common cluster name.
            type: str
notes:
  - Supports check mode and diff mode (C(fleetdb.conf), the include line of C(postgresql.conf), C(pg_hba.conf),
    C(pg_ident.conf)).
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Create the PostgreSQL 16 instance, configured for port 5432 and logical replication
  fleetdb.online_upgrade.instance:
    data_dir: /var/lib/fleetdb/postgresql/16/main
    bin_dir: "{{ pg16.bin_dir }}"
    port: 5432
    data_checksums: true
    settings:
      wal_level: logical
      max_replication_slots: 10
      max_wal_senders: 10
      listen_addresses: "*"
  register: instance16

- name: Restart it when a changed setting needs it
  fleetdb.online_upgrade.server:
    data_dir: /var/lib/fleetdb/postgresql/16/main
    bin_dir: "{{ pg16.bin_dir }}"
    state: restarted
  when: instance16.restart_required
"""

RETURN = r"""
data_dir:
  description: The data directory.
  returned: always
  type: str
  sample: /var/lib/fleetdb/postgresql/16/main
major:
  description: Major version of the instance.
  returned: always
  type: str
  sample: "16"
port:
  description: The port the instance is configured for (5432 when nothing sets it).
  returned: always
  type: int
  sample: 5432
settings:
  description: Everything C(fleetdb.conf) holds now, as text values.
  returned: always
  type: dict
  sample: {port: "5432", unix_socket_directories: "/var/run/postgresql, /tmp", wal_level: logical}
changed_settings:
  description: Names of the settings added, changed or removed in C(fleetdb.conf).
  returned: always
  type: list
  elements: str
skipped_settings:
  description: Names from O(inherited_settings) the release does not know; they were not written.
  returned: always
  type: list
  elements: str
ssl_files_copied:
  description: SSL files copied (or, in check mode, to copy) from the data directory of O(inherit_from), relative to it.
  returned: when the instance was created or configured
  type: list
  elements: str
  sample: [server.crt, server.key]
created:
  description: Whether the data directory was created (C(initdb) ran).
  returned: always
  type: bool
data_checksums:
  description: Whether the data directory has data page checksums (unknown in check mode before it exists).
  returned: always
  type: bool
restart_required:
  description:
    - Whether a changed setting takes effect only when the server (re)starts (context C(postmaster)), or the
      running server reports settings pending a restart.
  returned: always
  type: bool
pending_restart:
  description: Settings the running server has read but applies only after a restart (C(pg_settings.pending_restart)).
  returned: always
  type: list
  elements: str
  sample: [wal_level]
reloaded:
  description: Whether the running server was reloaded.
  returned: always
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.args import (
    instance_options, instance_suboptions, spec_from)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def main():
    argument_spec = instance_options()
    argument_spec.update(
        engine=engine_option(),
        port=dict(type="int"),
        socket_directories=dict(type="list", elements="str"),
        settings=dict(type="dict", default={}),
        inherited_settings=dict(type="dict", default={}),
        data_checksums=dict(type="bool"),
        locale=dict(type="str", default="C.UTF-8"),
        lc_collate=dict(type="str"),
        lc_ctype=dict(type="str"),
        locale_provider=dict(type="str", default="libc", choices=["libc", "icu", "builtin"]),
        provider_locale=dict(type="str"),
        encoding=dict(type="str", default="UTF8"),
        hba_content=dict(type="str"),
        inherit_from=dict(type="dict", options=instance_suboptions()),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    instance = get_engine(p["engine"]).instance(module, spec_from(p))
    if p["state"] == "absent":
        try:
            removed = instance.remove()
        except OperationError as exc:
            module.fail_json(**exc.as_result())
        module.exit_json(data_dir=p["data_dir"], **removed)
    if module.check_mode and not os.path.isfile(os.path.join(p["bin_dir"], "postgres")):
        # A check run of a playbook that would install the release first: say what would happen.
        module.exit_json(changed=True, created=True, data_dir=p["data_dir"], major=None, port=p["port"],
                         data_checksums=p["data_checksums"], settings={}, changed_settings=[], skipped_settings=[],
                         restart_required=False, pending_restart=[], reloaded=False,
                         msg="would create the instance with the binaries of %s once they are installed" % p["bin_dir"])
    try:
        # Settings checked before anything is created: names this release knows, libraries it has.
        instance.desired_settings(p["settings"], p["inherited_settings"])
        locale = dict(encoding=p["encoding"], locale=p["locale"], lc_collate=p["lc_collate"], lc_ctype=p["lc_ctype"],
                      provider=p["locale_provider"], provider_locale=p["provider_locale"])
        created = instance.create(data_checksums=p["data_checksums"], locale=locale)
        socket_dir_created = instance.ensure_socket_dir()
        hba, ident, inherited, ssl_files = p["hba_content"], None, p["inherited_settings"], []
        if p["inherit_from"]:
            # Client authentication as the old instance has it, wherever its configuration names the files.
            old = get_engine(p["engine"]).instance(module, spec_from(p["inherit_from"]))
            hba = hba if hba is not None else old.read_hba()
            ident = old.read_ident()
            inherited, ssl_files = instance.carry_ssl_files(old, inherited)
        configured = instance.configure(p["settings"], inherited, hba, ident)
    except OperationError as exc:
        module.fail_json(**exc.as_result())
    for name in configured["skipped_settings"]:
        module.warn("inherited setting %s is unknown to PostgreSQL %s and was not written"
                    % (name, instance.binaries_version()))
    module.exit_json(
        changed=created["created"] or socket_dir_created or configured["changed"] or bool(ssl_files),
        ssl_files_copied=ssl_files,
        diff=configured["diff"],
        data_dir=p["data_dir"],
        major=instance.binaries_major(),
        port=configured["port"],
        created=created["created"],
        data_checksums=created["data_checksums"],
        settings=configured["settings"],
        changed_settings=configured["changed_settings"],
        skipped_settings=configured["skipped_settings"],
        restart_required=configured["restart_required"],
        pending_restart=configured["pending_restart"],
        reloaded=configured["reloaded"],
    )


if __name__ == "__main__":
    main()
