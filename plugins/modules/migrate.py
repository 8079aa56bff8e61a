#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: migrate
short_description: Save a database into a data file, restore it into a newer server, list or describe the file
version_added: "1.0.0"
description:
  - "V(create) (ttMigrate -c): C(pg_dump -Fc) of O(dbname) (or of O(objects)) from the running instance into O(path),
    schema and data or O(schema_only). Roles go beside it into C(<path>.globals.sql) (C(pg_dumpall --globals-only),
    without passwords unless O(role_passwords)). The dump tool comes from O(tool_bin_dir), the newer release,
    and must not be older than the server."
  - "V(restore) (ttMigrate -r): restores O(path) into the instance, which may run a newer major version. An extension
    of the dump that the instance cannot install stops it before anything is restored. Roles first (existing ones
    are left alone), the database is created as the dump recorded it when missing (with its settings, comment and
    privileges), the owner of schemas that exist already (C(public)) is set as recorded, then the O(sections).
    Every object that already exists in the target is left out, so a restore can be re-run and V(post-data) after
    V(keys) builds only the rest."
  - "V(keys) is a section of this module: primary key, unique and exclusion constraints and replica-identity indexes,
    which logical replication needs before the initial copy. Secondary indexes and foreign keys stay in V(post-data),
    restored once the copy is done."
  - "Record of Upgrades: a restore that includes V(pre-data) adds to the target database a numbered set of tables
    C(fleetdb_upgrade_record.ttrep_schema_version_NNN_{upgrade,publications,subscriptions,tables}) describing the
    upgrade and the replication scheme of the dump. Earlier sets come with the schema (they are in the database) and
    their rows come by replication (the tables have primary keys and are published like user tables). Restoring a file
    already recorded (same sha256) adds nothing."
  - "V(list) and V(describe) (ttMigrate -l / -d) read the file without restoring: its TOC entries, or its database,
    versions, tables, counts by object type and whether data is included."
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance
options:
  mode:
    description:
      - What to do.
    type: str
    choices: [create, restore, list, describe]
    required: true
  path:
    description:
      - The data file (custom format). Its directory must exist and be writable by O(owner) for V(create).
    type: path
    required: true
  data_dir:
    description:
      - Data directory of the instance. Not used by this module; accepted so that instance dicts can be passed whole.
    type: path
    required: false
    default: null
  tool_bin_dir:
    description:
      - bin directory whose C(pg_dump), C(pg_dumpall) and C(pg_restore -l) are used; for an upgrade, the newer
        release's. Defaults to O(bin_dir). V(restore) always uses the target's own O(bin_dir).
    type: path
  objects:
    description:
      - For V(create), only these objects; C(schema.table) names a table, a name without a dot a schema.
    type: list
    elements: str
  schema_only:
    description:
      - For V(create), save definitions without rows (C(pg_dump --section=pre-data --section=post-data
        --no-blobs)). Populated materialized views are refreshed when the post-data section is restored, so they
        hold rows on the new server as after a C(REFRESH MATERIALIZED VIEW) there; large objects are left out.
    type: bool
    default: false
  globals:
    description:
      - For V(create), also save roles and tablespaces into C(<path>.globals.sql).
    type: bool
    default: true
  role_passwords:
    description:
      - Include the roles' password hashes in the globals file.
    type: bool
    default: false
  sections:
    description:
      - For V(restore), what to restore, in this order.
    type: list
    elements: str
    choices: [pre-data, keys, data, post-data]
    default: [pre-data, data, post-data]
  jobs:
    description:
      - Parallel jobs of C(pg_restore). With 1 the restore runs in a single transaction.
    type: int
    default: 1
  maintenance_work_mem_mb:
    description:
      - For V(restore), the memory each C(pg_restore) session may use to build an index (C(maintenance_work_mem),
        set for its sessions only, through C(PGOPTIONS)). The server's setting when unset.
    type: int
  create_database:
    description:
      - Create the target database when missing, with the owner, encoding and locale the dump recorded.
    type: bool
    default: true
  record:
    description:
      - Add a set to the Record of Upgrades when V(pre-data) is restored.
    type: bool
    default: true
notes:
  - Supports check mode; V(create) and V(restore) report what they would do.
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Save the schema of app from PostgreSQL 16 with the pg_dump of 18
  fleetdb.online_upgrade.migrate:
    mode: create
    bin_dir: /opt/fleetdb/postgresql/16/bin
    tool_bin_dir: /opt/fleetdb/postgresql/18/bin
    port: 5432
    dbname: app
    schema_only: true
    path: /var/lib/fleetdb/online_upgrade/app.schema.dump

- name: Restore tables and keys into 18 (indexes and foreign keys after the initial copy)
  fleetdb.online_upgrade.migrate:
    mode: restore
    bin_dir: /opt/fleetdb/postgresql/18/bin
    port: 6432
    dbname: app
    path: /var/lib/fleetdb/online_upgrade/app.schema.dump
    sections: [pre-data, keys]
  register: restored

- name: What does the file hold
  fleetdb.online_upgrade.migrate:
    mode: describe
    bin_dir: /opt/fleetdb/postgresql/18/bin
    path: /var/lib/fleetdb/online_upgrade/app.schema.dump
"""

RETURN = r"""
path:
  description: The data file.
  returned: always
  type: str
size_bytes:
  description: Size of the data file.
  returned: when the file exists
  type: int
sha256:
  description: SHA-256 of the data file.
  returned: when the file exists
  type: str
globals_path:
  description: The roles file written beside the data file.
  returned: mode=create
  type: str
entries:
  description: Number of TOC entries restored (0 when everything was already there).
  returned: mode=restore
  type: int
database_created:
  description: True when the target database was created.
  returned: when it applies
  type: bool
roles_created:
  description: Roles created from the globals file.
  returned: mode=restore with pre-data
  type: list
record_set:
  description: Number of the Record of Upgrades set that records this file.
  returned: mode=restore with pre-data
  type: int
record_created:
  description: True when this restore added the set.
  returned: mode=restore with pre-data
  type: bool
toc:
  description: TOC entries (id, type, schema, name, owner).
  returned: mode=list
  type: list
description:
  description: dbname, source_version, tool_version, tables, counts, data_included, globals_file.
  returned: mode=describe
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.args import instance_options, spec_from
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import DatabaseError, OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def main():
    options = instance_options(required_data_dir=False)
    options.update(
        engine=engine_option(),
        mode=dict(type="str", required=True, choices=["create", "restore", "list", "describe"]),
        path=dict(type="path", required=True),
        tool_bin_dir=dict(type="path"),
        objects=dict(type="list", elements="str"),
        schema_only=dict(type="bool", default=False),
        globals=dict(type="bool", default=True),
        role_passwords=dict(type="bool", default=False, no_log=False),
        sections=dict(type="list", elements="str", choices=["pre-data", "keys", "data", "post-data"],
                      default=["pre-data", "data", "post-data"]),
        jobs=dict(type="int", default=1),
        maintenance_work_mem_mb=dict(type="int"),
        create_database=dict(type="bool", default=True),
        record=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=options, supports_check_mode=True)
    p = module.params
    migrator = get_engine(p["engine"]).migrator(module, spec_from(p), p["tool_bin_dir"])
    try:
        if p["mode"] == "create":
            result = migrator.create(p["path"], objects=p["objects"], schema_only=p["schema_only"],
                                     dbname=p["dbname"], with_globals=p["globals"], role_passwords=p["role_passwords"])
        elif p["mode"] == "restore":
            result = migrator.restore(p["path"], sections=p["sections"], jobs=p["jobs"],
                                      create_database=p["create_database"], dbname=p["dbname"], record=p["record"],
                                      maintenance_work_mem_mb=p["maintenance_work_mem_mb"])
        elif p["mode"] == "list":
            result = dict(changed=False, path=p["path"], toc=migrator.list(p["path"]))
        else:
            description = migrator.describe(p["path"])
            result = dict(changed=False, path=p["path"], size_bytes=description["size_bytes"],
                          sha256=description["sha256"], description=description)
    except OperationError as exc:
        module.fail_json(**exc.as_result())
    except DatabaseError as exc:
        module.fail_json(msg="database error: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
