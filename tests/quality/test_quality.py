"""The collection as Ansible sees it: lint, sanity, documentation, packaging."""
import glob
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))


def run(argv, **kwargs):
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    return subprocess.run(argv, cwd=kwargs.pop("cwd", ROOT), env=env, capture_output=True, text=True, **kwargs, check=False)


def test_ansible_lint_production_profile_reports_nothing():
    proc = run([os.path.join(BIN, "ansible-lint"), "--profile", "production", "--offline", "--nocolor"])
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]


def test_ansible_test_sanity_reports_nothing():
    proc = run(["bash", "scripts/sanity.sh"], timeout=1200)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("ERROR", "FATAL"))]
    assert proc.returncode == 0, "\n".join(errors) or proc.stdout[-5000:] + proc.stderr[-5000:]


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    proc = run([os.path.join(BIN, "ansible-doc"), "fleetdb.online_upgrade." + module])
    assert proc.returncode == 0 and "EXAMPLES" in proc.stdout and "RETURN VALUES" in proc.stdout, proc.stderr
    assert "[WARNING]" not in proc.stderr, proc.stderr


def test_collection_builds_installs_and_documents_its_modules(tmp_path):
    proc = run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    tarball = glob.glob(str(tmp_path / "fleetdb-online_upgrade-*.tar.gz"))[0]
    assert os.path.getsize(tarball) < 2 * 1024 * 1024, "build_ignore lets caches into the tarball"
    target = tmp_path / "collections"
    # Away from this checkout's ansible.cfg, which points at the working tree.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(target), ANSIBLE_CONFIG=str(tmp_path / "none.cfg"))
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "--force",
                           "-p", str(target), tarball], env=env, capture_output=True, text=True, cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([os.path.join(BIN, "ansible-doc"), "-t", "module", "-l", "fleetdb.online_upgrade"],
                          env=env, capture_output=True, text=True, cwd=str(tmp_path), check=False)
    listed = proc.stdout
    assert all("fleetdb.online_upgrade." + m in listed for m in MODULES), listed + proc.stderr


def test_collection_installs_from_git_as_readme_requirements_say(tmp_path):
    """README's requirements.yml of type git, with this checkout's URL and commit in place of GitHub's URL and a branch."""
    commit = run(["git", "rev-parse", "HEAD"]).stdout.strip()
    (tmp_path / "requirements.yml").write_text(
        "collections:\n  - name: file://%s\n    type: git\n    version: %s\n" % (ROOT, commit))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_CONFIG=str(tmp_path / "none.cfg"))
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "-r", "requirements.yml"],
                          env=env, capture_output=True, text=True, cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = tmp_path / "collections" / "ansible_collections" / "fleetdb" / "online_upgrade"
    assert (installed / "MANIFEST.json").exists() and (installed / "playbooks" / "upgrade.yml").exists()


def test_every_long_test_file_has_a_weight_and_every_scenario_a_test_file():
    """make test's workers take the files longest first (tests/conftest.py): a file without a weight would run last."""
    with open(os.path.join(ROOT, "tests", "durations.json"), encoding="utf-8") as weights:
        seconds = json.load(weights)
    files = sorted(os.path.relpath(path, ROOT) for folder in ("integration", "molecule")
                   for path in glob.glob(os.path.join(ROOT, "tests", folder, "test_*.py")))
    assert [name for name in files if name not in seconds] == [], "add them to tests/durations.json"
    assert [name for name in seconds if name not in files and not name.startswith(("tests/unit/", "tests/quality/"))] == []
    scenarios = sorted(os.path.basename(os.path.dirname(path)) for path in glob.glob(os.path.join(ROOT, "molecule", "*", "molecule.yml")))
    assert [name for name in scenarios if not os.path.exists(os.path.join(ROOT, "tests", "molecule", "test_scenario_%s.py" % name))] == []
