# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a release must provide to the databases it will serve, and whether it does.

The old server's databases use extensions (``pg_extension``) and preload libraries
(``shared_preload_libraries``). The new release provides extensions as ``<name>.control`` files and their
``<name>--<version>.sql`` / ``<name>--<from>--<to>.sql`` scripts in ``<sharedir>/extension``, and
libraries in ``<pkglibdir>``. Read from the files, so that it can be checked before the new release
runs anywhere. A logical copy creates each extension afresh at the new release's default version; a
physical copy (pg_upgrade) carries the old version, which then needs an update path to that default.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import cron as pg_cron
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.cluster_locale import built_with_icu
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.pgwire import quote_ident

USED_SQL = "SELECT extname, extversion FROM pg_extension ORDER BY 1"
CONTROL_DEFAULT_VERSION = re.compile(r"^\s*default_version\s*=\s*'([^']*)'", re.M)


def needs(extensions, preload_libraries, update_paths, icu_databases=()):
    """What the new release must provide: the one value preflight returns and the install step checks.
    ``extensions`` is ``{database: {extension: installed version}}``; ``icu_databases`` use ICU collations."""
    return dict(extensions=extensions, shared_preload_libraries=list(preload_libraries),
                update_paths=bool(update_paths), icu_databases=list(icu_databases))


def preload_libraries(setting):
    """The entries of a ``shared_preload_libraries`` value (as SHOW or a configuration file gives it), in order."""
    items = (setting or "").strip().strip("'").split(",")
    return [item.strip().strip('"') for item in items if item.strip().strip('"')]


def missing_libraries(lib_dir, libraries):
    """The entries of ``libraries`` (shared_preload_libraries) that are not in ``lib_dir``."""
    missing = []
    for name in libraries:
        path = name.replace("$libdir", lib_dir) if "/" in name else os.path.join(lib_dir, name)
        if not any(os.path.isfile(path + suffix) for suffix in ("", ".so")):
            missing.append(name)
    return missing


def release_dirs(module, bin_dir):
    """(extension directory, library directory) of the release in ``bin_dir``, as its pg_config says
    (an unpacked archive is relocatable; Debian keeps share/ in /usr/share/postgresql/N)."""
    pg_config = os.path.join(bin_dir, "pg_config")
    if os.path.isfile(pg_config):
        rc, out, _err = module.run_command([pg_config, "--sharedir", "--pkglibdir"])
        lines = out.split("\n") if rc == 0 else []
        if len(lines) >= 2 and lines[0].strip() and lines[1].strip():
            return os.path.join(lines[0].strip(), "extension"), lines[1].strip()
    release = os.path.dirname(bin_dir.rstrip("/"))
    return os.path.join(release, "share", "extension"), os.path.join(release, "lib")


def available(extension_dir):
    """``{name: (default version, {version: set of versions it updates to}, set of installable versions)}``."""
    try:
        names = os.listdir(extension_dir)
    except OSError:
        return {}
    found = {}
    for name in names:
        if name.endswith(".control"):
            try:
                with open(os.path.join(extension_dir, name)) as handle:
                    match = CONTROL_DEFAULT_VERSION.search(handle.read())
            except (IOError, OSError):
                continue
            found[name[:-len(".control")]] = (match.group(1) if match else None, {}, set())
    for name in names:
        if not name.endswith(".sql") or "--" not in name:
            continue
        parts = name[:-len(".sql")].split("--")
        if parts[0] not in found:
            continue
        _default, steps, installable = found[parts[0]]
        if len(parts) == 2:
            installable.add(parts[1])
        elif len(parts) == 3:
            steps.setdefault(parts[1], set()).add(parts[2])
    return found


def update_path(steps, start, goal):
    """Whether update scripts lead from version ``start`` to ``goal`` (what ALTER EXTENSION ... UPDATE needs)."""
    seen, todo = set([start]), [start]
    while todo:
        version = todo.pop()
        if version == goal:
            return True
        for nxt in steps.get(version, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def shortfalls(module, bin_dir, required):
    """What the release in ``bin_dir`` lacks of ``required`` (see needs()): a list of sentences, each naming
    the database, the extension or library, and what is missing."""
    extension_dir, lib_dir = release_dirs(module, bin_dir)
    provided = available(extension_dir)
    missing = []
    for db in sorted(required.get("extensions") or {}):
        for name, version in sorted(required["extensions"][db].items()):
            if name not in provided:
                missing.append("database %s: extension %s %s (no %s.control in %s)"
                               % (db, name, version, name, extension_dir))
                continue
            default, steps, installable = provided[name]
            if required.get("update_paths") and version != default and version not in installable \
                    and not update_path(steps, version, default):
                missing.append("database %s: extension %s %s (the new release has %s, and no update scripts lead "
                               "there from %s)" % (db, name, version, default, version))
    for library in missing_libraries(lib_dir, required.get("shared_preload_libraries") or []):
        missing.append("shared_preload_libraries: %s (not in %s)" % (library, lib_dir))
    cron_version = (provided.get("pg_cron") or (None,))[0]
    if "pg_cron" in (required.get("shared_preload_libraries") or []) and cron_version is not None \
            and not pg_cron.holds_jobs(cron_version):
        missing.append("pg_cron %s lacks %s (pg_cron 1.6 and later): the new server would run the jobs on its "
                       "temporary port too" % (cron_version, pg_cron.HOLD_JOBS))
    if required.get("icu_databases") and not built_with_icu(bin_dir):
        missing.append("ICU: %s use the ICU locale provider, and this release was built without ICU (its initdb and "
                       "CREATE DATABASE would refuse them)" % ", ".join(required["icu_databases"]))
    return missing


def shortfall_fix(major):
    return ("install each extension's build for PostgreSQL %s (Debian: apt install postgresql-%s-<extension>; or its "
            "own packages), or drop an unused extension from its database (DROP EXTENSION) and an unused library from "
            "shared_preload_libraries; for ICU, upgrade to a build of PostgreSQL %s made with ICU (configure "
            "--with-icu, as the distributions' packages are: online_upgrade_install_method=package, or such an "
            "archive in online_upgrade_archive_src); then run again" % (major, major, major))


def updates(session):
    """``ALTER EXTENSION ... UPDATE`` of every extension of this database older than the release's default
    (pg_upgrade carries the old versions). Returns ``[(name, from, to)]``."""
    done = []
    for name, installed, default in session.query(
            "SELECT e.extname, e.extversion, a.default_version FROM pg_extension e "
            "JOIN pg_available_extensions a ON a.name = e.extname "
            "WHERE a.default_version IS DISTINCT FROM e.extversion ORDER BY 1").rows:
        session.execute("ALTER EXTENSION %s UPDATE" % quote_ident(name))
        done.append((name, installed, default))
    return done


DUMPED_CREATE_EXTENSION = re.compile(r'^CREATE EXTENSION IF NOT EXISTS ("(?:[^"]|"")+"|\S+) WITH SCHEMA ("(?:[^"]|"")+"|[^\s;]+);',
                                     re.M)
PINNED_SCHEMA_SQL = """
SELECT v.schema FROM pg_available_extension_versions v JOIN pg_available_extensions a
    ON a.name = v.name AND a.default_version = v.version
 WHERE v.name = $1 AND a.installed_version IS NULL
"""


def _unquoted(name):
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def create_pinned(session, dumped_sql):
    """Create, before a restore, each extension of ``dumped_sql`` (pg_dump's CREATE EXTENSION statements) that
    this release pins to another schema than the dump names (its control file's ``schema``; pg_cron before 1.5
    named none and went to public, 1.5 and later pin pg_catalog): the restore's CREATE EXTENSION IF NOT EXISTS
    then finds it and goes on.  Returns their names."""
    created = []
    for name, schema in DUMPED_CREATE_EXTENSION.findall(dumped_sql):
        pinned = session.scalar(PINNED_SCHEMA_SQL, [_unquoted(name)])
        if pinned and pinned != _unquoted(schema):
            session.execute("CREATE EXTENSION IF NOT EXISTS %s" % name)
            created.append(_unquoted(name))
    return created
