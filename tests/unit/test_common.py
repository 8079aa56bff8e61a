from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.common import OperationError, parse_version
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.pg_preflight import _with_unit


def test_parse_version_of_server_banners():
    assert parse_version("postgres (PostgreSQL) 16.15") == (16, 15)
    assert parse_version("18") == (18,) and parse_version(" 18 ") == (18,)
    assert parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)") == (15, 18)
    assert parse_version("postgres (PostgreSQL) 19devel") == (19, 0)
    assert parse_version("no digits") is None


def test_operation_error_says_what_to_do():
    result = OperationError("port 5432 is held by pid 7 (nginx)", "stop it", holder=7).as_result()
    assert result["msg"] == "port 5432 is held by pid 7 (nginx). Fix: stop it"
    assert result["holder"] == 7


def test_settings_keep_their_units():
    assert _with_unit("16384", "8kB") == "131072kB"
    assert _with_unit("100", "ms") == "100ms"
    assert _with_unit("-1", "8kB") == "-1"
    assert _with_unit("on", None) == "on"
