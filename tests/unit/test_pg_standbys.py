"""A primary's streaming standbys matched to the inventory hosts that name them (online_upgrade_primary), and what
preflight says of each: a named one, an unnamed one, a host named that streams not."""
import pytest

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication_access import (
    HBA_BLOCK, with_standby_lines)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.sizing import copy_parallelism
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.standby import NewStandby
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight import PostgresPreflight
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_standbys import match_standbys

DNS = {"db2.example": {"10.0.0.12"}, "db3.example": {"10.0.0.13"}}


def resolve(name):
    return DNS.get(name, set()) | {name}


def sender(application_name, client_addr, sync_state="async", slot=""):
    return dict(application_name=application_name, client_addr=client_addr, sync_state=sync_state, slot=slot)


def test_a_standby_is_matched_by_its_application_name():
    matched, unnamed, missing = match_standbys(
        [sender("db2", "172.17.0.5", "sync", "db2_slot")], [dict(host="db2")], resolve)
    assert matched == [dict(sender("db2", "172.17.0.5", "sync", "db2_slot"), host="db2")]
    assert unnamed == [] and missing == []


def test_a_standby_named_walreceiver_is_matched_by_its_address():
    """pg_basebackup -R writes no application_name: the walreceiver streams as 'walreceiver' (or cluster_name)."""
    standbys = [dict(host="db2", address="db2.example"), dict(host="db3", address="db3.example")]
    matched, unnamed, missing = match_standbys(
        [sender("walreceiver", "10.0.0.13"), sender("walreceiver", "10.0.0.12")], standbys, resolve)
    assert [(m["host"], m["client_addr"]) for m in matched] == [("db3", "10.0.0.13"), ("db2", "10.0.0.12")]
    assert unnamed == [] and missing == []


def test_an_explicit_application_name_wins_over_the_inventory_name():
    matched, unnamed, missing = match_standbys(
        [sender("pgnode02", "10.9.9.9")], [dict(host="db2", application_name="pgnode02")], resolve)
    assert [m["host"] for m in matched] == ["db2"] and not unnamed and not missing


def test_an_unnamed_standby_and_a_host_that_streams_not_are_both_reported():
    matched, unnamed, missing = match_standbys(
        [sender("reporting", "10.0.0.50")], [dict(host="db2", address="db2.example")], resolve)
    assert matched == []
    assert unnamed == [sender("reporting", "10.0.0.50")]
    assert missing == [dict(host="db2", address="db2.example")]


def test_one_host_is_matched_to_one_standby_only():
    """Two standbys on one address (two clusters on one host): the second is not taken for the first's host."""
    matched, unnamed, _missing = match_standbys(
        [sender("walreceiver", "10.0.0.12"), sender("walreceiver", "10.0.0.12")],
        [dict(host="db2", address="db2.example")], resolve)
    assert len(matched) == 1 and len(unnamed) == 1


def preflight(standbys):
    return PostgresPreflight(None, None, "18", "/nonexistent", [], "replication", 15432, 5433,
                             standbys=standbys, inventory_host="db1")


def test_preflight_names_each_standby_and_says_what_the_inventory_needs():
    check = preflight([dict(host="db2", address="10.0.0.12"), dict(host="db4")])
    slots = check._standbys([sender("db2", "10.0.0.12", "sync", "db2_slot"), sender("walreceiver", "10.0.0.50")])
    assert slots == {"db2_slot"}
    assert check.facts["standbys"][0]["host"] == "db2"
    msgs = [(p["msg"], p["fix"]) for p in check.findings.problems]
    assert len(msgs) == 2   # the named standby is listed, not refused: its new instance is made before the cutover
    unnamed = [m for m in msgs if "does not name" in m[0]][0]
    assert "application_name walreceiver from 10.0.0.50" in unnamed[0]
    assert "online_upgrade_primary: db1" in unnamed[1]
    assert check.facts["standbys"][0]["sync_state"] == "sync" and check.facts["standbys"][0]["slot"] == "db2_slot"
    missing = [m for m in msgs if "names db4" in m[0]][0]
    assert "online_upgrade_primary: db1" in missing[0]


def test_a_primary_without_standbys_has_no_standby_finding():
    check = preflight([])
    assert check._standbys([]) == set()
    assert check.findings.problems == [] and check.facts["standbys"] == []


class Rows:
    def __init__(self, rows):
        self.rows = rows


class Session:
    def __init__(self, rows):
        self._rows = rows

    def query(self, _sql, _params=None):
        return Rows(self._rows)


def test_a_logical_replica_of_the_old_server_is_refused_by_name_and_the_upgrades_own_subscription_is_not():
    check = preflight([])
    slots = check._logical_replicas(Session([("reporting_sub", "10.0.0.60", "shop", "reporting_sub"),
                                             ("fleetdb_upgrade", "local", "shop", "fleetdb_upgrade_shop")]))
    assert slots == {"reporting_sub"}
    [problem] = check.findings.problems
    assert problem["msg"].startswith("a logical replica streams from the old server: application_name reporting_sub "
                                     "from 10.0.0.60, database shop, slot reporting_sub")
    assert "pg_drop_replication_slot('reporting_sub')" in problem["fix"]


def test_the_new_instance_holds_a_wal_sender_and_a_slot_more_per_standby():
    without = copy_parallelism(2, 4 * 2 ** 30, 12, 40, 40)["settings"]
    two = copy_parallelism(2, 4 * 2 ** 30, 12, 40, 40, standbys=2)["settings"]
    assert two["max_wal_senders"] == without["max_wal_senders"] + 2 == 16
    assert two["max_replication_slots"] == without["max_replication_slots"] + 2
    # PostgreSQL's default 10 already holds the rollback's senders and a standby of a one-database server
    assert copy_parallelism(2, 4 * 2 ** 30, 1, 10, 10, standbys=1)["settings"]["max_wal_senders"] == 10


def test_the_new_instance_lets_each_standby_address_in_through_the_replication_block():
    text = "local all all peer\n"
    once = with_standby_lines(text, "fleetdb_replicator", ["10.0.0.12", "fd00::12"])
    assert HBA_BLOCK.lines(once) == ['host    replication   "fleetdb_replicator"   10.0.0.12/32   scram-sha-256',
                                     'host    replication   "fleetdb_replicator"   fd00::12/128   scram-sha-256']
    assert once.endswith(text) and with_standby_lines(once, "fleetdb_replicator", ["10.0.0.12"]) == once


class Module:
    check_mode = False

    def __init__(self):
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)


def new_standby(tmp_path, state_file):
    new = Spec(data_dir=str(tmp_path / "18" / "main"), bin_dir="/nonexistent", port=5432, owner="postgres")
    return NewStandby(Module(), new, "10.0.0.11", 15432, "fleetdb_replicator", "pw", "db2", 15432,
                      state_file=state_file)


class Spec:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


def test_a_killed_copy_this_host_began_is_cleared_and_a_directory_it_did_not_make_is_refused(tmp_path):
    data_dir = tmp_path / "18" / "main"
    data_dir.mkdir(parents=True)
    (data_dir / "base").mkdir()
    (data_dir / "PG_VERSION").write_text("18\n")
    state_file = str(tmp_path / "state" / "standby.json")
    with pytest.raises(OperationError) as refused:
        new_standby(tmp_path, state_file)._made()
    assert "not a standby (no standby.signal)" in refused.value.msg and "rm -rf %s" % data_dir in refused.value.fix
    standby = new_standby(tmp_path, state_file)
    standby._record("copying")
    assert standby._made() is False and not data_dir.exists()
    assert "copied again" in standby.module.warnings[0]
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("18\n")
    (data_dir / "standby.signal").write_text("")
    standby._record("made")
    assert standby._made() is True
