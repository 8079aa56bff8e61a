from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError, parse_version
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_server import _with_unit


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


def test_read_text_of_a_process_that_exits_while_it_is_read_is_none(monkeypatch, tmp_path):
    """Reading /proc/<pid>/cmdline of a process that is exiting fails with ESRCH (it failed preflight's scan of
    the host's processes once, under the cutover tests' reconnecting writers)."""
    import builtins
    import errno as errno_module

    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core import common

    def gone(*_args, **_kwargs):
        raise ProcessLookupError(errno_module.ESRCH, "No such process")
    monkeypatch.setattr(builtins, "open", gone)
    assert common.read_text("/proc/12345/cmdline") is None
    monkeypatch.undo()
    denied = tmp_path / "denied"
    denied.mkdir()
    try:
        common.read_text(str(denied))
    except IsADirectoryError:
        pass
    else:
        raise AssertionError("other errors still raise")


def test_process_argvs_lists_each_process_with_its_arguments_and_not_this_one():
    import os
    import subprocess
    import sys
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import process_argvs, process_info
    argv = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)", "fleetdb test arg"]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE)  # pylint: disable=consider-using-with
    try:
        # Until the child has exec'd, its /proc/<pid>/cmdline is still pytest's (fork, then exec).
        assert child.stdout.readline() == b"started\n"
        found = dict(process_argvs())
        assert found[child.pid] == argv
        assert os.getpid() not in found
        assert process_info(child.pid)["cmdline"] == " ".join(argv)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
