# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's locale: what initdb gave template0 (encoding, LC_COLLATE, LC_CTYPE, the locale provider and
its locale), which every database created later copies.  The new instance is made with the same, so that
postgres, template1 and the databases created after the cutover sort and classify text as before.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

PROVIDERS = {"c": "libc", "i": "icu", "b": "builtin"}
# A server built with ICU links it: the name stands in the dynamic section of its binary (pg_config, which says
# --with-icu, is not installed with every packaging).
ICU_LIBRARY = b"libicuuc.so"


def cluster_locale(session):
    """dict(encoding, locale, lc_collate, lc_ctype, provider, provider_locale) of template0."""
    version = session.server_version_num()
    provider = "datlocprovider::text" if version >= 150000 else "'c'"
    provider_locale = ("datlocale" if version >= 170000 else "daticulocale" if version >= 150000 else "NULL::text")
    row = session.query(
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype, %s, %s FROM pg_database "
        "WHERE datname = 'template0'" % (provider, provider_locale)).rows[0]
    return dict(encoding=row[0], locale=row[1], lc_collate=row[1], lc_ctype=row[2],
                provider=PROVIDERS.get(row[3], row[3]), provider_locale=row[4])


def initdb_locale_arguments(locale):
    """initdb's options for a cluster_locale(); keys left out or None take initdb's defaults.  ``locale`` sets
    every category (lc_messages... too, which the inherited settings then override), the others refine it."""
    argv = ["--encoding=%s" % locale["encoding"]] if locale.get("encoding") else []
    if locale.get("locale"):
        argv.append("--locale=%s" % locale["locale"])
    for name in ("lc_collate", "lc_ctype"):
        if locale.get(name) and locale[name] != locale.get("locale"):
            argv.append("--%s=%s" % (name.replace("_", "-"), locale[name]))
    provider = locale.get("provider") or "libc"
    if provider != "libc":
        argv.append("--locale-provider=%s" % provider)
        if locale.get("provider_locale"):
            argv.append("--%s-locale=%s" % (provider, locale["provider_locale"]))
    return argv


def icu_databases(session):
    """The databases (template0 included) whose default collation comes from ICU: the new release needs ICU."""
    if session.server_version_num() < 150000:
        return []
    return [row[0] for row in session.query("SELECT datname FROM pg_database WHERE datlocprovider = 'i' "
                                            "ORDER BY 1").rows]


def built_with_icu(bin_dir):
    """Whether the release in ``bin_dir`` was built with ICU."""
    with open(os.path.join(bin_dir, "postgres"), "rb") as handle:
        return ICU_LIBRARY in handle.read()
