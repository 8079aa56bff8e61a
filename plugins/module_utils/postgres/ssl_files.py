# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SSL files an old server names in its data directory (``ssl_cert_file = 'server.crt'``, the default, is
relative to it) serve the new instance too: copied into the new data directory under the same relative name,
with their mode, owned by the new instance's owner.  Files elsewhere (``/etc/ssl/...``) stay where they are and
the inherited setting names them.  Their contents never appear in a result or a diff.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import (
    OperationError, replace_file, user_ids)

SSL_FILE_SETTINGS = ("ssl_cert_file", "ssl_key_file", "ssl_ca_file", "ssl_crl_file", "ssl_crl_dir",
                     "ssl_dh_params_file")


def resolved(settings, data_dir):
    """{setting: (absolute path, path relative to ``data_dir`` or None when outside it)} of the SSL files
    ``settings`` name; relative names are relative to ``data_dir``, as the server reads them."""
    found = {}
    root = os.path.normpath(data_dir)
    for name in SSL_FILE_SETTINGS:
        value = settings.get(name)
        if value:
            path = os.path.normpath(os.path.join(root, value))   # an absolute value stays what it is
            found[name] = (path, os.path.relpath(path, root) if path.startswith(root + os.sep) else None)
    return found


def _files_of(path):
    if os.path.isdir(path):
        return [os.path.join(path, n) for n in sorted(os.listdir(path)) if os.path.isfile(os.path.join(path, n))]
    return [path]


def _same(source, dest):
    if not os.path.isfile(dest):
        return False
    with open(source, "rb") as one, open(dest, "rb") as other:
        return one.read() == other.read() and stat.S_IMODE(os.stat(source).st_mode) == stat.S_IMODE(
            os.stat(dest).st_mode)


def carry(module, settings, old_data_dir, new_data_dir, owner):
    """Copy the SSL files ``settings`` name in ``old_data_dir`` into ``new_data_dir``; returns (settings naming
    those relative to the new data directory and the others by absolute path, the files copied or to copy)."""
    carried = dict(settings)
    copied = []
    for name, (source, relative) in resolved(settings, old_data_dir).items():
        if not os.path.exists(source):
            raise OperationError("%s names %s, which does not exist: the new server could not start with it"
                                 % (name, source), "put the file there, or correct %s on the old server" % name)
        if relative is None:
            carried[name] = source   # outside the old data directory: it stays, named by its absolute path
            continue
        carried[name] = relative
        dest_root = os.path.join(new_data_dir, relative)
        if os.path.isdir(source) and not os.path.isdir(dest_root) and not module.check_mode:
            os.makedirs(dest_root, 0o700)
            if owner and os.geteuid() == 0:
                uid, gid, _home = user_ids(owner)
                os.chown(dest_root, uid, gid)
        for path in _files_of(source):
            dest = os.path.join(new_data_dir, os.path.relpath(path, old_data_dir))
            if not _same(path, dest):
                copied.append(os.path.relpath(path, old_data_dir))
                if not module.check_mode:
                    with open(path, "rb") as original:
                        replace_file(dest, original.read(), owner, stat.S_IMODE(os.stat(path).st_mode))
    return carried, copied
