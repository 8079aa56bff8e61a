"""The report side of bench/gap.py: ratios, tables, scenario plans (no servers)."""
import argparse
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("bench_gap", os.path.join(ROOT, "bench", "gap.py"))
gap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gap)


def run(scenario, method, gap_s, ok=True, **extra):
    result = dict(scenario=scenario, method=method, size_mb=100.0, gap_s=gap_s, lost=0, acknowledged=1000,
                  failed_attempts=3, copy_s=12.34, ok=ok)
    result.update(extra)
    return result


def test_ratio_is_pg_upgrade_gap_over_online_gap_per_scenario():
    results = [run("100 MB", "online", 0.25), run("100 MB", "pg_upgrade", 3.7), run("100 MB", "dump_restore", 9.0),
               run("1000 MB", "online", 0.5), run("1000 MB", "pg_upgrade", 2.2)]
    assert gap.ratios(results) == {"100 MB": 14.8, "1000 MB": 4.4}


def test_ratio_leaves_out_scenarios_with_a_failed_or_missing_run():
    results = [run("a", "online", 0.2, ok=False), run("a", "pg_upgrade", 3.0),
               run("b", "pg_upgrade", 3.0),
               run("c", "online", 0.0), run("c", "pg_upgrade", 3.0)]
    assert gap.ratios(results) == {}


def test_table_has_a_line_per_run_and_the_ratios():
    results = [run("100 MB", "online", 0.2512, window_s=0.3), run("100 MB", "pg_upgrade", 3.7),
               run("100 MB", "dump_restore", None, ok=False, error="pg_dump failed\nmore detail", lost=None)]
    text = gap.format_table(results).splitlines()
    assert text[0].split() == ["scenario", "size", "MB", "method", "gap", "s", "lost", "acked", "failed", "copy", "s",
                               "window", "s", "ok"]
    assert set(text[1]) <= {"-", " "}
    assert text[2].split() == ["100", "MB", "100", "online", "0.251", "0", "1000", "3", "12.3", "0.300", "yes"]
    assert text[3].split()[4] == "3.700" and text[3].split()[-1] == "yes"
    assert text[4].split()[4:6] == ["-", "-"]
    assert text[4].endswith("NO (pg_dump failed)")
    assert text[5] == "100 MB: pg_upgrade --link gap / online gap = 14.7x"


def test_markdown_table_rows():
    rows = gap.markdown_table([run("300 tables", "online", 0.4, window_s=0.45), run("300 tables", "pg_upgrade", 4.0)])
    lines = rows.splitlines()
    assert lines[0].startswith("| scenario |") and lines[1].startswith("|---")
    assert "| online (replication + switchover) | 0.400 s | 0 |" in lines[2] and lines[2].endswith("| 0.450 s |")
    assert lines[3].endswith("| - |")


def test_scenarios_from_arguments():
    args = argparse.Namespace(quick=False, sizes="100,1000,5000", tables="1000,10000", tables_size=100)
    assert [(s["name"], s["mb"], s["tables"]) for s in gap.scenarios(args)] == [
        ("100 MB", 100, 0), ("1000 MB", 1000, 0), ("5000 MB", 5000, 0), ("1000 tables", 100, 1000),
        ("10000 tables", 100, 10000)]
    args = argparse.Namespace(quick=False, sizes="50", tables="300", tables_size=0)
    assert [s["name"] for s in gap.scenarios(args)] == ["50 MB"]
    args.quick = True
    assert all(s["mb"] <= 20 for s in gap.scenarios(args))


def test_initial_copy_report_gives_time_rate_and_the_physical_ratio():
    sys.path.insert(0, os.path.join(ROOT, "bench"))  # as when it runs: its own directory first (bench/_local.py)
    spec = importlib.util.spec_from_file_location("bench_copy", os.path.join(ROOT, "bench", "initial_copy.py"))
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    text = copy.report([dict(rows=8000000, mb=1000.0, logical_s=40.0, physical_s=10.0, dump_s=50.0)]).splitlines()
    assert text[0] == "1000 MB (8000000 rows):"
    assert text[1].split()[-4:] == ["40.0", "s", "25.0", "MB/s"] and text[1].lstrip().startswith("logical")
    assert text[2].split()[-4:] == ["10.0", "s", "100.0", "MB/s"] and text[2].lstrip().startswith("physical")
    assert text[3].split()[-4:] == ["50.0", "s", "20.0", "MB/s"]
    assert text[4].strip() == "physical / logical rate: 4.0x"


def test_online_methods_copy_physically_from_5000_tables_unless_told_and_the_tables_say_so():
    assert gap.copy_method_of(dict(tables=0), "auto") == "logical"
    assert gap.copy_method_of(dict(tables=1000), "auto") == "logical"
    assert gap.copy_method_of(dict(tables=10000), "auto") == "physical"
    assert gap.copy_method_of(dict(tables=10000), "logical") == "logical"
    assert gap.copy_method_of(dict(tables=0), "physical") == "physical"
    results = [run("10000 tables", "online", 0.3, window_s=0.3, copy_method="physical"),
               run("10000 tables", "pg_upgrade", 4.0)]
    assert gap.format_table(results).splitlines()[2].split()[8:10] == ["12.3", "(physical)"]
    lines = gap.markdown_table(results).splitlines()
    assert "| 12.3 s (physical) |" in lines[2] and "| 12.3 s |" in lines[3]


def test_the_benches_call_the_collection_with_arguments_it_takes():
    """bench/*.py run only under make bench: a call to a class or function of the collection that no longer takes
    its arguments would fail there first (the --archive line once passed the switchover ``archiving``)."""
    import ast
    import inspect
    checked = 0
    for name in sorted(os.listdir(os.path.join(ROOT, "bench"))):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(ROOT, "bench", name)) as handle:
            tree = ast.parse(handle.read())
        imported = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ansible_collections.fleetdb"):
                for alias in node.names:
                    imported[alias.asname or alias.name] = getattr(importlib.import_module(node.module), alias.name)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported):
                continue
            target = imported[node.func.id]
            if not callable(target) or any(k.arg is None for k in node.keywords) or any(
                    isinstance(a, ast.Starred) for a in node.args):
                continue
            signature = inspect.signature(target)
            try:
                signature.bind(*[None] * len(node.args), **dict((k.arg, None) for k in node.keywords))
            except TypeError as exc:
                raise AssertionError("bench/%s line %d: %s(...) %s" % (name, node.lineno, node.func.id, exc))
            checked += 1
    assert checked >= 5, checked


def test_a_run_with_a_standby_prints_its_read_pause_beside_the_write_gap_with_and_without_it():
    results = [run("100 MB", "online", 0.25), run("100 MB", "standby", 0.27, read_pause_s=0.31, reads=9000,
                                                  reads_backwards=0)]
    assert gap.format_table(results).splitlines()[-1] == (
        "100 MB: with a standby, read pause 0.310 s on it (9000 values read, 0 went back), write gap 0.270 s "
        "(without a standby: 0.250 s)")
