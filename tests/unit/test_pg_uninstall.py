"""Removing a release (install state=absent): what is a release to remove, what a package owns, check mode."""
import os
import stat
import sys

import pytest

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.install import PostgresInstaller
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.uninstall import (
    dpkg_owners, leftovers, names_major, release_dir_of, removal_command, rpm_owners, running_from)

DPKG_OUTPUT = """\
postgresql-client-15, postgresql-15: /usr/lib/postgresql/15
postgresql-15: /usr/lib/postgresql/15/bin/postgres
diversion by dash from: /bin/sh
postgresql-15-postgis-3:amd64: /usr/lib/postgresql/15/lib/postgis-3.so
"""

RPM_OUTPUT = """\
postgresql16-server
file /usr/pgsql-16/share/extra is not owned by any package
postgresql16
postgresql16-server
"""


def test_the_release_directory_is_the_parent_of_its_bin():
    assert release_dir_of("/usr/lib/postgresql/15/bin") == "/usr/lib/postgresql/15"
    assert release_dir_of("/opt/fleetdb/postgresql/16/bin/") == "/opt/fleetdb/postgresql/16"
    for bad in ("/usr/lib/postgresql/15", "bin", "relative/15/bin", "/bin", "", None):
        with pytest.raises(OperationError, match="not the bin directory of a release"):
            release_dir_of(bad)


@pytest.mark.parametrize("path, major, expected", [
    ("/usr/lib/postgresql/15", "15", True),
    ("/usr/pgsql-16", "16", True),
    ("/opt/postgresql-15.4", "15", True),
    ("/opt/pg9.6", "9.6", True),
    ("/usr/local", "15", False),
    ("/opt/postgresql-16.15", "15", False),
    ("/opt/fleetdb/postgresql/150", "15", False),
    ("/usr/lib/postgresql/18", "15", False),
])
def test_a_release_directory_says_its_major_version_in_its_name(path, major, expected):
    assert names_major(path, major) is expected


def test_package_owners_from_dpkg_and_rpm():
    assert dpkg_owners(DPKG_OUTPUT) == ["postgresql-15", "postgresql-15-postgis-3:amd64", "postgresql-client-15"]
    assert dpkg_owners("") == []
    assert rpm_owners(RPM_OUTPUT) == ["postgresql16", "postgresql16-server"]
    assert rpm_owners("file /opt/x is not owned by any package\n") == []
    assert removal_command("apt-get", ["postgresql-15", "postgresql-client-15"]) == \
        "apt-get remove postgresql-15 postgresql-client-15"
    assert removal_command("dnf", ["postgresql16-server"]) == "dnf remove postgresql16-server"
    assert removal_command("rpm", ["postgresql16-server"]) == "rpm -e postgresql16-server"


def test_processes_running_from_a_directory():
    assert running_from(os.path.dirname(os.path.realpath(sys.executable)))   # this very test, at least
    assert running_from("/nonexistent/release") == []


# -- fake releases on disk ----------------------------------------------------------------------

class FakeModule:
    """The parts of AnsibleModule the removal uses; package managers answer from ``owned``."""

    def __init__(self, check_mode=False, owned=None, tools=("dpkg-query",), broken=False):
        self.check_mode = check_mode
        self.owned = owned or {}          # path -> package
        self.tools = tools
        self.broken = broken              # the package database cannot be read
        self.warnings = []
        self.commands = []

    def get_bin_path(self, name, required=False):
        return "/usr/bin/" + name if name in self.tools else None

    def run_command(self, argv, environ_update=None, **_kwargs):
        self.commands.append(argv)
        if argv[0].endswith("/postgres"):
            with open(argv[0]) as script:
                return 0, script.read().split("echo ", 1)[1].strip().strip("'") + "\n", ""
        if argv[0].endswith("dpkg-query"):
            if self.broken:
                return 2, "", "dpkg-query: error: parsing file '/var/lib/dpkg/status' near line 7\n"
            lines = ["%s: %s" % (pkg, path) for path, pkg in sorted(self.owned.items())
                     if any(path == p or (p.endswith("/*") and path.startswith(p[:-1])) for p in argv[2:])]
            return (0 if lines else 1), "".join(line + "\n" for line in lines), ""
        if argv[0].endswith("/rpm"):
            out = ["%s" % self.owned[p] if p in self.owned else "file %s is not owned by any package" % p
                   for p in argv[4:]]
            if self.broken:
                return 1, "", "error: cannot open Packages database in /var/lib/rpm\n"
            return sum(p not in self.owned for p in argv[4:]), "\n".join(out) + "\n", ""   # as rpm does
        raise AssertionError("unexpected command %s" % argv)

    def warn(self, text):
        self.warnings.append(text)


def make_release(root, major="15", version="15.14"):
    release = os.path.join(str(root), major)
    os.makedirs(os.path.join(release, "bin"))
    os.makedirs(os.path.join(release, "lib"))
    postgres = os.path.join(release, "bin", "postgres")
    with open(postgres, "w") as script:
        script.write("#!/bin/sh\necho 'postgres (PostgreSQL) %s'\n" % version)
    os.chmod(postgres, stat.S_IRWXU)
    with open(os.path.join(release, "lib", "libpq.so.5"), "w") as lib:
        lib.write("x")
    return release


def remove(module, release, version="15"):
    return PostgresInstaller(module).remove(module, version, os.path.join(release, "bin"))


def test_a_release_no_package_owns_is_removed_once(tmp_path):
    release = make_release(tmp_path)
    module = FakeModule()
    result = remove(module, release)
    assert result["changed"] and result["removed"] and result["version"] == "15.14", result
    assert result["packages"] == [] and result["install_dir"] == release
    assert os.listdir(str(tmp_path)) == []             # nothing left beside it either
    again = remove(module, release)
    assert again["changed"] is False and again["removed"] is False and "nothing to remove" in again["msg"]


def test_check_mode_runs_every_check_and_removes_nothing(tmp_path):
    release = make_release(tmp_path)
    result = remove(FakeModule(check_mode=True), release)
    assert result["changed"] and result["removed"] and result["msg"].startswith("would remove PostgreSQL 15.14")
    assert os.path.isfile(os.path.join(release, "bin", "postgres"))
    with pytest.raises(OperationError, match="holds PostgreSQL 15.14, not 16"):
        remove(FakeModule(check_mode=True), release, version="16")


def test_files_a_package_owns_are_left_to_the_package_manager(tmp_path):
    release = make_release(tmp_path)
    module = FakeModule(owned={os.path.join(release, "lib", "libpq.so.5"): "postgresql-client-15",
                               os.path.join(release, "bin", "postgres"): "postgresql-15"})
    result = remove(module, release)
    assert result["changed"] is False and result["removed"] is False, result
    assert result["packages"] == ["postgresql-15", "postgresql-client-15"]
    assert result["package_remove_command"] == "apt-get remove postgresql-15 postgresql-client-15"
    assert "belongs to the packages postgresql-15, postgresql-client-15: nothing was removed" in module.warnings[0]
    assert os.path.isfile(os.path.join(release, "lib", "libpq.so.5"))


def test_rpm_is_asked_about_every_file(tmp_path):
    release = make_release(tmp_path, "16", "16.15")
    module = FakeModule(owned={os.path.join(release, "lib", "libpq.so.5"): "postgresql16-libs"},
                        tools=("rpm", "dnf"))
    result = remove(module, release, "16")
    assert result["packages"] == ["postgresql16-libs"] and result["package_remove_command"] == \
        "dnf remove postgresql16-libs"
    assert os.path.isdir(release)


def test_what_is_not_a_release_of_that_version_is_refused(tmp_path):
    empty = os.path.join(str(tmp_path), "15")
    os.makedirs(os.path.join(empty, "bin"))
    with pytest.raises(OperationError, match="holds no bin/postgres: it is not a PostgreSQL release directory"):
        remove(FakeModule(), empty)
    misnamed = make_release(tmp_path / "x", "local")
    with pytest.raises(OperationError, match="does not say PostgreSQL 15"):
        remove(FakeModule(), misnamed)
    link = os.path.join(str(tmp_path), "y", "15")
    os.makedirs(os.path.dirname(link))
    os.symlink(make_release(tmp_path / "z"), link)
    with pytest.raises(OperationError, match="is a symbolic link"):
        remove(FakeModule(), link)
    assert os.path.isdir(empty) and os.path.isdir(misnamed) and os.path.isdir(os.path.realpath(link))


def test_what_an_interrupted_removal_left_goes_on_the_next_run(tmp_path):
    release = make_release(tmp_path)
    os.makedirs(os.path.join(str(tmp_path), ".15.removing-abc", "15", "lib"))
    assert leftovers(release) == [os.path.join(str(tmp_path), ".15.removing-abc")]
    result = remove(FakeModule(), release)
    assert result["removed"] and os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize("tools", [("dpkg-query",), ("rpm",)])
def test_nothing_is_removed_when_the_package_manager_cannot_answer(tmp_path, tools):
    release = make_release(tmp_path)
    with pytest.raises(OperationError, match="cannot say which package owns the files .* nothing was removed"):
        remove(FakeModule(tools=tools, broken=True), release)
    assert os.path.isfile(os.path.join(release, "bin", "postgres"))


def test_a_release_rpm_knows_nothing_of_is_removed(tmp_path):
    release = make_release(tmp_path)
    module = FakeModule(tools=("rpm",))
    assert remove(module, release)["removed"] and not os.path.exists(release)
    assert [argv[:4] for argv in module.commands if argv[0].endswith("/rpm")] == [
        ["/usr/bin/rpm", "-qf", "--queryformat", "%{NAME}\\n"]]
