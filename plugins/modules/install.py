#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: install
short_description: Install a major release of the database server beside the ones already there, or remove one
version_added: "1.0.0"
description:
  - Puts the binaries of one major release on the host without touching other releases, the first step
    of an upgrade. Each major version gets its own directory, so old and new run side by side.
  - "O(method=archive) unpacks a binary distribution tarball that is already on the host into
    C(<prefix>/<major>). The O(checksum) is verified before anything is written; the tarball is unpacked
    into a temporary directory beside the target, its single top directory is stripped, its binaries are
    run, and only then is it renamed into place. A failed install leaves nothing behind."
  - "O(method=package) installs the operating system's package: C(postgresql-<major>) with apt-get (binaries in
    C(/usr/lib/postgresql/<major>/bin)), or C(postgresql<major>-server) from the PGDG repository with dnf
    (binaries in C(/usr/pgsql-<major>/bin), best effort)."
  - Idempotent. When C(<bin_dir>/postgres --version) already reports the requested major version, nothing is
    installed (the archive need not be there any more). A different minor version is reported as a warning
    and left in place; minor updates of binaries that servers run from are not this module's business.
  - Before reporting success it runs C(postgres), C(initdb) and C(pg_ctl) with C(--version) and checks every
    server and client binary with C(ldd). A missing shared library fails the task, naming the library and
    the Debian package that provides it.
  - "O(state=absent) removes a release's directory, the parent of O(bin_dir) (by default the one O(method) puts
    it in), and only when it is one: C(bin/postgres) of the major O(version) in it, that version in the
    directory's name, no running process executing a binary from it. Anything else fails the task and removes
    nothing; a directory that is not there is no change."
  - "Files a package owns are never removed: before removing anything it asks C(dpkg-query -S) (and C(rpm -qf)
    where rpm exists) about the directory and every file in it. When a package owns any, nothing is removed,
    the task reports no change with a warning, and RV(packages) and RV(package_remove_command) name the
    packages and the command that removes them the package manager's way (C(apt-get remove postgresql-15))."
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
options:
  state:
    description:
      - V(present) installs the release, V(absent) removes it (see above).
    type: str
    choices: [present, absent]
    default: present
  version:
    description:
      - The release to install, a major version (V("16")) or a full one (V("16.15")). Quote it in YAML.
      - With O(state=absent), the major version of the release to remove; a directory of another one is refused.
      - The major version decides the directory and the package; with a full version a different installed
        minor version is reported (RV(requested_version) and a warning), not replaced.
    type: str
    required: true
  method:
    description:
      - V(archive) unpacks O(archive); V(package) uses the operating system's package manager.
    type: str
    choices: [archive, package]
    default: archive
  archive:
    description:
      - Path of the binary distribution tarball B(on the managed host) (C(.tar), C(.tar.gz), C(.tar.bz2),
        C(.tar.xz)), with one top directory holding C(bin), C(lib) and C(share).
      - Needed only when the release is not installed yet. Copy it to the host first (M(ansible.builtin.copy)).
    type: path
  checksum:
    description:
      - Expected checksum of O(archive), C(sha256:<hex>) (C(sha384:) and C(sha512:) work too).
      - Verified before anything is unpacked; a mismatch fails the task and writes nothing.
      - Without it the archive is unpacked unchecked and RV(checksum) reports its sha256, to pin it next time.
    type: str
  prefix:
    description:
      - Directory under which O(method=archive) creates one directory per major version.
    type: path
    default: /opt/fleetdb/postgresql
  update_cache:
    description:
      - With O(method=package), refresh the package lists first (C(apt-get update) / C(dnf makecache)).
    type: bool
    default: false
  bin_dir:
    description:
      - With O(state=absent), the bin directory of the release to remove; its parent directory is removed.
      - Default C(<prefix>/<major>/bin) with O(method=archive), the package's with O(method=package).
    type: path
  release_must_provide:
    description:
      - What the old server's databases use, as M(fleetdb.online_upgrade.preflight) returns it
        (RV(fleetdb.online_upgrade.preflight#module:new_release_needs)) - extensions per database, with an update path
        to the release's default version when C(update_paths) is set, and the C(shared_preload_libraries).
      - Checked against the release's own files once it is installed (also when it already was); anything
        missing fails the task, naming each database and extension, before any instance of the release exists.
    type: dict
notes:
  - On Debian, installing C(postgresql-<major>) creates and starts a cluster C(<major>/main) unless
    C(create_main_cluster = false) is set in C(/etc/postgresql-common/createcluster.conf); the module warns
    when that happened. Set it before the first install on hosts whose instances this collection manages.
  - Supports check mode (the checksum is verified in check mode too; with O(state=absent) every check runs and
    nothing is removed) and diff mode (with O(state=absent)), and runs as root.
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Copy the PostgreSQL 16 binary distribution to the host
  ansible.builtin.copy:
    src: files/postgresql-16.15-linux-x86_64.tar.gz
    dest: /var/cache/fleetdb/postgresql-16.15-linux-x86_64.tar.gz
    mode: "0644"

- name: Install PostgreSQL 16 from it into /opt/fleetdb/postgresql/16
  fleetdb.online_upgrade.install:
    version: "16.15"
    method: archive
    archive: /var/cache/fleetdb/postgresql-16.15-linux-x86_64.tar.gz
    checksum: "sha256:2f4c1e0c0d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f90"
  register: pg16

- name: Install PostgreSQL 15 from the Debian package, beside it
  fleetdb.online_upgrade.install:
    version: "15"
    method: package
  register: pg15

- name: Use the binaries
  ansible.builtin.debug:
    msg: "initdb of 16 is {{ pg16.bin_dir }}/initdb, of 15 {{ pg15.bin_dir }}/initdb"

- name: Remove PostgreSQL 15 once no instance uses it (a package's files are left to apt-get, with a warning)
  fleetdb.online_upgrade.install:
    version: "15"
    state: absent
    bin_dir: /usr/lib/postgresql/15/bin
  register: removed

- name: Say how to remove the package
  ansible.builtin.debug:
    msg: "run {{ removed.package_remove_command }}"
  when: removed.packages | length > 0
"""

RETURN = r"""
version:
  description: Version of the installed binaries (in check mode, before an install, the requested one).
  returned: always with O(state=present); with O(state=absent) when the release was there
  type: str
  sample: "16.15"
major:
  description: Major version.
  returned: always
  type: str
  sample: "16"
bin_dir:
  description: Directory of the release's binaries; pass it as C(bin_dir) to the other modules.
  returned: always
  type: str
  sample: /opt/fleetdb/postgresql/16/bin
method:
  description: How the release was (or is to be) installed.
  returned: with O(state=present)
  type: str
  sample: archive
install_dir:
  description: The release's directory, C(<prefix>/<major>); with O(state=absent) the directory removed (or not).
  returned: with O(method=archive) or O(state=absent)
  type: str
  sample: /opt/fleetdb/postgresql/16
checksum:
  description: The archive's checksum, as given or, when none was given, its sha256.
  returned: when an archive was unpacked
  type: str
  sample: "sha256:2f4c1e0c0d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f90"
package:
  description: Name of the operating system package.
  returned: with O(method=package)
  type: str
  sample: postgresql-15
dropped_cluster:
  description:
    - The cluster (C(<major>/main)) that Debian's package created and started by itself (create_main_cluster), dropped
      again so that no stray server holds a port; null when there was none.
  returned: with O(method=package) on Debian when the package was installed
  type: str
  sample: 18/main
requested_version:
  description: The full version asked for, when the installed one differs from it.
  returned: when O(version) is a full version that differs from the installed one
  type: str
  sample: "16.14"
removed:
  description: Whether the release's directory was (in check mode, would be) removed.
  returned: with O(state=absent)
  type: bool
  sample: true
packages:
  description: The packages that own the release's directory or files in it; nothing was removed when there are any.
  returned: with O(state=absent)
  type: list
  elements: str
  sample: [postgresql-15, postgresql-client-15]
package_remove_command:
  description: The package manager's command that removes RV(packages).
  returned: with O(state=absent) when a package owns the release's files
  type: str
  sample: apt-get remove postgresql-15 postgresql-client-15
processes:
  description: The processes running a binary of the release, which refuse its removal (pid, command, cmdline, user).
  returned: on failure with O(state=absent) because the release is in use
  type: list
  elements: dict
missing_libraries:
  description: Shared libraries the binaries need and the host lacks.
  returned: on failure because of missing libraries
  type: list
  elements: str
  sample: [libzstd.so.1]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def remove(module, installer):
    p = module.params
    bin_dir = p["bin_dir"] or installer.release_bin_dir(p["method"], p["version"], p["prefix"])
    result = installer.remove(module, p["version"], bin_dir)
    if result["removed"] and module._diff:
        result["diff"] = dict(before=dict(path=result["install_dir"], state="directory"),
                              after=dict(path=result["install_dir"], state="absent"))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            engine=engine_option(),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            version=dict(type="str", required=True),
            method=dict(type="str", choices=["archive", "package"], default="archive"),
            archive=dict(type="path"),
            checksum=dict(type="str"),
            prefix=dict(type="path", default="/opt/fleetdb/postgresql"),
            update_cache=dict(type="bool", default=False),
            bin_dir=dict(type="path"),
            release_must_provide=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    installer = get_engine(p["engine"]).installer(module)
    try:
        if p["state"] == "absent":
            module.exit_json(**remove(module, installer))
        if p["bin_dir"]:
            raise OperationError("bin_dir is for state=absent", "leave it out: the release's bin directory "
                                 "follows from method and prefix (and is returned as bin_dir)")
        if p["method"] == "archive":
            result = installer.install_archive(module, p["archive"], p["checksum"], p["prefix"], p["version"])
        else:
            result = installer.install_package(module, p["version"], update_cache=p["update_cache"])
        if p["release_must_provide"] and installer.probe(result["bin_dir"]):
            installer.check_provides(result["bin_dir"], result["major"], p["release_must_provide"])
    except OperationError as exc:
        module.fail_json(**exc.as_result())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
