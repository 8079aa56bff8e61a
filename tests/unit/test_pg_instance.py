"""Instance logic: fleetdb.conf rendering and parsing, the include line, postmaster.pid, initdb arguments."""
from collections import OrderedDict

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.conf import (
    INCLUDE_LINE, changed_settings, conf_value, has_include, normalize_settings, parse_conf, parse_describe_config,
    quote_conf, render_conf, with_include)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance import initdb_arguments
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.instance_settings import restart_needed
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.process import (
    parse_controldata, parse_postmaster_pid)


def test_values_as_postgresql_conf_text():
    assert conf_value(True) == "on"
    assert conf_value(False) == "off"
    assert conf_value(10) == "10"
    assert conf_value(["pg_stat_statements", "auto_explain"]) == "pg_stat_statements, auto_explain"
    assert quote_conf("10") == "10"
    assert quote_conf("-1") == "-1"
    assert quote_conf("0.5") == "0.5"
    assert quote_conf("logical") == "'logical'"
    assert quote_conf("*") == "'*'"
    assert quote_conf("it's") == "'it''s'"
    assert quote_conf("C:\\x") == "'C:\\\\x'"


def test_rendered_file_reads_back_the_same():
    settings = normalize_settings({"wal_level": "logical", "max_replication_slots": 10, "port": 5433,
                                   "listen_addresses": "*", "log_line_prefix": "%m [%p] it's ",
                                   "fsync": True, "dropped": None})
    text = render_conf(settings)
    assert text.splitlines()[2] == "port = 5433"
    assert "wal_level = 'logical'\n" in text and "max_replication_slots = 10\n" in text
    assert "dropped" not in text
    assert dict(parse_conf(text)) == dict(settings)


def test_parse_the_forms_postgresql_accepts():
    text = """
    # a comment
    port=5434   # trailing comment
    shared_buffers 128MB
    Work_Mem = '4MB'
    search_path = '"$user", public'
    include_if_exists = 'fleetdb.conf'
    escaped = 'a\\'b'
    port = 5435
    """
    settings = parse_conf(text)
    assert settings == OrderedDict([("shared_buffers", "128MB"), ("work_mem", "4MB"),
                                    ("search_path", '"$user", public'), ("escaped", "a'b"), ("port", "5435")])


def test_what_the_switchover_writes_reads_the_same():
    """The cutover rewrites fleetdb.conf with the port last: same settings, so no change here."""
    ours = render_conf(normalize_settings({"port": 5432, "wal_level": "logical"}))
    lines = [line for line in ours.splitlines() if not line.strip().startswith("port")]
    theirs = "\n".join(lines + ["port = %d" % 5432]) + "\n"
    assert changed_settings(parse_conf(ours), parse_conf(theirs)) == []


def test_changed_settings_include_added_and_removed():
    assert changed_settings({"a": "1", "b": "2"}, {"b": "3", "c": "4"}) == ["a", "b", "c"]
    assert changed_settings({"a": "1"}, {"a": "1"}) == []


def test_include_is_appended_once():
    text = "max_connections = 100\n#include_if_exists = 'fleetdb.conf'"
    assert not has_include(text)
    once = with_include(text)
    assert once.endswith(INCLUDE_LINE + "\n")
    assert with_include(once) == once
    assert with_include("").endswith(INCLUDE_LINE + "\n")
    assert has_include("include_if_exists 'fleetdb.conf'\n")


def test_postmaster_pid_file():
    text = "4242\n/var/lib/pg/16/main\n1732460000\n15432\n/var/run/postgresql\nlocalhost\n  1234  5678\nready   \n"
    info = parse_postmaster_pid(text)
    assert info == dict(pid=4242, data_dir="/var/lib/pg/16/main", start_time="1732460000", port=15432,
                        socket_dir="/var/run/postgresql", listen_address="localhost", status="ready")
    assert parse_postmaster_pid("4242\n/data\n")["port"] is None
    assert parse_postmaster_pid("") is None
    assert parse_postmaster_pid("garbage\n") is None


def test_describe_config_and_restart_rules():
    text = ("wal_level\tpostmaster\tWrite-Ahead Log / Settings\tENUM\treplica\t\t\tSet the level.\t\n"
            "work_mem\tuser\tResource Usage / Memory\tINTEGER\t4096\t64\t2147483647\tSets memory.\t\n")
    contexts = parse_describe_config(text)
    assert contexts == {"wal_level": "postmaster", "work_mem": "user"}
    assert restart_needed(contexts, ["work_mem", "wal_level"])
    assert not restart_needed(contexts, ["work_mem"])
    assert restart_needed(contexts, ["pg_stat_statements.max"])   # unknown: restart to be safe
    assert not restart_needed(contexts, [])


def test_controldata_checksum_line():
    text = "pg_control version number:            1300\nData page checksum version:           1\n"
    assert parse_controldata(text)["Data page checksum version"] == "1"


def test_initdb_arguments_per_release_default_of_checksums():
    base = ["initdb", "-D", "/d", "--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8",
            "--locale=C.UTF-8"]
    assert initdb_arguments("initdb", "/d", "16") == base
    assert initdb_arguments("initdb", "/d", "16", data_checksums=True) == base + ["--data-checksums"]
    assert initdb_arguments("initdb", "/d", "16", data_checksums=False) == base
    assert initdb_arguments("initdb", "/d", "18", data_checksums=False) == base + ["--no-data-checksums"]
    assert initdb_arguments("initdb", "/d", "18") == base
