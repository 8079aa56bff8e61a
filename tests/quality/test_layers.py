"""The three layers of plugins/module_utils import downwards only, and modules go through the engine registry.

core/      engine-neutral: the engine interfaces, option specs, errors, host helpers
postgres/  PostgreSQL mechanisms, each once (wire client, server control, pg_hba, slots, ...)
upgrade/   the upgrade procedure built from them, and the PostgreSQL engine that exposes it
engines.py the registry: the one file allowed to name an engine's package

plugins/modules/ and plugins/filter/ see core/ and the registry only.
"""
import ast
import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "ansible_collections.fleetdb.online_upgrade.plugins.module_utils"
LAYERS = ["core", "postgres", "upgrade"]
REGISTRY = "engines"

# What each place may import from module_utils.
ALLOWED = {
    "core": {"core"},
    "postgres": {"core", "postgres"},
    "upgrade": {"core", "postgres", "upgrade"},
    REGISTRY: {"core", "postgres", "upgrade"},
    "plugins": {"core", REGISTRY},
}


def module_utils_imports(path):
    """(line, first component under module_utils) of every import of module_utils in a file."""
    tree = ast.parse(open(path).read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            rest = node.module[len(PREFIX):].lstrip(".")
            if rest:
                found.append((node.lineno, rest.split(".")[0]))
            else:
                found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PREFIX + "."):
                    found.append((node.lineno, alias.name[len(PREFIX) + 1:].split(".")[0]))
    return found


def place_of(path, root):
    rel = os.path.relpath(path, os.path.join(root, "plugins"))
    parts = rel.split(os.sep)
    if parts[0] == "module_utils":
        return parts[1] if len(parts) > 2 else parts[1][:-3]
    return "plugins"


def files():
    return sorted(p for p in glob.glob(os.path.join(ROOT, "plugins", "**", "*.py"), recursive=True))


def crossings(paths, root=ROOT):
    bad = []
    for path in paths:
        place = place_of(path, root)
        allowed = ALLOWED.get(place)
        assert allowed is not None, "%s is outside the layers %s: put it in one of them" % (path, LAYERS)
        for line, target in module_utils_imports(path):
            if target not in allowed:
                bad.append("%s:%d imports module_utils.%s (%s may import only %s)"
                           % (os.path.relpath(path, root), line, target, place, ", ".join(sorted(allowed))))
    return bad


def test_module_utils_is_three_layers_and_the_registry():
    top = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "plugins", "module_utils", "*"))}
    assert top - {"__pycache__"} == {"core", "postgres", "upgrade", "engines.py"}, sorted(top)


def test_imports_go_downwards_only_and_modules_through_the_registry():
    assert crossings(files()) == []


@pytest.mark.parametrize("place,line,expected", [
    ("core", "from %s.postgres import pgwire" % PREFIX, "core may import only core"),
    ("postgres", "from %s.upgrade.switchover import PostgresSwitchover" % PREFIX, "postgres may import only"),
    ("modules", "from %s.postgres.pgwire import PgError" % PREFIX, "plugins may import only"),
])
def test_an_upward_or_sideways_import_is_caught(tmp_path, place, line, expected):
    """The test above can fail: plant a file with a forbidden import where it does not belong."""
    where = {"core": ("module_utils", "core"), "postgres": ("module_utils", "postgres"), "modules": ("modules",)}[place]
    planted = tmp_path.joinpath("plugins", *where)
    planted.mkdir(parents=True)
    path = planted / "planted.py"
    path.write_text(line + "\n")
    found = crossings([str(path)], root=str(tmp_path))
    assert len(found) == 1 and expected in found[0], found
