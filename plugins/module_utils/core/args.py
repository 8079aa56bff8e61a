# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs shared by the modules, matching the doc fragments ``instance``, ``instances`` and ``pooler``.

The option ``engine`` comes from the registry (``engines.engine_option()``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import InstanceSpec


def instance_options(required_data_dir=True):
    """Options that locate one instance on its host (doc fragment ``instance``)."""
    return dict(
        data_dir=dict(type="path", required=required_data_dir),
        bin_dir=dict(type="path", required=True),
        owner=dict(type="str", default="postgres"),
        port=dict(type="int", default=5432),
        socket_dir=dict(type="path", default="/var/run/postgresql"),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        dbname=dict(type="str", default="postgres"),
        config_file=dict(type="path"),
        service=dict(type="dict", options=dict(
            kind=dict(type="str", default="pg_ctl", choices=["pg_ctl", "systemd", "debian"]),
            unit=dict(type="str"),
            version=dict(type="str"),
            cluster=dict(type="str"),
        )),
    )


def instance_suboptions():
    """The same options nested in a dict option (``source``, ``target`` ...)."""
    return instance_options()


def pooler_options():
    """The option ``pooler``: the connection pooler clients go through (doc fragment ``pooler``)."""
    return dict(
        type=dict(type="str", default="pgbouncer", choices=["pgbouncer"]),
        host=dict(type="str", default="127.0.0.1"),
        port=dict(type="int", default=6432),
        admin_user=dict(type="str", default="pgbouncer"),
        admin_password=dict(type="str", no_log=True),
        pause_timeout=dict(type="float", default=10.0),
        databases=dict(type="list", elements="str"),
        sslmode=dict(type="str", default="prefer", choices=["disable", "prefer", "require", "verify-full"]),
        sslrootcert=dict(type="path"),
    )


def spec_from(params):
    """InstanceSpec from a module's params or one of its nested dicts."""
    return InstanceSpec(
        data_dir=params.get("data_dir"),
        bin_dir=params.get("bin_dir"),
        owner=params.get("owner") or "postgres",
        port=params.get("port"),
        socket_dir=params.get("socket_dir") or "/var/run/postgresql",
        login_user=params.get("login_user") or params.get("owner") or "postgres",
        login_password=params.get("login_password"),
        dbname=params.get("dbname") or "postgres",
        config_file=params.get("config_file"),
        service=params.get("service"),
        socket_directories=params.get("socket_directories"),
    )
