"""install, instance, port and server against real PostgreSQL 15 (package) and 16 (archive) in one test host.

The tests share one container: the releases are installed once, and the tests that
break something (a library, a port) put it back.  Every failure case asserts that
the host was left as it was.
"""
import hashlib

import pytest

ARCHIVE = "/var/cache/fleetdb/postgresql-16.tar.gz"
PREFIX = "/opt/fleetdb/postgresql"
SOCKET_DIR = "/var/run/postgresql"
PG16 = dict(data_dir="/var/lib/fleetdb/postgresql/16/main", bin_dir=PREFIX + "/16/bin")
PG15 = dict(data_dir="/var/lib/fleetdb/postgresql/15/main", bin_dir="/usr/lib/postgresql/15/bin")
LIBZSTD = "/usr/lib/x86_64-linux-gnu/libzstd.so.1"


# -- fixtures and helpers ------------------------------------------------------------------

@pytest.fixture(scope="module")
def checksum(pg_dists):
    with open(pg_dists["16"], "rb") as handle:
        return "sha256:" + hashlib.sha256(handle.read()).hexdigest()


@pytest.fixture(scope="module")
def host(pghost, pg_dists):
    """The test host with the PostgreSQL 16 binary distribution copied to it."""
    sh(pghost, "mkdir -p /var/cache/fleetdb")
    pghost.copy_in(pg_dists["16"], ARCHIVE)
    return pghost


@pytest.fixture(scope="module")
def module(host, run_module):
    """module(name, check=False, diff=False, **args) -> the module's result on the test host."""
    def call(name, check=False, diff=False, **args):
        return run_module(host, "fleetdb.online_upgrade." + name, args, check=check, diff=diff)
    return call


@pytest.fixture(scope="module")
def releases(host, module, checksum):
    """PostgreSQL 15 from the package (which also creates the postgres user) and 16 from the archive."""
    pg15 = module("install", version="15", method="package")
    pg16 = module("install", version="16", archive=ARCHIVE, checksum=checksum)
    assert not pg15.get("failed") and not pg16.get("failed"), (pg15, pg16)
    return dict(pg15=pg15, pg16=pg16)


@pytest.fixture(scope="module")
def instances(releases, module):
    """Instance 16 configured for 5432 and instance 15 for 5433, both stopped."""
    for spec, port in ((PG16, 5432), (PG15, 5433)):
        result = module("instance", port=port, settings=dict(wal_level="logical"), **spec)
        assert not result.get("failed"), result
    return dict(pg16=PG16, pg15=PG15)


def sh(host, cmd):
    """Run a shell command on the test host; its stdout."""
    proc = host.run(cmd)
    assert proc.returncode == 0, "%s: %s" % (cmd, proc.stderr)
    return proc.stdout


def wait_listening(host, port):
    sh(host, "for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/%d) 2>/dev/null && break; sleep 0.1; done" % port)


def exists(host, path):
    return host.run("test -e %s" % path).returncode == 0


def snapshot(host, *paths):
    """Names, sizes and modification times of everything under ``paths``: equal snapshots, untouched host."""
    return sh(host, "find %s -printf '%%p %%s %%T@\\n' 2>/dev/null | sort; true" % " ".join(paths))


def failed_with(result, *phrases):
    assert result.get("failed"), result
    for phrase in phrases:
        assert phrase in result["msg"], result["msg"]
    assert "Fix:" in result["msg"]


def server(module, spec, state, **args):
    result = module("server", state=state, **dict(spec, **args))
    assert not result.get("failed"), result
    return result


def psql(host, spec, port, sql):
    return sh(host, "runuser -u postgres -- %s/psql -h %s -p %d -d postgres -Atc \"%s\""
              % (spec["bin_dir"], SOCKET_DIR, port, sql)).strip()


def stop_all(module):
    for spec in (PG16, PG15):
        server(module, spec, "stopped")


# -- install ----------------------------------------------------------------------------------

def test_install_archive_in_check_mode_writes_nothing(host, module, checksum):
    result = module("install", check=True, version="16", archive=ARCHIVE, checksum=checksum,
                    prefix="/opt/check-mode")
    assert result["changed"] and result["bin_dir"] == "/opt/check-mode/16/bin"
    assert not exists(host, "/opt/check-mode")


def test_install_archive_unpacks_into_its_own_directory_once(host, module, checksum):
    first = module("install", version="16", archive=ARCHIVE, checksum=checksum)
    assert not first.get("failed"), first
    assert first["bin_dir"] == PREFIX + "/16/bin" and first["major"] == "16" and first["method"] == "archive"
    assert first["version"].startswith("16.")
    assert sh(host, "ls %s" % PREFIX).split() == ["16"]          # no temporary directory left
    assert first["version"] in sh(host, PREFIX + "/16/bin/postgres --version")
    again = module("install", version="16", archive=ARCHIVE, checksum=checksum)
    assert again["changed"] is False and again["version"] == first["version"]


def test_install_package_beside_the_archive(host, module, releases):
    assert releases["pg15"]["bin_dir"] == PG15["bin_dir"] and releases["pg15"]["major"] == "15"
    again = module("install", version="15", method="package")
    assert again["changed"] is False and again["version"].startswith("15.")
    assert "16." in sh(host, PG16["bin_dir"] + "/postgres --version")
    assert not exists(host, "/etc/postgresql/15/main")   # no cluster of the package's own


def test_install_package_drops_the_cluster_the_package_made(host, module, releases):
    """Debian's postinst creates and starts an N/main cluster on the next free port when create_main_cluster is
    true (its default on real hosts): the install leaves no such stray cluster behind."""
    assert releases["pg15"]["major"] == "15"
    sh(host, "DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq postgresql-15 >/dev/null 2>&1; "
             "sed -i 's/^create_main_cluster.*/create_main_cluster = true/' /etc/postgresql-common/createcluster.conf")
    try:
        installed = module("install", version="15", method="package")
        assert installed["changed"] and not installed.get("failed"), installed
        assert installed["dropped_cluster"] == "15/main", installed
        assert not exists(host, "/etc/postgresql/15/main") and not exists(host, "/var/lib/postgresql/15/main")
        assert host.run("pgrep -f 'postgresql/15/main'").returncode != 0, "the package's cluster still runs"
    finally:
        sh(host, "sed -i 's/^create_main_cluster.*/create_main_cluster = false/' "
                 "/etc/postgresql-common/createcluster.conf")
    assert "15." in sh(host, PG15["bin_dir"] + "/postgres --version")


def test_install_of_a_missing_archive_says_to_copy_it(host, module):
    result = module("install", version="16", archive="/var/cache/fleetdb/nope.tar.gz", prefix="/opt/missing")
    failed_with(result, "/var/cache/fleetdb/nope.tar.gz does not exist on the host", "copy it")
    assert not exists(host, "/opt/missing")


def test_install_with_a_wrong_checksum_writes_nothing(host, module, checksum):
    result = module("install", version="16", archive=ARCHIVE, checksum="sha256:" + "0" * 64,
                    prefix="/opt/bad-sum")
    failed_with(result, "sha256 checksum of %s is %s" % (ARCHIVE, checksum.split(":")[1]),
                "nothing was unpacked")
    assert not exists(host, "/opt/bad-sum")


def test_install_names_a_missing_shared_library_and_its_package(host, module, checksum):
    sh(host, "mv %s %s.away" % (LIBZSTD, LIBZSTD))
    try:
        result = module("install", version="16", archive=ARCHIVE, checksum=checksum, prefix="/opt/no-zstd")
    finally:
        sh(host, "mv %s.away %s" % (LIBZSTD, LIBZSTD))
    failed_with(result, "libzstd.so.1 (Debian package libzstd1)", "apt-get install libzstd1")
    assert result["missing_libraries"] == ["libzstd.so.1"]
    assert not exists(host, "/opt/no-zstd")


# -- install state=absent ---------------------------------------------------------------------------

def test_remove_an_archive_release_in_check_mode_then_once(host, module, checksum):
    prefix = "/opt/remove-me"
    installed = module("install", version="16", archive=ARCHIVE, checksum=checksum, prefix=prefix)
    assert installed["changed"] and not installed.get("failed"), installed
    before = snapshot(host, prefix)
    checked = module("install", check=True, diff=True, state="absent", version="16", bin_dir=prefix + "/16/bin")
    assert checked["changed"] and checked["removed"] and checked["packages"] == [], checked
    assert checked["msg"] == "would remove PostgreSQL %s: %s/16" % (installed["version"], prefix)
    assert checked["diff"]["after"] == dict(path=prefix + "/16", state="absent")
    assert snapshot(host, prefix) == before
    removed = module("install", state="absent", version="16", prefix=prefix)     # bin_dir from method and prefix
    assert removed["changed"] and removed["removed"] and removed["install_dir"] == prefix + "/16", removed
    assert sh(host, "ls -A %s" % prefix) == ""                                  # nothing set aside is left
    again = module("install", state="absent", version="16", bin_dir=prefix + "/16/bin")
    assert again["changed"] is False and again["removed"] is False and "nothing to remove" in again["msg"]


def test_remove_leaves_a_package_owned_release_to_apt(host, module, releases):
    before = snapshot(host, "/usr/lib/postgresql/15")
    # also through /lib, the merged-/usr link: dpkg knows the files by their /usr path
    for bin_dir in ("/usr/lib/postgresql/15/bin", "/lib/postgresql/15/bin"):
        for check in (True, False):
            result = module("install", check=check, state="absent", version="15", bin_dir=bin_dir)
            assert not result.get("failed") and result["changed"] is False and result["removed"] is False, result
            assert "postgresql-15" in result["packages"], result
            assert result["package_remove_command"].startswith("apt-get remove postgresql-15"), result
            assert "belongs to the packages postgresql-15, postgresql-client-15: nothing was removed" in \
                result["warnings"][0]
    by_method = module("install", state="absent", version="15", method="package")
    assert by_method["install_dir"] == "/usr/lib/postgresql/15" and by_method["removed"] is False, by_method
    assert snapshot(host, "/usr/lib/postgresql/15") == before
    assert host.run("dpkg-query -W -f '${Status}' postgresql-15").stdout == "install ok installed"


def test_remove_refuses_what_is_not_a_release_of_that_version(host, module, releases):
    sh(host, "mkdir -p /opt/not-pg/15/bin && touch /opt/not-pg/15/bin/psql")
    before = snapshot(host, "/opt/not-pg", PREFIX)
    not_release = module("install", state="absent", version="15", bin_dir="/opt/not-pg/15/bin")
    failed_with(not_release, "/opt/not-pg/15 holds no bin/postgres: it is not a PostgreSQL release directory",
                "nothing was removed")
    other_major = module("install", state="absent", version="15", bin_dir=PG16["bin_dir"])
    failed_with(other_major, "%s/16 holds PostgreSQL 16." % PREFIX, "not 15: nothing was removed",
                "the new release is never removed")
    assert snapshot(host, "/opt/not-pg", PREFIX) == before


# -- instance -----------------------------------------------------------------------------------

def test_instance_in_check_mode_creates_nothing(host, module, releases):
    data_dir = "/var/lib/fleetdb/postgresql/16/check"
    result = module("instance", check=True, data_dir=data_dir, bin_dir=PG16["bin_dir"], port=5499,
                    settings=dict(wal_level="logical"))
    assert result["changed"] and result["created"] and result["port"] == 5499
    assert not exists(host, data_dir)


def test_instance_is_created_configured_and_idempotent(host, module, releases):
    data_dir = "/var/lib/fleetdb/postgresql/16/extra"
    args = dict(data_dir=data_dir, bin_dir=PG16["bin_dir"], port=5440, data_checksums=True,
                settings=dict(wal_level="logical", max_replication_slots=12, listen_addresses="*"))
    first = module("instance", diff=True, **args)
    assert first["changed"] and first["created"] and first["data_checksums"] is True, first
    assert first["restart_required"] is True     # wal_level and the port take effect at the start
    conf = sh(host, "cat %s/fleetdb.conf" % data_dir)
    assert "port = 5440\n" in conf and "wal_level = 'logical'\n" in conf and "max_replication_slots = 12\n" in conf
    assert sh(host, "grep -c \"^include_if_exists = 'fleetdb.conf'\" %s/postgresql.conf" % data_dir).strip() == "1"
    assert sh(host, "stat -c '%%U %%a' %s" % data_dir).strip() == "postgres 700"
    assert sh(host, "stat -c '%%U %%a' %s" % SOCKET_DIR).strip() == "postgres 2775"
    assert any(d["after_header"].endswith("fleetdb.conf") for d in first["diff"])
    again = module("instance", **args)
    assert again["changed"] is False and again["created"] is False, again
    mismatch = module("instance", **dict(args, data_checksums=False))
    failed_with(mismatch, "has data checksums on, data_checksums=false was asked", "pg_checksums --disable")


def test_instance_never_touches_a_data_directory_of_another_major_version(host, module, instances):
    before = snapshot(host, PG16["data_dir"])
    result = module("instance", data_dir=PG16["data_dir"], bin_dir=PG15["bin_dir"], port=5432,
                    settings=dict(work_mem="8MB"))
    failed_with(result, "is a data directory of PostgreSQL 16", "bin_dir holds PostgreSQL 15")
    assert snapshot(host, PG16["data_dir"]) == before


def test_instance_refuses_an_unknown_setting_and_a_bad_value(host, module, instances):
    before = snapshot(host, PG15["data_dir"])
    unknown = module("instance", port=5433, settings=dict(wal_levle="logical"), **PG15)
    failed_with(unknown, "has no setting named wal_levle")
    bad = module("instance", port=5433, settings=dict(wal_level="logicall"), **PG15)
    failed_with(bad, 'invalid value for parameter "wal_level"', "nothing was written")
    assert snapshot(host, PG15["data_dir"]) == before


def test_instance_refuses_preload_libraries_the_release_lacks_before_creating_anything(host, module, releases):
    data_dir = "/var/lib/fleetdb/postgresql/16/preload"
    result = module("instance", data_dir=data_dir, bin_dir=PG16["bin_dir"], port=5498,
                    inherited_settings=dict(shared_preload_libraries="pg_stat_statements, timescaledb"))
    failed_with(result, "shared_preload_libraries names libraries that PostgreSQL 16", "lacks: timescaledb",
                "nothing was changed")
    assert result["missing_libraries"] == ["timescaledb"]
    assert not exists(host, data_dir)


# -- port ---------------------------------------------------------------------------------------------

def test_port_changes_the_configured_port_only(host, module, instances):
    conf = PG15["data_dir"] + "/fleetdb.conf"
    checked = module("port", check=True, port=5434, **PG15)
    assert checked["changed"] and checked["configured_port"] == 5434 and checked["previous_port"] == 5433
    assert "port = 5433" in sh(host, "cat " + conf)
    moved = module("port", diff=True, port=5434, **PG15)
    assert moved["changed"] and moved["previous_port"] == 5433 and moved["restart_required"] is False
    assert "port = 5434" in sh(host, "cat " + conf) and "wal_level = 'logical'" in sh(host, "cat " + conf)
    assert module("port", port=5434, **PG15)["changed"] is False
    back = module("port", port=5433, **PG15)
    assert back["changed"] and back["configured_port"] == 5433
    assert not exists(host, PG15["data_dir"] + "/postmaster.pid")     # not started


def test_port_refuses_a_port_held_by_another_process(host, module, instances):
    pid = sh(host, "nohup python3 -m http.server 5435 >/dev/null 2>&1 & echo $!").strip()
    try:
        wait_listening(host, 5435)
        query = module("port", state="query", port=5435)
        assert query["in_use"] and query["holder"]["pid"] == int(pid), query
        assert "http.server" in query["holder"]["cmdline"]
        before = snapshot(host, PG15["data_dir"])
        refused = module("port", port=5435, **PG15)
        failed_with(refused, "port 5435 is held by pid %s" % pid, "http.server", "force=true")
        assert snapshot(host, PG15["data_dir"]) == before
        forced = module("port", port=5435, force=True, **PG15)
        assert forced["changed"] and forced["holder"]["pid"] == int(pid)
    finally:
        sh(host, "kill %s" % pid)
        module("port", port=5433, **PG15)


# -- server ------------------------------------------------------------------------------------------

def test_server_starts_on_a_temporary_port_keeping_the_configured_one(host, module, instances):
    try:
        checked = module("server", check=True, state="started", port=15432, **PG16)
        assert checked["changed"] and checked["running"] is False
        started = server(module, PG16, "started", port=15432)
        assert started["changed"] and started["running"] and started["accepting"], started
        assert started["port"] == 15432 and started["configured_port"] == 5432
        assert started["version"].startswith("16.")
        assert psql(host, PG16, 15432, "SHOW port") == "15432"
        assert "port = 5432" in sh(host, "cat %s/fleetdb.conf" % PG16["data_dir"])
        again = server(module, PG16, "started", port=15432)
        assert again["changed"] is False and again["pid"] == started["pid"]
        # Without a port the configured one is wanted: the server moves there.
        moved = server(module, PG16, "started")
        assert moved["changed"] and moved["restarted"] and moved["port"] == 5432 and moved["accepting"]
        assert psql(host, PG16, 5432, "SELECT current_setting('server_version_num')::int / 10000") == "16"
    finally:
        stop_all(module)


def test_server_refuses_to_start_on_a_port_held_by_another_process(host, module, instances):
    pid = sh(host, "nohup python3 -m http.server 5433 >/dev/null 2>&1 & echo $!").strip()
    try:
        wait_listening(host, 5433)
        result = module("server", state="started", **PG15)
        failed_with(result, "port 5433 is held by pid %s" % pid, "http.server", "nothing was changed")
        assert result["holder"]["pid"] == int(pid)
        assert not exists(host, PG15["data_dir"] + "/postmaster.pid")
    finally:
        sh(host, "kill %s" % pid)


def test_remove_refuses_the_release_a_server_runs(host, module, instances):
    """In check mode, which runs every check: a miss cannot take away the release the other tests use."""
    try:
        started = server(module, PG16, "started")
        result = module("install", check=True, state="absent", version="16", bin_dir=PG16["bin_dir"])
        failed_with(result, "in %s/16 is in use by pid %d" % (PREFIX, started["pid"]), "nothing was removed",
                    "stop the servers of PostgreSQL 16 first")
        assert started["pid"] in [p["pid"] for p in result["processes"]]
    finally:
        stop_all(module)


def test_server_stop_restart_reload_and_status(host, module, instances):
    try:
        started = server(module, PG15, "started")
        assert started["port"] == 5433 and started["version"].startswith("15."), started
        status = server(module, PG15, "status")
        assert status["changed"] is False and status["running"] and status["accepting"]
        assert status["pid"] == started["pid"] and status["major"] == "15"
        assert sh(host, "ps -o user= -p %d" % status["pid"]).strip() == "postgres"
        assert server(module, PG15, "reloaded")["changed"]
        restarted = server(module, PG15, "restarted", mode="fast")
        assert restarted["changed"] and restarted["pid"] != started["pid"] and restarted["accepting"]
        checked = module("server", check=True, state="stopped", **PG15)
        assert checked["changed"] and checked["running"]       # still running: check mode
        stopped = server(module, PG15, "stopped", mode="smart")
        assert stopped["changed"] and stopped["running"] is False and stopped["pid"] is None
        assert server(module, PG15, "stopped")["changed"] is False
        idle = server(module, PG15, "reloaded")
        assert idle["changed"] is False and idle["warnings"]
    finally:
        stop_all(module)


def test_instance_settings_reach_a_running_server(host, module, instances):
    try:
        server(module, PG16, "started")
        reloadable = module("instance", port=5432, settings=dict(wal_level="logical", work_mem="8MB"), **PG16)
        assert reloadable["changed"] and reloadable["reloaded"] and reloadable["restart_required"] is False
        assert psql(host, PG16, 5432, "SHOW work_mem") == "8MB"
        needs_restart = module("instance", port=5432, settings=dict(wal_level="logical", work_mem="8MB",
                                                                    max_connections=50), **PG16)
        assert needs_restart["restart_required"] and needs_restart["pending_restart"] == ["max_connections"]
        server(module, PG16, "restarted")
        assert psql(host, PG16, 5432, "SHOW max_connections") == "50"
        settled = module("instance", port=5432, settings=dict(wal_level="logical", work_mem="8MB",
                                                              max_connections=50), **PG16)
        assert settled["changed"] is False and settled["restart_required"] is False
    finally:
        stop_all(module)


def test_instance_replaces_pg_hba_conf_only_with_rules_that_load(host, module, instances):
    hba = PG16["data_dir"] + "/pg_hba.conf"
    rules = ("local all postgres peer\n"
             "local all all scram-sha-256\n"
             "host all all 127.0.0.1/32 scram-sha-256\n")
    try:
        server(module, PG16, "started")
        applied = module("instance", port=5432, settings=dict(wal_level="logical"), hba_content=rules, **PG16)
        assert applied["changed"] and applied["reloaded"], applied
        assert sh(host, "cat " + hba) == rules
        assert psql(host, PG16, 5432, "SELECT count(*) FROM pg_hba_file_rules") == "3"
        broken = module("instance", port=5432, settings=dict(wal_level="logical"), **dict(
            PG16, hba_content=rules + "host all all 127.0.0.1/32 no-such-method\n"))
        failed_with(broken, "the new pg_hba.conf has errors, the old one was put back", "line 4")
        assert sh(host, "cat " + hba) == rules
    finally:
        stop_all(module)


def test_no_server_ever_runs_as_root(host, module, instances):
    try:
        server(module, PG16, "started")
        server(module, PG15, "started")
        assert sh(host, "ps -C postgres -o user= | sort -u").split() == ["postgres"]
        refused = module("server", state="started", owner="root", **PG16)
        failed_with(refused, "refuses to run as root")
    finally:
        stop_all(module)
