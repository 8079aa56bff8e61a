"""Where the upgrade of a host stands (module progress): what a re-run must do, read from the records the
cutover's state file and the later playbooks keep, by the names of the one list of phases (upgrade/phases.py)."""
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import get_engine
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade import phases
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.cutover_state import StateFile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(ROOT, "plugins", "modules", "progress.py")


class FakeModule:
    def __init__(self, check_mode=False):
        self.check_mode = check_mode


def progress(state_dir, check_mode=False):
    return get_engine("postgresql").progress(FakeModule(check_mode), str(state_dir))


def cutover_reached(state_dir, phase, **extra):
    StateFile(FakeModule(), str(state_dir / "switchover.json")).set(phase, **extra)


def read(state_dir, old="16", new="18", old_data_dir="/nonexistent/16/main"):
    return progress(state_dir).read(old, new, old_data_dir)


def run_module(args, check_mode=False):
    """The module as Ansible runs it: its arguments in a file, its result on stdout."""
    args = dict(args, _ansible_check_mode=check_mode)
    path = os.path.join(os.path.dirname(str(args["state_dir"])), "args.json")
    with open(path, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, MODULE, path], capture_output=True, text=True, env=env, check=False)
    return json.loads(proc.stdout)


def test_a_host_without_records_begins(tmp_path):
    found = read(tmp_path)
    assert found["phase"] == phases.NONE and found["phase"] in found["phases"]["begins"]
    assert not (found["past_stop"] or found["another_upgrade"] or found["finished"] or found["in_progress"])
    assert found["cutover"] == {} and found["recorded"] == {}
    # the file each module keeps its record in: the cutover's is the one this reads
    assert found["records"]["cutover"] == str(tmp_path / "switchover.json")


def test_the_window_phases_are_the_cutovers_in_order():
    assert phases.WINDOW[0] == "pause" and phases.WINDOW[-1] == "resume"
    assert phases.BEFORE_STOP + ("stop",) == phases.WINDOW[:phases.WINDOW.index("stop") + 1]
    assert "verify" not in phases.ALL   # a timer of the cutover, never a phase its state file names


def test_the_state_file_records_only_phases_of_the_list(tmp_path):
    state = StateFile(FakeModule(), str(tmp_path / "switchover.json"))
    for phase in phases.WINDOW:
        state.set(phase)
    with pytest.raises(ValueError, match="verify"):
        state.set("verify")
    assert json.loads((tmp_path / "switchover.json").read_text())["phase"] == "resume"


@pytest.mark.parametrize("phase, fence_may_be_up, past_stop", [
    ("fence", True, False), ("detach", True, False), ("rescuing", True, True), ("proof", False, True),
    ("new_not_ready", False, True), ("done", False, True), ("aborted", False, False), ("rolled_back", False, False),
])
def test_what_a_rerun_does_after_each_phase(tmp_path, phase, fence_may_be_up, past_stop):
    cutover_reached(tmp_path, phase, databases=["app"], rollback_slots={"app": "fleetdb_rollback"})
    found = read(tmp_path)
    assert (found["phase"], found["fence_may_be_up"], found["past_stop"]) == (phase, fence_may_be_up, past_stop)
    assert found["cutover"] == {"databases": ["app"], "rollback_slots": {"app": "fleetdb_rollback"}}


def test_at_stop_the_cutover_is_past_it_once_the_old_postmaster_is_gone(tmp_path):
    cutover_reached(tmp_path, "stop")
    data_dir = tmp_path / "16" / "main"
    data_dir.mkdir(parents=True)
    (data_dir / "postmaster.pid").write_text("4242\n")
    assert read(tmp_path, old_data_dir=str(data_dir))["past_stop"] is False
    (data_dir / "postmaster.pid").unlink()
    assert read(tmp_path, old_data_dir=str(data_dir))["past_stop"] is True


def test_another_upgrade_is_told_by_the_recorded_versions(tmp_path):
    assert progress(tmp_path).begin("16", "17")["changed"]
    assert not progress(tmp_path).begin("16", "17")["changed"]
    assert read(tmp_path, "16", "17")["another_upgrade"] is False
    assert read(tmp_path, "17", "18")["another_upgrade"] is True
    assert read(tmp_path, "16", "18")["recorded"] == {"old_version": "16", "new_version": "17"}


def test_the_records_of_another_server_of_the_host_are_told_from_this_ones(tmp_path):
    old = "/var/lib/pg/14/main"
    progress(tmp_path).begin("14", "18", 5432, old)
    assert progress(tmp_path).read("14", "18", old, 5432)["other_server"] is None
    assert progress(tmp_path).read("18", "19", "/var/lib/pg/18/main", 5432)["other_server"] is None   # its next
    assert progress(tmp_path).read("15", "18", "/var/lib/pg/15/other", 5442)["other_server"] == dict(
        port=5432, old_data_dir=old)
    progress(tmp_path / "unrecorded").begin("14", "18")
    assert progress(tmp_path / "unrecorded").read("15", "18", "/var/lib/pg/15/other", 5442)["other_server"] is None


def test_a_host_finalized_before_the_versions_were_recorded_knows_its_new_version(tmp_path):
    assert progress(tmp_path).record(phases.FINALIZED, new_version="17")["changed"]
    assert not progress(tmp_path).record(phases.FINALIZED, new_version="17")["changed"]   # a re-run changes nothing
    found = read(tmp_path, "17", "18")
    assert found["recorded"] == {"new_version": "17"} and found["another_upgrade"] and found["finished"]


def test_only_the_later_playbooks_phases_are_recorded_outside_the_cutover(tmp_path):
    with pytest.raises(ValueError):
        progress(tmp_path).record("fence")


def test_a_rolled_back_upgrade_forgets_its_cutovers_and_keeps_its_versions(tmp_path):
    progress(tmp_path).begin("16", "18")
    progress(tmp_path).record(phases.ROLLED_BACK, window_seconds=0.3)
    for name in ("rollback.json", "physical_copy.json", "discovery.json"):
        (tmp_path / name).write_text("{}\n")
    assert progress(tmp_path, check_mode=True).start_over()["changed"]
    assert (tmp_path / "switchover.json").exists()
    assert progress(tmp_path).start_over()["changed"]
    assert sorted(os.listdir(str(tmp_path))) == ["discovery.json", "upgrade.json"]
    assert read(tmp_path)["phase"] == phases.NONE


def test_a_finished_upgrade_is_set_aside_for_the_next(tmp_path):
    progress(tmp_path).begin("16", "17")
    cutover_reached(tmp_path, "done")
    (tmp_path / "work").mkdir()
    (tmp_path / "discovery.json").write_text("{}\n")
    would = progress(tmp_path, check_mode=True).set_aside()
    assert would["changed"] and not (tmp_path / "history").exists()
    done = progress(tmp_path).set_aside()
    assert os.path.basename(done["history_dir"]).startswith("16-to-17-")
    assert sorted(os.listdir(done["history_dir"])) == ["discovery.json", "switchover.json", "upgrade.json", "work"]
    assert os.listdir(str(tmp_path)) == ["history"]
    assert read(tmp_path, "17", "18")["phase"] == phases.NONE
    assert not progress(tmp_path).set_aside()["changed"]


def test_the_module_reports_and_records_with_check_mode(tmp_path):
    state_dir = tmp_path / "state"
    query = dict(state_dir=str(state_dir), old_version="16", new_version="18", old_data_dir=str(tmp_path / "16"))
    found = run_module(query)
    assert found["changed"] is False and found["phase"] == "none"
    assert found["new_instance_settings"] == {"wal_level": "logical"}
    assert found["phases"]["window"] == list(phases.WINDOW)
    begun = dict(query, state="begun")
    del begun["old_data_dir"]
    assert run_module(begun, check_mode=True)["changed"] is True
    assert not state_dir.exists()
    assert run_module(begun)["changed"] is True
    assert json.loads((state_dir / "upgrade.json").read_text()) == {"new_version": "18", "old_version": "16"}
    done = run_module(dict(state_dir=str(state_dir), state="done", method="dump_restore", databases=["app"]))
    assert done["changed"] is True
    found = run_module(query)
    assert (found["phase"], found["cutover"], found["finished"]) == (
        "done", {"databases": ["app"], "method": "dump_restore"}, True)
    refused = run_module(dict(state_dir=str(state_dir)))
    assert refused["failed"] and "old_version" in refused["msg"]


def test_a_rollback_whose_cutover_back_finished_is_told_apart(tmp_path):
    """A rollback that failed after its cutover back (its backup): the upgrade is still done, the cutover back is,
    and the re-run only ends the rollback."""
    cutover_reached(tmp_path, "done")
    assert read(tmp_path)["rollback_phase"] == phases.NONE
    (tmp_path / "rollback.json").write_text('{"phase": "done"}\n')
    found = read(tmp_path)
    assert found["phase"] == phases.DONE and found["rollback_phase"] == phases.DONE
