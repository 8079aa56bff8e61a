"""The documentation generated from the code: the HTML docs site (make docs) builds with no warning, antsibull-docs
finds no error in the plugins' and the role's documentation, and CHANGELOG.md is what the changelog fragments
generate."""
import glob
import os
import subprocess

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")


def run(argv, cwd=ROOT, **environment):
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), **environment)
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_antsibull_docs_finds_no_error_in_the_collection_docs():
    # rstcheck is left to the site build below, which renders docs/docsite/rst with every warning an error.
    code, output = run(["antsibull-docs", "lint-collection-docs", "--plugin-docs", "--skip-rstcheck", "."])
    assert (code, output) == (0, "")


def test_make_docs_builds_the_site_with_every_plugin_the_role_and_the_playbooks_page(tmp_path):
    code, output = run(["bash", os.path.join(ROOT, "scripts", "docs.sh"), str(tmp_path)])
    assert code == 0, output
    html = tmp_path / "build" / "html" / "collections" / "fleetdb" / "online_upgrade"
    modules = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))
    pages = ["%s_module.html" % name for name in modules] + [
        "online_upgrade_role.html", "fleet_summary_filter.html", "progress_callback.html", "docsite/playbooks.html"]
    assert [page for page in pages if not (html / page).is_file()] == []


def test_the_playbooks_page_names_every_playbook_its_play_and_its_role_entry_point():
    with open(os.path.join(ROOT, "docs", "docsite", "rst", "playbooks.rst")) as page_file:
        page = " ".join(page_file.read().split())
    for path in sorted(glob.glob(os.path.join(ROOT, "playbooks", "*.yml"))):
        name = os.path.basename(path)[:-4]
        with open(path) as playbook_file:
            plays = yaml.safe_load(playbook_file)
        # the play that enters the role at the playbook's own entry point (rollback.yml has one before it)
        play = next((p for p in plays if any(t.get("ansible.builtin.include_role", {}).get("tasks_from") == name
                                             for t in p.get("tasks", []))), plays[0])
        tasks_from = [task["ansible.builtin.include_role"].get("tasks_from", "main") for task in play.get("tasks", [])
                      if "ansible.builtin.include_role" in task] or ["main"]
        row = "* - ``fleetdb.online_upgrade.%s`` - %s" % (name, play["name"])
        assert row in page, row
        entry_point_cell = page.split(row, 1)[1].split(" - ", 1)[1].split()[0]
        assert entry_point_cell == "``%s``" % tasks_from[0], name


def test_changelog_fragments_pass_antsibull_changelog_lint():
    assert run(["antsibull-changelog", "lint"]) == (0, "")


def test_changelog_md_is_what_the_fragments_generate(tmp_path):
    generated = tmp_path / "CHANGELOG.md"
    code, output = run(["antsibull-changelog", "generate", "--output", str(generated), "--output-format", "md"])
    assert code == 0, output
    with open(os.path.join(ROOT, "CHANGELOG.md")) as committed:
        assert committed.read() == generated.read_text(), \
            "CHANGELOG.md is generated from changelogs/changelog.yaml: a change goes in a fragment under " \
            "changelogs/fragments/ (docs/DEVELOPING.md); after editing changelog.yaml, run antsibull-changelog generate"


def test_antsibull_changelog_release_makes_every_fragment_an_entry_of_the_next_release(tmp_path):
    collection = tmp_path / "ansible_collections" / "fleetdb" / "online_upgrade"
    collection.mkdir(parents=True)
    for path in ["galaxy.yml", "CHANGELOG.md", "changelogs", "meta", "plugins", "roles"]:
        subprocess.run(["cp", "-a", os.path.join(ROOT, path), str(collection)], check=True)
    fragments = sorted(glob.glob(os.path.join(ROOT, "changelogs", "fragments", "*.yml")))
    entries = 0
    for path in fragments:
        with open(path) as fragment:
            entries += sum(len(items) for items in yaml.safe_load(fragment).values())
    with open(os.path.join(ROOT, "galaxy.yml")) as galaxy:
        version = yaml.safe_load(galaxy)["version"]
    code, output = run(["antsibull-changelog", "release", "--version", version, "--date", "2026-12-31"],
                       cwd=str(collection), ANSIBLE_COLLECTIONS_PATH=str(tmp_path))
    assert code == 0, output
    with open(str(collection / "changelogs" / "changelog.yaml")) as changes:
        release = yaml.safe_load(changes)["releases"][version]["changes"]
    assert sum(len(items) for items in release.values()) == entries
    assert "## v%s" % version.replace(".", "\\.") in (collection / "CHANGELOG.md").read_text()
    assert list((collection / "changelogs" / "fragments").glob("*.yml")) == []


def test_every_default_the_role_pages_show_is_the_value_in_defaults_main_yml():
    role = os.path.join(ROOT, "roles", "online_upgrade")
    with open(os.path.join(role, "meta", "argument_specs.yml")) as specs_file:
        specs = yaml.safe_load(specs_file)["argument_specs"]
    with open(os.path.join(role, "defaults", "main.yml")) as defaults_file:
        defaults = yaml.safe_load(defaults_file)
    shown = {(entry, name): option["default"] for entry, spec in specs.items()
             for name, option in spec["options"].items() if "default" in option}
    assert {key: value for key, value in shown.items() if defaults.get(key[1], object()) != value} == {}
