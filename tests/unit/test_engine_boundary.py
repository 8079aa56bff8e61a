"""A second engine needs nothing but the interfaces of core/engine.py and a line in the registry.

The memory engine keeps its servers in a dict: no PostgreSQL, no process, no file.  Registered for the test,
it drives the modules server, port and info through their main(), as Ansible runs them.
"""
import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils import engines
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core import engine as interface
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import DatabaseError
from ansible_collections.fleetdb.online_upgrade.plugins.modules import info, port, server

RELEASE = dict(version="18.1", major="18", bin_dir="/mem/18/bin")


class MemoryInstaller(interface.Installer):
    def probe(self, bin_dir):
        return dict(RELEASE) if bin_dir == RELEASE["bin_dir"] else None

    def install_archive(self, module, archive, checksum, prefix, version):
        return dict(RELEASE, changed=False)

    def install_package(self, module, version, update_cache=False):
        return dict(RELEASE, changed=False)

    def release_bin_dir(self, method, version, prefix=None):
        return RELEASE["bin_dir"]

    def check_provides(self, bin_dir, major, required):
        return None

    def remove(self, module, version, bin_dir):
        return dict(changed=False, removed=False, install_dir=bin_dir)


class MemoryInstance(interface.Instance):
    """A server is a dict in MemoryEngine.servers, keyed by its data directory."""

    def __init__(self, module, spec, servers):
        super(MemoryInstance, self).__init__(module, spec)
        self.server = servers.setdefault(spec.data_dir, dict(port=spec.port, pid=None, settings={}))

    def binaries_version(self):
        return RELEASE["version"]

    def binaries_major(self):
        return RELEASE["major"]

    def status(self):
        running = self.postmaster()
        return dict(data_dir=self.spec.data_dir, major=RELEASE["major"], running=running is not None,
                    pid=running and running["pid"], port=running and running["port"], accepting=running is not None,
                    version=RELEASE["version"], configured_port=self.server["port"])

    def postmaster(self):
        return dict(pid=self.server["pid"], port=self.server["running_port"]) if self.server["pid"] else None

    def configured_port(self):
        return self.server["port"]

    def port_user(self, port):
        running = self.postmaster()
        return dict(pid=running["pid"], command="memory", cmdline="memory", user="memory",
                    this_instance=True) if running and running["port"] == port else None

    def create(self, data_checksums=None, locale=None):
        return dict(created=False, data_checksums=data_checksums)

    def remove(self):
        return dict(changed=False)

    def ensure_socket_dir(self):
        return False

    def desired_settings(self, settings, inherited=None):
        return dict(settings)

    def read_hba(self):
        return ""

    def read_ident(self):
        return ""

    def carry_ssl_files(self, old, settings):
        return settings, []

    def configure(self, settings, inherited=None, hba_content=None, ident_content=None):
        changed = self.server["settings"] != settings
        self.server["settings"] = dict(settings)
        return dict(changed=changed, diff={}, port=self.server["port"], settings=settings, changed_settings=[],
                    skipped_settings=[], restart_required=False, pending_restart=[], reloaded=False)

    def set_port(self, port):
        previous, self.server["port"] = self.server["port"], port
        running = self.postmaster()
        return dict(changed=previous != port, diff=dict(before=previous, after=port), configured_port=port,
                    previous_port=previous, restart_required=bool(running) and running["port"] != port)

    def alter_system(self, settings, at_least=False, record=None):
        return dict(changed=False, statements=[], diff={}, pending_restart=[])

    def give_back_settings(self, record):
        return dict(changed=False, statements=[], diff={}, pending_restart=[])

    def databases(self):
        return ["app"]

    def start(self, port=None, timeout=60):
        if self.server["pid"]:
            return dict(changed=False)
        self.server.update(pid=4242, running_port=port or self.server["port"])
        return dict(changed=True, msg="started")

    def stop(self, mode="fast", timeout=60):
        changed, self.server["pid"] = self.server["pid"] is not None, None
        return dict(changed=changed)

    def restart(self, port=None, mode="fast", timeout=60):
        self.stop(mode, timeout)
        return dict(self.start(port, timeout), restarted=True)

    def reload(self):
        return self.server["pid"] is not None


class MemoryEngine(interface.Engine):
    name = "memory"
    servers = {}

    def installer(self, module):
        return MemoryInstaller()

    def instance(self, module, spec):
        return MemoryInstance(module, spec, self.servers)

    def inventory(self, module, spec):
        facts = dict(self.instance(module, spec).status(), bin_dir=spec.bin_dir)
        if spec.data_dir == "/mem/broken":
            raise DatabaseError("the memory server refused the session")
        return facts

    def migrator(self, module, spec, tool_bin_dir=None):
        raise NotImplementedError("the memory engine keeps no files to migrate")

    def replication(self, module, source, target, dbname, **options):
        raise NotImplementedError("the memory engine has one copy only")

    def max_rate_problem(self, rate):
        return None

    def physical_copy(self, module, old, new, databases, **options):
        raise NotImplementedError("the memory engine has no files to copy")

    def preflight(self, module, old, **options):
        raise NotImplementedError("the memory engine has nothing to check")

    def standby(self, module, new, **options):
        raise NotImplementedError("the memory engine has no standbys")

    def standby_switch(self, module, old, new, **options):
        raise NotImplementedError("the memory engine has no standbys")

    def switchover(self, module, old, new, databases, **options):
        raise NotImplementedError("the memory engine has one server only")

    def pooler(self, params):
        return None

    def discover(self, module, port, **options):
        return dict(port=port, major=RELEASE["major"], data_dir="/mem/main", bin_dir=RELEASE["bin_dir"])

    def plan_new(self, old, new_major, prefix=None):
        return dict(old, major=new_major)

    def progress(self, module, state_dir):
        raise NotImplementedError("the memory engine keeps no upgrade records")

    def new_instance_settings(self):
        return {}


@pytest.fixture
def memory(monkeypatch):
    monkeypatch.setitem(engines.ENGINES, MemoryEngine.name, MemoryEngine)
    monkeypatch.setattr(MemoryEngine, "servers", {})
    return MemoryEngine.servers


def run(module, capsys, **args):
    """Run ``module``'s main() with ``args`` as Ansible would; its result and whether it failed."""
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        module.main()
    return json.loads(capsys.readouterr().out), exited.value.code != 0


def test_the_engine_option_offers_the_registered_engines(memory):
    assert engines.engine_option()["choices"] == ["memory", "postgresql"]
    assert engines.engine_option()["default"] == "postgresql"


def test_server_starts_reports_and_stops_a_memory_server(memory, capsys):
    where = dict(engine="memory", data_dir="/mem/main", bin_dir=RELEASE["bin_dir"], port=6000)
    result, failed = run(server, capsys, state="started", **where)
    assert not failed and result["changed"] and result["running"] and result["port"] == 6000, result
    result, failed = run(server, capsys, state="status", **where)
    assert not failed and not result["changed"] and result["pid"] == 4242, result
    result, failed = run(server, capsys, state="stopped", **where)
    assert not failed and result["changed"] and not result["running"], result
    assert memory["/mem/main"]["pid"] is None


def test_port_moves_a_memory_server_and_says_it_needs_a_restart(memory, capsys):
    where = dict(engine="memory", data_dir="/mem/main", bin_dir=RELEASE["bin_dir"])
    run(server, capsys, state="started", port=6000, **where)
    result, failed = run(port, capsys, port=6001, **where)
    assert not failed and result["changed"] and result["previous_port"] == 6000, result
    assert result["configured_port"] == 6001 and result["running_port"] == 6000 and result["restart_required"]
    result, failed = run(port, capsys, port=6000, state="query", **where)
    assert result["holder"]["this_instance"] and result["configured_port"] == 6001, result


def test_info_lists_releases_and_instances_and_a_database_error_as_the_instance_s_error(memory, capsys):
    result, failed = run(info, capsys, engine="memory", bin_dirs=[RELEASE["bin_dir"], "/mem/none"], scan_prefixes=[],
                         instances=[dict(data_dir="/mem/main", bin_dir=RELEASE["bin_dir"]),
                                    dict(data_dir="/mem/broken", bin_dir=RELEASE["bin_dir"])])
    assert not failed and result["installed"] == [RELEASE], result
    main, broken = result["instances"]
    assert main["data_dir"] == "/mem/main" and main["major"] == "18" and not main["running"], main
    assert broken == dict(data_dir="/mem/broken", error="the memory server refused the session"), broken


def test_an_engine_the_registry_does_not_know_is_refused(capsys):
    result, failed = run(server, capsys, engine="memory", state="status", data_dir="/mem/main", bin_dir="/mem/18/bin")
    assert failed and "value of engine must be one of: postgresql, got: memory" in result["msg"], result
