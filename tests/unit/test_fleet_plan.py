"""The fleet summary and wave plan (plugins/module_utils/core/fleet_plan.py) on hand-made reports."""
import pytest

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core import fleet_plan

GB = 1024 ** 3


def report(host, start, wave, ok=True, size=100 * 1024 ** 2, copy=10.0, window=0.3):
    marks = dict(started=start, preflight_done=start + 2, install_done=start + 10, copy_done=start + 10 + copy,
                 indexes_done=start + 12 + copy, catch_up_done=start + 13 + copy, cutover_done=start + 16 + copy,
                 ended=start + 19 + copy)
    if not ok:
        marks = dict(started=start, preflight_done=start + 2, ended=start + 3)
    return dict(host=host, ok=ok, run="r1", wave_hosts=wave, size_bytes=str(size), window_s=window if ok else None,
                failed_task=None if ok else "Preflight", marks=marks)


def test_summary_times_each_part_and_groups_hosts_into_waves():
    reports = [report("h1", 100, ["h1"]), report("h2", 130, ["h2", "h3"]), report("h3", 131, ["h2", "h3"], ok=False)]
    summary = fleet_plan.summarize(reports)
    h1 = summary["hosts"][0]["timings"]
    assert h1 == dict(preflight=2, install=8, copy=10, indexes=2, catch_up=1, cutover=3, retire=3, total=29,
                      window=0.3)
    assert [w["hosts"] for w in summary["waves"]] == [["h1"], ["h2", "h3"]]
    assert summary["waves"][1]["duration_s"] == 29 and summary["waves"][1]["failed"] == 1
    assert summary["ok"] == 2 and summary["failed"] == 1
    # the model: total minus copy, indexes and catch-up; bytes over those seconds
    assert summary["model"]["fixed_s"] == 16 and summary["model"]["copy_bytes_per_s"] == 100 * 1024 ** 2 // 13


def test_the_summary_lists_each_primarys_standby_switches_and_each_waves_longest_read_pause():
    primary = dict(report("db1", 100, ["db1", "db4"]), standbys=[
        dict(host="db2", read_pause_s=0.41, phases={"stop_old": 0.1}, phase_order=["stop_old"]),
        dict(host="db3", read_pause_s="1.2"), dict(host="db5", read_pause_s=None)])
    summary = fleet_plan.summarize([primary, report("db4", 101, ["db1", "db4"]), report("db6", 200, ["db6"])])
    assert summary["hosts"][0]["standbys"] == [dict(host="db2", read_pause_s=0.41), dict(host="db3", read_pause_s=1.2),
                                               dict(host="db5", read_pause_s=None)]
    assert summary["hosts"][1]["standbys"] == []
    assert [w["read_pause_s_max"] for w in summary["waves"]] == [1.2, None]


def test_a_plan_puts_small_hosts_first_and_no_wave_wider_than_the_forks():
    fitted = dict(fixed_s=16, fixed_s_max=20, copy_bytes_per_s=100 * 1024 ** 2)
    result = fleet_plan.plan(fitted, fleet_plan.parse_fleet("400x20GB,90x200GB,10x1TB"), forks=50)
    assert result["hosts"] == 500 and all(w["hosts"] <= 50 for w in result["waves"])
    assert [w["hosts"] for w in result["waves"][:4]] == [1, 5, 25, 50]
    assert result["serial"][:3] == [1, 5, 25] and result["serial"][-1] <= 50
    last = result["waves"][-1]
    assert last["largest"] == 1024 * GB and last["duration_s"] == round(20 + 1024 * GB / (100 * 1024 ** 2), 1)
    assert result["duration_s"] == round(sum(w["duration_s"] for w in result["waves"]), 1)


def test_forks_follow_the_controller_memory_and_the_fleet_text_is_checked():
    assert fleet_plan.forks_for_memory(8 * GB, 100 * 1024 ** 2) == (8 * 1024 - 512) // 100
    with pytest.raises(ValueError, match="is not <count>x<size>"):
        fleet_plan.parse_fleet("lots of hosts")
    assert fleet_plan.parse_fleet("2x1.5TB") == [(2, int(1.5 * 1024 ** 4))]
