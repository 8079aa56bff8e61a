# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet arithmetic from measured runs: the summary of one playbook run (per host, per wave) and the plan of a
larger fleet (waves, forks, expected duration).  Pure functions: the filter ``fleet_summary`` and
tools/fleetdb_waves.py use them; tests/unit/test_fleet_plan.py checks them.

A host report (roles/online_upgrade/tasks/report.yml) holds ``marks``: epoch seconds at started, preflight_done,
install_done, copy_done, indexes_done, catch_up_done, cutover_done, ended (those the run reached); a primary's
also ``standbys``: each standby host switched after its cutover, with the pause its read clients saw.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

PARTS = (("preflight", "started", "preflight_done"), ("install", "preflight_done", "install_done"),
         ("copy", "install_done", "copy_done"), ("indexes", "copy_done", "indexes_done"),
         ("catch_up", "indexes_done", "catch_up_done"), ("cutover", "catch_up_done", "cutover_done"),
         ("retire", "cutover_done", "ended"))
UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def host_timings(report):
    """{part: seconds} for the parts this host's run went through, plus total and window."""
    marks = report.get("marks") or {}
    out = {}
    for part, begin, end in PARTS:
        if marks.get(begin) is not None and marks.get(end) is not None:
            out[part] = round(float(marks[end]) - float(marks[begin]), 3)
    if marks.get("started") is not None and marks.get("ended") is not None:
        out["total"] = round(float(marks["ended"]) - float(marks["started"]), 3)
    if report.get("window_s") not in (None, ""):
        out["window"] = float(report["window_s"])
    return out


def standby_switches(report):
    """[{host, read_pause_s}] of the standbys a primary's run switched (the pause is null for a switch a rerun
    finished after the old standby had stopped)."""
    return [dict(host=s["host"], read_pause_s=_float(s.get("read_pause_s"))) for s in report.get("standbys") or []]


def summarize(reports):
    """The summary.json of a run: each host (timings, outcome, standbys switched) and each wave (hosts, start, end,
    duration, the longest read pause of its primaries' standbys)."""
    hosts, waves = [], {}
    for report in sorted(reports, key=lambda r: (r.get("marks") or {}).get("started") or 0):
        marks = report.get("marks") or {}
        entry = dict(host=report["host"], ok=_bool(report.get("ok")), failed_task=report.get("failed_task"),
                     error=report.get("error"), size_bytes=_int(report.get("size_bytes")),
                     run=report.get("run"), timings=host_timings(report), standbys=standby_switches(report))
        hosts.append(entry)
        key = (report.get("run"), tuple(sorted(report.get("wave_hosts") or [report["host"]])))
        wave = waves.setdefault(key, dict(run=key[0], hosts=list(key[1]), started=None, ended=None, ok=0, failed=0,
                                          read_pause_s_max=None))
        for pause in (s["read_pause_s"] for s in entry["standbys"] if s["read_pause_s"] is not None):
            wave["read_pause_s_max"] = max(pause, wave["read_pause_s_max"] or 0)
        for mark, earliest in (("started", min), ("ended", max)):
            if marks.get(mark) is not None:
                value = float(marks[mark])
                wave[mark] = value if wave[mark] is None else earliest(wave[mark], value)
        wave["ok" if entry["ok"] else "failed"] += 1
    ordered = sorted(waves.values(), key=lambda w: w["started"] or 0)
    for number, wave in enumerate(ordered, 1):
        wave["wave"] = number
        if wave["started"] is not None and wave["ended"] is not None:
            wave["duration_s"] = round(wave["ended"] - wave["started"], 3)
    done = [h for h in hosts if h["ok"]]
    return dict(hosts=hosts, waves=ordered, ok=len(done), failed=len(hosts) - len(done),
                model=model(hosts))


def model(hosts):
    """What a host costs, from the hosts that succeeded: the fixed part (all but the copy) and the copy rate."""
    fixed, rates, windows = [], [], []
    for host in hosts:
        t = host["timings"]
        if not host["ok"] or "total" not in t:
            continue
        copying = sum(t.get(p, 0) for p in ("copy", "indexes", "catch_up"))
        fixed.append(t["total"] - copying)
        if host.get("size_bytes") and copying > 0:
            rates.append(host["size_bytes"] / copying)
        if "window" in t:
            windows.append(t["window"])
    if not fixed:
        return None
    return dict(hosts=len(fixed), fixed_s=round(_median(fixed), 2), fixed_s_max=round(max(fixed), 2),
                copy_bytes_per_s=round(_median(rates)) if rates else None,
                window_s=round(_median(windows), 3) if windows else None,
                window_s_max=round(max(windows), 3) if windows else None)


def parse_fleet(text):
    """'400x20GB,90x200GB,10x1TB' -> [(400, bytes), (90, bytes), (10, bytes)]."""
    groups = []
    for part in (text or "").split(","):
        match = re.match(r"^\s*(\d+)\s*x\s*([\d.]+)\s*([KMGT]?B?)\s*$", part, re.IGNORECASE)
        if not match:
            raise ValueError("%r is not <count>x<size> (e.g. 400x20GB)" % part)
        unit = match.group(3).upper()
        unit = unit if unit.endswith("B") or not unit else unit + "B"
        groups.append((int(match.group(1)), int(float(match.group(2)) * UNITS[unit])))
    return groups


def plan(fitted, fleet, forks, first_waves=(1, 5, 25), copy_bytes_per_s=None):
    """Waves for ``fleet`` ([(count, bytes)]): small hosts first, canaries then growing waves, none wider than
    ``forks``; each wave lasts as long as its slowest host (fixed part + size / copy rate)."""
    rate = copy_bytes_per_s or fitted["copy_bytes_per_s"]
    sizes = sorted(size for count, size in fleet for _copy in range(count))
    waves, index = [], 0
    widths = list(first_waves)
    while index < len(sizes):
        width = min(widths.pop(0) if widths else forks, forks)
        members = sizes[index:index + width]
        index += len(members)
        slowest = fitted["fixed_s_max"] + members[-1] / float(rate)
        waves.append(dict(wave=len(waves) + 1, hosts=len(members), smallest=members[0], largest=members[-1],
                          duration_s=round(slowest, 1)))
    # Ansible's serial repeats its last entry, and its last wave takes what is left: the canaries, then the forks.
    serial = [min(width, forks) for width in first_waves] + [forks]
    if len(waves) <= len(first_waves):
        serial = [w["hosts"] for w in waves]
    return dict(waves=waves, serial=serial, forks=forks, hosts=len(sizes),
                duration_s=round(sum(w["duration_s"] for w in waves), 1), copy_bytes_per_s=rate)


def forks_for_memory(memory_bytes, per_fork_bytes, reserve_bytes=512 * 1024 ** 2):
    """Forks a controller can hold: each fork is a Python process of its own."""
    return max(1, int((memory_bytes - reserve_bytes) // per_fork_bytes))


def human_duration(seconds):
    seconds = int(math.ceil(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "%dh%02dm" % (hours, minutes) if hours else ("%dm%02ds" % (minutes, secs) if minutes else "%ds" % secs)


def _median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


def _bool(value):
    return value if isinstance(value, bool) else str(value).lower() in ("true", "yes", "1")


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
