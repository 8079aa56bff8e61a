"""pg_hba.conf's one writer: mode and owner kept, the server's check with the old file put back, blocks."""
import os
import pwd
import stat

import pytest

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import InstanceSpec
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.host import LocalHost
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import fence
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.hba import HbaFile, hba_path

RULES = "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n"
ME = pwd.getpwuid(os.geteuid()).pw_name


class FakeSession:
    """pg_hba_file_rules of a server: ``errors`` rows, whatever the file says."""

    def __init__(self, errors=(), hba_file=None):
        self.errors = list(errors)
        self.hba_file = hba_file

    def query(self, sql, params=None):
        assert "pg_hba_file_rules" in sql
        return type("Result", (), {"rows": self.errors})()

    def scalar(self, sql, params=None):
        assert sql == "SHOW hba_file"
        return self.hba_file


def hba_at(path, check_mode=False):
    return HbaFile(LocalHost(check_mode), str(path), ME, str(path.parent))


def test_a_rewrite_keeps_the_mode_and_owner_of_the_file(tmp_path):
    path = tmp_path / "pg_hba.conf"
    path.write_text(RULES)
    os.chmod(str(path), 0o640)
    if os.geteuid() == 0:
        os.chown(str(path), 1, 1)
    changed, diff = hba_at(path).write("local all all reject\n")
    assert changed and diff["before"] == RULES and path.read_text() == "local all all reject\n"
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o640
    if os.geteuid() == 0:
        assert (os.stat(str(path)).st_uid, os.stat(str(path)).st_gid) == (1, 1)
    assert hba_at(path).write("local all all reject\n")[0] is False


def test_a_new_file_is_0600(tmp_path):
    path = tmp_path / "pg_hba.conf"
    assert hba_at(path).write(RULES)[0]
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600


def test_check_mode_writes_nothing(tmp_path):
    path = tmp_path / "pg_hba.conf"
    path.write_text(RULES)
    assert hba_at(path, check_mode=True).put_block(fence.FENCE, ["local all all reject"], first=True)[0]
    assert path.read_text() == RULES


def test_rules_the_server_rejects_put_the_old_file_back(tmp_path):
    path = tmp_path / "pg_hba.conf"
    path.write_text(RULES)
    with pytest.raises(OperationError) as failure:
        hba_at(path).write_checked("local all all bogus\n", FakeSession([(1, 'invalid authentication method "bogus"')]),
                                   "correct it")
    assert "the old one was put back: line 1: invalid authentication method" in failure.value.msg
    assert failure.value.fix == "correct it"
    assert path.read_text() == RULES
    assert hba_at(path).write_checked("local all all trust\n", FakeSession(), "correct it")[0]
    assert path.read_text() == "local all all trust\n"
    assert hba_at(path).write_checked("local all all bogus\n", None, "no server runs: not checked")[0]


def test_the_fence_goes_in_front_and_out_again_idempotently(tmp_path):
    path = tmp_path / "pg_hba.conf"
    path.write_text(RULES)
    hba = hba_at(path)
    lines = fence.fence_lines("rep", ["app"])
    assert hba.put_block(fence.FENCE, lines, first=True)[0]
    fenced = path.read_text()
    assert fenced == fence.fence_block("rep", ["app"]) + RULES and fence.is_fenced(fenced)
    assert hba.put_block(fence.FENCE, lines, first=True)[0] is False
    assert hba.remove_block(fence.FENCE)[0] and path.read_text() == RULES
    assert hba.remove_block(fence.FENCE) == (False, None)


def test_the_retired_fence_lets_the_administrator_in_first(tmp_path):
    retired = fence.retired_lines("postgres", "rep", ["app"], peer=True)
    assert retired[1] == 'local   all   "postgres"   peer' and retired[2:] == fence.fence_lines("rep", ["app"])[1:]


def test_the_path_is_what_the_server_reads_else_the_data_directory(tmp_path):
    spec = InstanceSpec(data_dir=str(tmp_path), bin_dir="/nonexistent")
    assert hba_path(LocalHost(), spec, FakeSession(hba_file="/etc/postgresql/16/main/pg_hba.conf")) == \
        "/etc/postgresql/16/main/pg_hba.conf"
    assert hba_path(LocalHost(), spec) == os.path.join(str(tmp_path), "pg_hba.conf")   # no PG_VERSION: no postgres -C
