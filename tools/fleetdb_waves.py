"""Wave plan of a fleet upgrade, computed from a measured run (docs/fleet.md).

  summary REPORT_DIR           fold <REPORT_DIR>/hosts/*.json (the role's reports) into a summary, print it
  plan --summary FILE --fleet 400x20GB,90x200GB,10x1TB [--forks N | --controller-memory 8GB]
                               waves (serial), forks, expected duration, from the summary's measured model:
                               the fixed part of a host (everything but the copy) and the copy rate

The summary is playbooks/upgrade.yml's reports/summary.json, or `summary` of its report directory. A summary
with a `controller` section (peak memory of the controller at a number of forks, which the ten-host test
records) gives the memory each fork takes; otherwise --per-fork-mb.
"""
import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core import fleet_plan  # noqa: E402
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import human_bytes  # noqa: E402


def load_summary(path):
    if os.path.isdir(path):
        reports = []
        for name in sorted(glob.glob(os.path.join(path, "hosts", "*.json"))):
            with open(name) as handle:
                reports.append(json.load(handle))
        return fleet_plan.summarize(reports)
    with open(path) as handle:
        return json.load(handle)


def per_fork_bytes(summary, default_mb):
    controller = summary.get("controller") or {}
    if controller.get("peak_rss_bytes") and controller.get("forks"):
        return int(controller["peak_rss_bytes"] / controller["forks"]), "measured: peak %s at %d forks" % (
            human_bytes(controller["peak_rss_bytes"]), controller["forks"])
    return int(default_mb * 1024 ** 2), "assumed: --per-fork-mb %g" % default_mb


def format_plan(summary, result, fork_note, memory=None, rate_note=""):
    fitted = summary["model"]
    memory_note = ", controller memory %s" % human_bytes(memory) if memory else ""
    lines = [
        "measured on %d hosts: fixed part %.1f s (slowest %.1f s), client window %s s (max %s s)" % (
            fitted["hosts"], fitted["fixed_s"], fitted["fixed_s_max"], fitted.get("window_s"),
            fitted.get("window_s_max")),
        "copy rate per host %s/s (%s)" % (human_bytes(result["copy_bytes_per_s"]), rate_note),
        "forks %d (%s%s)" % (result["forks"], fork_note, memory_note),
        "", "| wave | hosts | sizes | expected duration |", "|---:|---:|---|---:|"]
    for wave in result["waves"]:
        lines.append("| %d | %d | %s - %s | %s |" % (
            wave["wave"], wave["hosts"], human_bytes(wave["smallest"]), human_bytes(wave["largest"]),
            fleet_plan.human_duration(wave["duration_s"])))
    lines += ["", "%d hosts in %d waves: serial %s, about %s" % (
        result["hosts"], len(result["waves"]), json.dumps(result["serial"]),
        fleet_plan.human_duration(result["duration_s"]))]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fleetdb-waves", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary")
    s.add_argument("report_dir")
    p = sub.add_parser("plan")
    p.add_argument("--summary", required=True, help="summary.json, or a report directory")
    p.add_argument("--fleet", required=True, help="<count>x<size>,... e.g. 400x20GB,90x200GB,10x1TB")
    p.add_argument("--forks", type=int, help="default: what --controller-memory holds")
    p.add_argument("--controller-memory", default="8GB")
    p.add_argument("--per-fork-mb", type=float, default=80.0, help="when the summary measured none")
    p.add_argument("--first-waves", default="1,5,25", help="canary waves before full-width ones")
    p.add_argument("--copy-rate",
                   help="per host and second, e.g. 300MB (default: --copy-rate-from, else the summary's)")
    p.add_argument("--copy-rate-from",
                   help="a JSON file with copy_bytes_per_s (bench/initial_copy.py writes .cache/bench/initial_copy.json)")
    p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "summary":
        print(json.dumps(load_summary(args.report_dir), indent=1, sort_keys=True))
        return 0
    summary = load_summary(args.summary)
    if not summary.get("model"):
        sys.exit("%s has no host that finished: nothing to plan from" % args.summary)
    memory = fleet_plan.parse_fleet("1x" + args.controller_memory)[0][1]
    fork_bytes, note = per_fork_bytes(summary, args.per_fork_mb)
    forks = args.forks or fleet_plan.forks_for_memory(memory, fork_bytes)
    if args.forks:
        note = "given; %s" % note
    rate, rate_note = None, "the summary's hosts"
    if args.copy_rate:
        rate, rate_note = fleet_plan.parse_fleet("1x" + args.copy_rate)[0][1], "given"
    elif args.copy_rate_from and os.path.exists(args.copy_rate_from):
        with open(args.copy_rate_from) as handle:
            rate, rate_note = int(json.load(handle)["copy_bytes_per_s"]), args.copy_rate_from
    elif max(h.get("size_bytes") or 0 for h in summary["hosts"]) < 1024 ** 3:
        print("warning: the summary's hosts hold under 1 GB each: their copy rate is mostly fixed costs; give "
              "--copy-rate or --copy-rate-from", file=sys.stderr)
    result = fleet_plan.plan(summary["model"], fleet_plan.parse_fleet(args.fleet), forks,
                             first_waves=[int(w) for w in args.first_waves.split(",") if w], copy_bytes_per_s=rate)
    if args.json:
        print(json.dumps(result, indent=1, sort_keys=True))
    else:
        print(format_plan(summary, result, note, None if args.forks else memory, rate_note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
