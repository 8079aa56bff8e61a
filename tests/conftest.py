"""The order in which ``make test`` (``pytest -n 2 --dist loadfile --no-loadscope-reorder``) hands test files to its
two workers: the longest first, so that no long file starts last while the other worker sits idle (xdist's own
reorder puts the files with the most tests first, which sent the one-test Molecule scenarios to the end).

The seconds per file are tests/durations.json, from a fresh-clone ``make test``; each run writes what it measured
to .cache/test-durations.json (docs/DEVELOPING.md: copy it over tests/durations.json when times change). A file
not named there weighs nothing and keeps its place after the others."""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(ROOT, "tests", "durations.json")
MEASURED = os.path.join(ROOT, ".cache", "test-durations.json")
_seconds = {}


def _file_of(nodeid):
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config, items):
    with open(WEIGHTS, encoding="utf-8") as weights:
        seconds = json.load(weights)
    items.sort(key=lambda item: -seconds.get(_file_of(item.nodeid), 0))


def pytest_runtest_logreport(report):
    _seconds[_file_of(report.nodeid)] = _seconds.get(_file_of(report.nodeid), 0) + report.duration


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput") or not _seconds:
        return
    measured = {}
    if os.path.exists(MEASURED):
        with open(MEASURED, encoding="utf-8") as previous:
            measured = json.load(previous)
    measured.update({name: round(value) for name, value in _seconds.items()})
    os.makedirs(os.path.dirname(MEASURED), exist_ok=True)
    with open(MEASURED, "w", encoding="utf-8") as out:
        json.dump(dict(sorted(measured.items())), out, indent=2)
        out.write("\n")
