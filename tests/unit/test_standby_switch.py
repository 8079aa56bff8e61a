"""A standby host's own switch (postgres/standby_switch.py): the steps left follow from what the host shows, so a
run killed anywhere is finished by the next; a check run lists them and changes nothing; a primary whose production
port serves another cluster (its cutover not done) is refused; the new instance inherits no
synchronous_standby_names."""
import pytest

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import InstanceSpec
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import session, standby_switch
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.standby_switch import switch_steps
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_server import ServerChecks

BEFORE = ["follow", "catch_up", "stop_old", "start_new", "retire_old"]


@pytest.mark.parametrize("new_port, old_running, old_configured, steps", [
    (15432, True, 5432, BEFORE),                                                   # after the primary's cutover
    (None, True, 5432, ["start_temporary"] + BEFORE),                              # the new one was stopped
    (15432, False, 5432, ["follow", "catch_up", "start_new", "retire_old"]),       # killed after the old one stopped
    (None, False, 5432, ["start_temporary", "follow", "catch_up", "start_new", "retire_old"]),  # ... mid-restart
    (5432, False, 5432, ["retire_old"]),                                           # killed before the old one's port
    (5432, False, 5433, []),                                                       # done
    (None, False, 5433, ["start_new"]),                                            # a reboot after the switch
    (15432, False, 5433, ["start_new"]),                                           # killed in the restart, caught up
])
def test_the_steps_left_follow_from_what_the_host_shows(new_port, old_running, old_configured, steps):
    assert switch_steps(5432, new_port, old_running, old_configured, 5433) == steps


class Module:
    check_mode = True

    def warn(self, msg):
        raise AssertionError(msg)


class Server:
    """What PostgresInstance says of the instance: its postmaster, configured port and primary_conninfo (the old
    standby's own, by default); nothing else may be called."""
    shows = {}
    conninfo = "host=10.0.0.11 port=5432 user=replicator application_name=db2"

    def __init__(self, module, spec):
        self.running_port, self.configured = self.shows[spec.data_dir]

    def postmaster(self):
        return dict(pid=4242, port=self.running_port) if self.running_port else None

    def configured_port(self):
        return self.configured

    def show_configured(self, name):
        assert name == "primary_conninfo"
        return self.conninfo


def switch(tmp_path, monkeypatch, old_shows, new_shows):
    new_dir = tmp_path / "18"
    new_dir.mkdir(exist_ok=True)
    (new_dir / "standby.signal").write_text("")
    Server.shows = {str(tmp_path / "16"): old_shows, str(new_dir): new_shows}
    monkeypatch.setattr(standby_switch, "PostgresInstance", Server)
    return standby_switch.PostgresStandbySwitch(
        Module(), InstanceSpec(str(tmp_path / "16"), "/opt/16/bin", port=5432),
        InstanceSpec(str(new_dir), "/opt/18/bin", port=5432), primary_host="10.0.0.11", user="fleetdb_replicator",
        password="pw", application_name="db2", temporary_port=15432, old_port_after=5433)


def test_a_check_run_lists_the_steps_and_changes_nothing(tmp_path, monkeypatch):
    result = switch(tmp_path, monkeypatch, (5432, 5432), (15432, 5432)).run()
    assert result["changed"] and result["read_pause_seconds"] is None
    assert result["actions"] == [
        "give the new standby the old one's primary_conninfo (the new primary, 10.0.0.11 port 5432, is there now) "
        "and wait until it streams from there", "wait until the new standby has replayed the new primary's current position",
        "stop the old standby (%s)" % (tmp_path / "16"), "restart the new standby on the production port 5432",
        "configure the old standby for port 5433"]


def test_a_check_run_once_switched_has_nothing_to_do(tmp_path, monkeypatch):
    result = switch(tmp_path, monkeypatch, (None, 5433), (5432, 5432)).run()
    assert not result["changed"] and result["actions"] == []


def test_the_upgrades_password_leaves_the_host_once_the_new_standby_streams_with_the_old_ones_conninfo(
        tmp_path, monkeypatch):
    passfile = tmp_path / "fleetdb_replication.pgpass"
    passfile.write_text("*:15432:*:fleetdb_replicator:pw\n*:5432:*:fleetdb_replicator:pw\n")
    result = switch(tmp_path, monkeypatch, (None, 5433), (5432, 5432)).run()
    assert result["changed"] and result["actions"] == ["remove %s" % passfile]
    passfile.write_text("*:5432:*:fleetdb_replicator:pw\n*:6432:*:someone:else\n")
    result = switch(tmp_path, monkeypatch, (None, 5433), (5432, 5432)).run()
    assert result["actions"] == ["remove the replication role's line from %s" % passfile]
    # an old standby with no conninfo of its own: the new one streams as the upgrade's role, and keeps its password
    monkeypatch.setattr(Server, "conninfo", "")
    assert switch(tmp_path, monkeypatch, (None, 5433), (5432, 5432)).run()["actions"] == []


def test_a_data_directory_without_a_standby_is_refused(tmp_path, monkeypatch):
    standby = switch(tmp_path, monkeypatch, (5432, 5432), (15432, 5432))
    (tmp_path / "18" / "standby.signal").unlink()
    with pytest.raises(OperationError) as refused:
        standby.run()
    assert "no standby.signal" in refused.value.msg and "fleetdb.online_upgrade.standby" in refused.value.fix


class Walsender:
    closed = False

    def execute(self, sql):
        assert sql == "IDENTIFY_SYSTEM"
        return type("Result", (), dict(rows=[["7400000000000000001", "1", "0/5000060", None]]))()

    def close(self):
        self.closed = True


def test_the_primary_s_position_is_taken_once_it_serves_the_cluster_the_standby_was_copied_from(tmp_path, monkeypatch):
    standby = switch(tmp_path, monkeypatch, (5432, 5432), (15432, 5432))
    asked = []
    monkeypatch.setattr(session, "login", lambda *args, **kwargs: asked.append((args, kwargs)) or Walsender())
    monkeypatch.setattr(standby_switch, "system_identifier", lambda data_dir: 7400000000000000001)
    assert standby._primary_position() == "0/5000060"
    assert asked[0][0][:3] == ("10.0.0.11", 5432, "fleetdb_replicator") and asked[0][1]["replication"] == "true"


def test_a_primary_port_still_serving_the_old_cluster_is_refused(tmp_path, monkeypatch):
    standby = switch(tmp_path, monkeypatch, (5432, 5432), (15432, 5432))
    monkeypatch.setattr(session, "login", lambda *args, **kwargs: Walsender())
    monkeypatch.setattr(standby_switch, "system_identifier", lambda data_dir: 7500000000000000002)
    with pytest.raises(OperationError) as refused:
        standby._primary_position()
    assert "the primary's cutover is not done; nothing was changed here" in refused.value.msg
    assert "run the primary's cutover first" in refused.value.fix


class OldServer:
    def query(self, sql, params=()):
        return type("Result", (), dict(rows=[("synchronous_standby_names", "FIRST 1 (db2, db3)", None),
                                             ("work_mem", "8192", "kB")]))()

    def scalar(self, sql):
        assert sql == "SHOW ssl"
        return "off"


def test_the_new_instance_does_not_inherit_synchronous_standby_names_and_preflight_returns_it():
    """Its commits must not wait for standbys still switching: the value is given back once they have switched."""
    checks = ServerChecks()
    checks.facts = {}
    assert checks._inheritable_settings(OldServer()) == {"work_mem": "8192kB"}
    assert checks.facts == {"synchronous_standby_names": "FIRST 1 (db2, db3)"}
