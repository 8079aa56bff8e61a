"""Socket directories: unix_socket_directories split and written as PostgreSQL reads them, the list the new
instance serves, and the refusal of a server without a Unix socket (its fix, in the host's words)."""
import os

import pytest

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import discover as pg_discover
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import InstanceSpec
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.conf import (
    join_directories, split_directories, with_socket_dir)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance import PostgresInstance


@pytest.mark.parametrize("value, entries", [
    ("", []),
    ("/var/run/postgresql", ["/var/run/postgresql"]),
    ("/var/run/postgresql, /tmp", ["/var/run/postgresql", "/tmp"]),
    ("  /srv/pg sock ,/tmp,", ["/srv/pg sock", "/tmp"]),
    ('"/srv/a,b", /tmp', ["/srv/a,b", "/tmp"]),
    ('"/srv/say ""hi"""', ['/srv/say "hi"']),
    ("@fleetdb, /tmp", ["@fleetdb", "/tmp"]),
])
def test_unix_socket_directories_split_and_join_back(value, entries):
    assert split_directories(value) == entries
    assert split_directories(join_directories(entries)) == entries


def test_entries_are_quoted_only_where_postgresql_would_split_them():
    assert join_directories(["/var/run/postgresql", "/tmp"]) == "/var/run/postgresql, /tmp"
    assert join_directories(["/srv/a,b", "/srv/x y"]) == '"/srv/a,b", /srv/x y'
    assert join_directories([]) == ""


def test_the_sessions_directory_is_added_once_and_last(tmp_path):
    assert with_socket_dir(["/srv/pgsock", "/tmp"], "/srv/pgsock") == ["/srv/pgsock", "/tmp"]
    assert with_socket_dir(["/srv/pgsock", "/tmp"], "/var/run/postgresql") == [
        "/srv/pgsock", "/tmp", "/var/run/postgresql"]
    assert with_socket_dir([], "/var/run/postgresql") == ["/var/run/postgresql"]
    assert with_socket_dir(None, "/tmp") == ["/tmp"]
    # A directory reached through a symbolic link (/var/run -> /run) is the same directory.
    os.mkdir(str(tmp_path / "run"))
    os.symlink(str(tmp_path / "run"), str(tmp_path / "var-run"))
    assert with_socket_dir([str(tmp_path / "run"), "/tmp"], str(tmp_path / "var-run")) == [
        str(tmp_path / "run"), "/tmp"]


class FakeModule:
    check_mode = True

    def run_command(self, argv, **_kwargs):
        return 1, "", "not here"


def new_instance(**spec):
    return PostgresInstance(FakeModule(), InstanceSpec(data_dir="/nonexistent/18/main", bin_dir="/nonexistent/bin",
                                                       **spec))


def test_the_new_instance_serves_every_directory_of_the_old_one():
    carried = new_instance(socket_dir="/var/run/postgresql", socket_directories=["/var/run/postgresql", "/tmp"])
    desired, _skipped = carried.desired_settings({"wal_level": "logical"}, {"unix_socket_directories": "/x"})
    assert desired["unix_socket_directories"] == "/var/run/postgresql, /tmp"
    assert carried.socket_directories() == ["/var/run/postgresql", "/tmp"]
    elsewhere = new_instance(socket_dir="/var/run/postgresql", socket_directories=["/srv/pgsock", "@abstract"])
    assert elsewhere.desired_settings({})[0]["unix_socket_directories"] == "/srv/pgsock, @abstract, /var/run/postgresql"
    alone = new_instance(socket_dir="/var/run/postgresql")
    assert alone.desired_settings({})[0]["unix_socket_directories"] == "/var/run/postgresql"


@pytest.mark.parametrize("listen, host", [(None, "127.0.0.1"), ("*", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
                                          ("::", "::1"), ("10.0.0.5", "10.0.0.5")])
def test_the_fix_reaches_the_server_where_it_listens(listen, host):
    assert pg_discover._tcp_host(listen) == host  # pylint: disable=protected-access


def tcp_only(monkeypatch, argv, service=None, log="/var/lib/pg/server.log"):
    monkeypatch.setattr(pg_discover, "_argv", lambda pid: argv)
    monkeypatch.setattr(pg_discover.pg_service, "detect",
                        lambda pid, config_file: service or dict(kind="pg_ctl", unit=None, version=None, cluster=None))
    monkeypatch.setattr(pg_discover, "server_log", lambda data_dir, owner: log)
    pid_file = dict(pid=4242, data_dir="/var/lib/pg", start_time="1", port=5461, socket_dir=None,
                    listen_address="127.0.0.1", status="ready")
    return dict(pid=4242, data_dir="/var/lib/pg", pid_file=pid_file)


def test_a_tcp_only_server_is_refused_with_the_statement_and_the_restart(monkeypatch, tmp_path):
    found = tcp_only(monkeypatch, ["/opt/pg/16/bin/postgres", "-D", "/var/lib/pg"])
    error = pg_discover.no_socket_error(5461, found, "root", "/opt/pg/16/bin", str(tmp_path))
    assert "serves no Unix-domain socket in a directory" in error.msg and "TCP only" in error.msg
    assert "nothing was changed" in error.msg
    assert error.fix == (
        "give the server a socket in %s, as a superuser over TCP: /opt/pg/16/bin/psql -h 127.0.0.1 -p 5461 -U root "
        "-d postgres -c \"ALTER SYSTEM SET unix_socket_directories = '%s'\"; then restart it (its sessions end "
        "once): runuser -u root -- /opt/pg/16/bin/pg_ctl restart -D /var/lib/pg -m fast -l /var/lib/pg/server.log; "
        "then run again" % (tmp_path, tmp_path))
    assert error.details["reason"] == "no_socket"
    missing = pg_discover.no_socket_error(5461, found, "root", "/opt/pg/16/bin", str(tmp_path / "sock"))
    assert missing.fix.startswith("create the directory: install -d -o root -g root -m 2775 %s; then give"
                                  % (tmp_path / "sock"))


def test_the_restart_goes_through_the_host_s_service_manager(monkeypatch):
    argv = ["/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/postgresql/15/main",
            "-c", "config_file=/etc/postgresql/15/main/postgresql.conf"]
    found = tcp_only(monkeypatch, argv, service=dict(kind="debian", unit=None, version="15", cluster="main"))
    assert pg_discover.restart_command(found, argv, "postgres", "/usr/lib/postgresql/15/bin") == \
        "pg_ctlcluster 15 main restart"
    found = tcp_only(monkeypatch, argv, service=dict(kind="systemd", unit="postgresql-16.service"))
    assert pg_discover.restart_command(found, argv, "postgres", "/usr/pgsql-16/bin") == \
        "systemctl restart postgresql-16.service"
    found = tcp_only(monkeypatch, argv, log=None)
    assert pg_discover.restart_command(found, argv, "postgres", "/opt/pg/bin") == \
        "runuser -u postgres -- /opt/pg/bin/pg_ctl restart -D /var/lib/pg -m fast"


def test_a_command_line_that_sets_the_directories_is_named_instead_of_alter_system(monkeypatch, tmp_path):
    argv = ["/opt/pg/16/bin/postgres", "-D", "/var/lib/pg", "-k", ""]
    found = tcp_only(monkeypatch, argv)
    error = pg_discover.no_socket_error(5461, found, "root", "/opt/pg/16/bin", str(tmp_path))
    assert "ALTER SYSTEM" not in error.fix
    assert "its command line sets the socket directories (/opt/pg/16/bin/postgres -D /var/lib/pg -k )" in error.fix


def test_an_abstract_socket_alone_is_no_directory_to_log_in_through(monkeypatch, tmp_path):
    found = tcp_only(monkeypatch, ["/opt/pg/16/bin/postgres"])
    found["pid_file"]["socket_dir"] = "@fleetdb"
    assert pg_discover._socket_of(found["pid_file"]) is None  # pylint: disable=protected-access
    error = pg_discover.no_socket_error(5461, found, "root", "/opt/pg/16/bin", str(tmp_path))
    assert "begins with @fleetdb" in error.msg
    assert "unix_socket_directories = '@fleetdb, %s'" % tmp_path in error.fix
    assert pg_discover._socket_of(dict(socket_dir="/tmp")) == "/tmp"  # pylint: disable=protected-access
