"""What the documentation claims that can be checked cheaply: every module documented, every role variable in the
role's README with its default, no link out of the repository."""
import glob
import json
import os
import re

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))
ROLE = os.path.join(ROOT, "roles", "online_upgrade")
DOCUMENTS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) + sorted(
    glob.glob(os.path.join(ROOT, "roles", "*", "README.md")))


def read(path):
    with open(path) as text:
        return text.read()


def role_variables():
    specs = yaml.safe_load(read(os.path.join(ROLE, "meta", "argument_specs.yml")))["argument_specs"]
    return sorted({name for entry in specs.values() for name in entry["options"]})


def role_readme_table():
    """{variable: its default cell} from the role README's table."""
    rows = re.findall(r"^\| `(online_upgrade_\w+)` \| (.*?) \|", read(os.path.join(ROLE, "README.md")), re.M)
    return dict(rows)


@pytest.mark.parametrize("module", MODULES)
def test_every_module_has_a_section_in_docs_modules_md_and_a_row_in_readme(module):
    assert re.search(r"^## (fleetdb\.online_upgrade\.)?%s$" % module, read(os.path.join(ROOT, "docs", "modules.md")), re.M)
    assert "| `fleetdb.online_upgrade.%s` |" % module in read(os.path.join(ROOT, "README.md"))


def test_every_role_variable_is_in_the_role_readme_with_its_default():
    table = role_readme_table()
    assert sorted(set(role_variables()) - set(table)) == []
    with open(os.path.join(ROLE, "defaults", "main.yml")) as defaults_file:
        defaults = yaml.safe_load(defaults_file)
    for name, cell in table.items():
        value = defaults.get(name)
        if isinstance(value, (str, int, float)) and "{{" not in str(value) and not cell.startswith("*found*"):
            shown = json.dumps(value) if value == "" or isinstance(value, bool) else str(value)
            assert cell.split(" ")[0] == "`%s`" % shown, (name, cell, value)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: os.path.relpath(p, ROOT))
def test_no_link_leaves_the_repository_and_every_link_inside_it_resolves(path):
    text = read(path)
    assert "../shared" not in text
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        resolved = os.path.realpath(os.path.join(os.path.dirname(path), target))
        assert resolved.startswith(ROOT + os.sep), (target, "outside the repository")
        assert os.path.exists(resolved), (target, "does not exist")
