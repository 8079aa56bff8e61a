"""The engine reaches every module: the option comes from the registry, the role passes online_upgrade_engine.

meta/runtime.yml's action group lists every module; the role's main.yml (and the playbooks of the other entry
points) give the group ``engine: "{{ online_upgrade_engine }}"`` through module_defaults, once. Ansible hands
module_defaults of a block down to imported and included task files: the play at the end runs that very
module_defaults over both and shows the value arrives (an engine no registry knows is refused by the module).
"""
import glob
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))
GROUP = "group/fleetdb.online_upgrade.all"
PASSED = {GROUP: {"engine": "{{ online_upgrade_engine }}"}}


def load(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return yaml.safe_load(f)


def test_every_module_is_in_the_action_group_and_takes_the_registry_engine_option():
    assert sorted(load("meta", "runtime.yml")["action_groups"]["all"]) == MODULES
    for name in MODULES:
        with open(os.path.join(ROOT, "plugins", "modules", name + ".py")) as f:
            source = f.read()
        assert "engine=engine_option()" in source, "%s: the engine option comes from engines.engine_option()" % name


def test_no_list_of_engines_is_written_in_code():
    """(The documentation lists them: validate-modules keeps it equal to the registry's.)"""
    for path in glob.glob(os.path.join(ROOT, "plugins", "mod*", "**", "*.py"), recursive=True) + \
            glob.glob(os.path.join(ROOT, "roles", "**", "*.yml"), recursive=True):
        with open(path) as f:
            assert not re.search(r"choices=\[\"postgresql\"\]|choices: \[postgresql\]", f.read()), path


def test_the_role_passes_the_engine_once_to_every_task_of_every_entry_point():
    main = load("roles", "online_upgrade", "tasks", "main.yml")
    assert len(main) == 1 and main[0]["module_defaults"] == PASSED, "main.yml: one block with the module_defaults"
    entries = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(ROOT, "playbooks", "*.yml")))
    assert "abandon" in entries and "upgrade" in entries, entries
    for entry in (e for e in entries if e != "upgrade"):   # upgrade.yml enters the role through main.yml
        # the role's entry point is the last play (rollback.yml reads the standby hosts' instances in one before)
        plays = load("playbooks", entry + ".yml")
        play = plays[-1]
        task, = play["tasks"]
        assert task["ansible.builtin.include_role"]["tasks_from"] == entry
        for each in plays:
            assert each["module_defaults"] == PASSED, "playbooks/%s.yml" % entry
    for path in glob.glob(os.path.join(ROOT, "roles", "online_upgrade", "tasks", "*.yml")):
        with open(path) as f:
            found = len(re.findall(r"^\s+engine:", f.read(), re.M))
        assert found == (1 if path.endswith("/main.yml") else 0), "%s sets engine itself" % path


def run_play(tmp_path, engine):
    """The role's module_defaults over an imported file and a file included from an included one."""
    module = [{"name": "Ask who holds port 1", "fleetdb.online_upgrade.port": {"port": 1, "state": "query"},
               "ignore_errors": True}]
    (tmp_path / "module.yml").write_text(yaml.safe_dump(module))
    (tmp_path / "included.yml").write_text(yaml.safe_dump([{"name": "Deeper", "ansible.builtin.include_tasks": "module.yml"}]))
    block = dict(load("roles", "online_upgrade", "tasks", "main.yml")[0])
    block["block"] = [{"name": "Imported", "ansible.builtin.import_tasks": "module.yml"},
                      {"name": "Included", "ansible.builtin.include_tasks": "included.yml"}]
    play = [{"name": "Probe", "hosts": "localhost", "gather_facts": False,
             "vars": {"online_upgrade_engine": engine, "ansible_python_interpreter": sys.executable},
             "tasks": [block]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    return subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", "-v",
                           str(tmp_path / "play.yml")], cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def test_module_defaults_reach_imported_and_included_files(tmp_path):
    proc = run_play(tmp_path, "postgresql")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and out.count("TASK [Ask who holds port 1]") == 2 and "...ignoring" not in out, out
    proc = run_play(tmp_path, "no-such-engine")
    out = proc.stdout + proc.stderr
    assert out.count("msg: 'value of engine must be one of: postgresql, got: no-such-engine'") == 2, out


def test_module_defaults_of_a_play_reach_an_included_role_with_the_role_default(tmp_path):
    """As playbooks/rollback.yml passes them: the value is the role's own default, templated inside the role."""
    role = tmp_path / "roles" / "probe"
    (role / "defaults").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "defaults" / "main.yml").write_text(yaml.safe_dump({"online_upgrade_engine": "no-such-engine"}))
    (role / "tasks" / "rollback.yml").write_text(yaml.safe_dump(
        [{"name": "Ask who holds port 1", "fleetdb.online_upgrade.port": {"port": 1, "state": "query"}}]))
    play = load("playbooks", "rollback.yml")[-1]   # the role's entry point rollback (a play before it: standby hosts)
    task, = play["tasks"]
    task["ansible.builtin.include_role"]["name"] = "probe"
    play.update(hosts="localhost", vars={"ansible_python_interpreter": sys.executable})
    play.pop("serial")
    (tmp_path / "play.yml").write_text(yaml.safe_dump([play]))
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_ROLES_PATH=str(tmp_path / "roles"))
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(tmp_path / "play.yml")], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "msg: 'value of engine must be one of: postgresql, got: no-such-engine'" in out, out
