#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: preflight
short_description: Check that a host is fit for an online upgrade, changing nothing
version_added: "1.0.0"
description:
  - Checks, against the running old server, everything that would make the upgrade fail halfway,
    and reports each finding with what to do about it.
  - "Versions: the new major version is newer than the running one. Binaries and data directory of the
    old release are where they are said to be. Extensions and C(shared_preload_libraries): the new release
    has each one the databases use, when its files are on the host already. Disk: the file system of the new data directory can
    hold a second copy. Settings: C(wal_level=logical), enough replication slots and WAL senders (each
    with the restart it needs). Tables without a primary key or replica identity. Transactions open
    for long. The port plan: production, temporary and old-after ports distinct, and not held by a
    foreign process. With O(pooler): PgBouncer's admin console answers, the pool mode of each database it
    pauses lets PAUSE finish (transaction or statement pooling), and its C(query_wait_timeout) and
    C(query_timeout) outlast the pause."
  - Read-only; runs the same in check mode.
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance.old
  - fleetdb.online_upgrade.pooler
options:
  new_version:
    description:
      - Major version to upgrade to, e.g. C(18).
    type: str
    required: true
  new_data_dir:
    description:
      - Data directory the new instance will use.
    type: path
    required: true
  databases:
    description:
      - Databases to upgrade. Empty means every database that accepts connections, templates excepted.
    type: list
    elements: str
    default: []
  method:
    description:
      - C(replication) checks what logical replication needs; C(dump_restore) skips those checks.
    type: str
    choices: [replication, dump_restore]
    default: replication
  copy_method:
    description:
      - With O(method=replication), how the initial copy is made. V(physical) also refuses what
        M(fleetdb.online_upgrade.physical_copy) cannot carry - tablespaces, a template0 whose locale provider is not
        libc.
    type: str
    choices: [logical, physical]
    default: logical
  physical_copy_max_rate:
    description:
      - With O(copy_method=physical), the base backup's rate limit (O(fleetdb.online_upgrade.physical_copy#module:max_rate)),
        checked here so that a typo stops the upgrade before anything changes.
    type: str
  new_install_method:
    description:
      - How the new release is (to be) installed (M(fleetdb.online_upgrade.install)'s O(fleetdb.online_upgrade.install#module:method)),
        which says where its files are. When they are there already, the extensions and C(shared_preload_libraries)
        the databases use are checked against them here; otherwise the install step checks them
        (RV(new_release_needs)).
    type: str
    choices: [archive, package]
    default: archive
  new_prefix:
    description:
      - With O(new_install_method=archive), the directory holding one directory per major release.
    type: path
    default: /opt/fleetdb/postgresql
  temporary_port:
    description:
      - Port the new server uses during the copy.
    type: int
    required: true
  old_port_after:
    description:
      - Port the old server is configured for after the cutover.
    type: int
    required: true
  tables_without_key:
    description:
      - C(fail) reports tables without a primary key or replica identity as a problem;
        C(replica_identity_full) reports them as a warning (they will be replicated with REPLICA IDENTITY FULL).
    type: str
    choices: [fail, replica_identity_full]
    default: fail
  unlogged_tables:
    description:
      - C(fail) reports unlogged tables as a problem (logical replication does not carry their rows);
        C(empty) reports them as a warning (they exist on the new server, empty).
    type: str
    choices: [fail, empty]
    default: fail
  replication_password_set:
    description:
      - Whether the caller has a password for the replication role (the password itself is not needed here).
    type: bool
    default: true
  min_free_disk_ratio:
    description:
      - Free space needed on the new data directory's file system, as a multiple of the old databases' size.
    type: float
    default: 1.2
  max_transaction_age:
    description:
      - Transactions open longer than this many seconds are reported.
    type: int
    default: 300
  standbys:
    description:
      - The hosts the inventory names as this primary's physical standbys (those with C(online_upgrade_primary) set
        to it). Each standby streaming from the old server is matched to one by its C(application_name), else by its
        address; one the inventory does not name is refused by name, and so is a host named here that streams not.
      - Every standby is refused for now (their own upgrade is still to be built); RV(standbys) says which host each
        one is.
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: The standby's inventory name.
        type: str
        required: true
      application_name:
        description: The C(application_name) of its C(primary_conninfo). Default O(standbys[].host).
        type: str
      address:
        description: Its address as the primary sees it (C(client_addr)), or a name that resolves to it. Default O(standbys[].host).
        type: str
  inventory_host:
    description:
      - This host's inventory name, for the fix texts about standbys.
    type: str
  standby_of:
    description:
      - This host is a standby of that primary (its inventory name); its own checks are run instead of a primary's -
        the server on O(old.port) is a hot standby (C(hot_standby = on))
        of an older major than O(new_version), nothing streams from it (a cascading standby is refused), the disk
        holds a second copy, the temporary and old-after ports are free, no cluster manager runs.
    type: str
  fail_on_problems:
    description:
      - Fail when a problem is found. With C(false) the findings are only returned.
    type: bool
    default: true
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Check the host before upgrading PostgreSQL 16 to 18
  fleetdb.online_upgrade.preflight:
    old:
      data_dir: /var/lib/fleetdb/postgresql/16/main
      bin_dir: /opt/fleetdb/postgresql/16/bin
      port: 5432
    new_version: "18"
    new_data_dir: /var/lib/fleetdb/postgresql/18/main
    temporary_port: 15432
    old_port_after: 5433
"""

RETURN = r"""
ok:
  description: True when no problem was found.
  returned: always
  type: bool
problems:
  description: Findings that stop the upgrade, each with C(check), C(msg) and C(fix).
  returned: always
  type: list
  elements: dict
cautions:
  description: Findings that do not stop the upgrade (each is also shown as a warning).
  returned: always
  type: list
  elements: dict
databases:
  description: The databases that would be upgraded.
  returned: always
  type: list
  elements: str
old_version:
  description: Version of the running old server.
  returned: when the old server answered
  type: str
  sample: "16.15"
old_size_bytes:
  description: Total size of the old server's databases.
  returned: when the old server answered
  type: int
free_bytes:
  description: Free space on the file system of the new data directory.
  returned: when the old server answered
  type: int
standbys:
  description:
    - The physical standbys streaming from the old server that the inventory names, each with C(host),
      C(application_name), C(client_addr), C(sync_state) (C(async), C(sync), C(potential), C(quorum)) and C(slot).
  returned: with O(method=replication), when the old server answered
  type: list
  elements: dict
  sample: [{"host": "db2", "application_name": "db2", "client_addr": "10.0.0.12", "sync_state": "async", "slot": ""}]
primary:
  description: With O(standby_of), the primary this standby host follows.
  returned: with O(standby_of)
  type: str
pooler:
  description: With O(pooler), PgBouncer's version and the databases the cutover would pause.
  returned: when a pooler was given and its checks passed
  type: dict
old_server_needs:
  description:
    - Settings the old server lacks for the upgrade, with the value each needs (C(wal_level),
      C(max_replication_slots), C(max_wal_senders), C(max_locks_per_transaction)); each is also a problem.
      C(playbooks/prepare.yml) gives them to it (M(fleetdb.online_upgrade.settings)).
  returned: when the old server lacks one
  type: dict
  sample: {"wal_level": "logical", "max_replication_slots": 31}
old_settings:
  description:
    - Settings of the old server's configuration files (C(postgresql.conf), its includes, C(ALTER SYSTEM)) that the
      new instance inherits, C(lc_*), C(TimeZone) and C(default_text_search_config) among them; with C(ssl = on),
      the SSL files' settings too, as the old server names them.
  returned: when the old server answered
  type: dict
synchronous_standby_names:
  description:
    - The old server's C(synchronous_standby_names), which the new instance does not inherit (its commits would
      wait for standbys still switching); give it back to the new primary once every standby it names has switched
      (M(fleetdb.online_upgrade.settings)).
  returned: when the old server's configuration sets it
  type: str
  sample: "FIRST 1 (db2, db3)"
old_locale:
  description:
    - The old cluster's locale as C(initdb) gave it to C(template0) - C(encoding), C(locale), C(lc_collate),
      C(lc_ctype), C(provider) (libc, icu or builtin) and C(provider_locale) - for the new instance's C(initdb).
  returned: when the old server answered
  type: dict
  sample: {"encoding": "UTF8", "locale": "en_US.UTF-8", "lc_collate": "en_US.UTF-8", "lc_ctype": "en_US.UTF-8",
           "provider": "libc", "provider_locale": null}
old_socket_directories:
  description: Every directory the old server serves its Unix socket in (C(unix_socket_directories)), in order.
  returned: when the old server answered
  type: list
  elements: str
  sample: [/var/run/postgresql, /tmp]
new_release_needs:
  description:
    - What the new release must provide - C(extensions) per database with their installed versions,
      C(shared_preload_libraries), and C(update_paths) (a physical copy keeps the old versions, so each needs
      update scripts to the new default). Give it to M(fleetdb.online_upgrade.install)'s
      O(fleetdb.online_upgrade.install#module:release_must_provide).
  returned: when the old server answered
  type: dict
  sample: {"extensions": {"app": {"plpgsql": "1.0", "pg_trgm": "1.6"}}, "shared_preload_libraries": ["pg_stat_statements"],
           "update_paths": false}
new_release_checked:
  description: Whether the new release was on the host, so that RV(new_release_needs) was checked against it here.
  returned: when the old server answered
  type: bool
copy_parallelism:
  description:
    - The logical initial copy sized to this host - half its cores for table syncs per subscription (2 to 8,
      fewer when the old server lacks free replication slots or WAL senders, as C(limited_by) says), as many
      index-build jobs, a quarter of the memory shared by them as C(maintenance_work_mem), and the new
      server's C(settings) that give room to those workers (never fewer than the old server has).
  returned: with O(method=replication), when the old server answered
  type: dict
  sample: {"cores": 8, "memory_mb": 32000, "databases": 1, "sync_workers_per_subscription": 4,
           "parallel_apply_workers_per_subscription": 2, "restore_jobs": 4, "maintenance_work_mem_mb": 2000,
           "limited_by": "cores", "settings": {"max_sync_workers_per_subscription": 4,
           "max_parallel_apply_workers_per_subscription": 2, "max_logical_replication_workers": 7,
           "max_worker_processes": 16}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.args import instance_suboptions, pooler_options, spec_from
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def main():
    module = AnsibleModule(
        argument_spec=dict(
            engine=engine_option(),
            old=dict(type="dict", required=True, options=instance_suboptions()),
            new_version=dict(type="str", required=True),
            new_data_dir=dict(type="path", required=True),
            databases=dict(type="list", elements="str", default=[]),
            method=dict(type="str", choices=["replication", "dump_restore"], default="replication"),
            copy_method=dict(type="str", choices=["logical", "physical"], default="logical"),
            physical_copy_max_rate=dict(type="str"),
            new_install_method=dict(type="str", choices=["archive", "package"], default="archive"),
            new_prefix=dict(type="path", default="/opt/fleetdb/postgresql"),
            temporary_port=dict(type="int", required=True),
            old_port_after=dict(type="int", required=True),
            tables_without_key=dict(type="str", choices=["fail", "replica_identity_full"], default="fail"),
            unlogged_tables=dict(type="str", choices=["fail", "empty"], default="fail"),
            replication_password_set=dict(type="bool", default=True, no_log=False),
            min_free_disk_ratio=dict(type="float", default=1.2),
            max_transaction_age=dict(type="int", default=300),
            fail_on_problems=dict(type="bool", default=True),
            pooler=dict(type="dict", options=pooler_options()),
            standbys=dict(type="list", elements="dict", default=[], options=dict(
                host=dict(type="str", required=True), application_name=dict(type="str"), address=dict(type="str"))),
            inventory_host=dict(type="str"),
            standby_of=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    engine = get_engine(p["engine"])
    preflight = engine.preflight(
        module, spec_from(p["old"]), new_version=p["new_version"], new_data_dir=p["new_data_dir"],
        databases=p["databases"], method=p["method"], temporary_port=p["temporary_port"],
        old_port_after=p["old_port_after"], tables_without_key=p["tables_without_key"],
        replication_password_set=p["replication_password_set"], min_free_disk_ratio=p["min_free_disk_ratio"],
        max_transaction_age=p["max_transaction_age"], unlogged_tables=p["unlogged_tables"],
        pooler=engine.pooler(p["pooler"]), copy_method=p["copy_method"],
        physical_copy_max_rate=p["physical_copy_max_rate"], new_install_method=p["new_install_method"],
        new_prefix=p["new_prefix"], standbys=p["standbys"], inventory_host=p["inventory_host"],
        standby_of=p["standby_of"])
    try:
        result = preflight.run()
    except OperationError as exc:
        module.fail_json(**exc.as_result())
    result["cautions"] = result.pop("warnings")
    if result["problems"] and p["fail_on_problems"]:
        lines = ["%s: %s. Fix: %s" % (x["check"], x["msg"], x["fix"]) for x in result["problems"]]
        module.fail_json(msg="the host is not ready for the upgrade (nothing was changed):\n" + "\n".join(lines),
                         **result)
    for warning in result["cautions"]:
        module.warn("%s: %s" % (warning["check"], warning["msg"]))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
