"""After the upgrade of the PGDG-style 16 (postgresql-16.service, /var/lib/pgsql/16/data): 18 serves
5432 through an enabled systemd unit of its own, postgresql-16 is stopped and disabled, no write
lost, a reboot keeps it so, a --check run changes nothing. The tests run in this order, on one host."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "debian", "tests"))
import systemd_host as sh  # noqa: E402  pylint: disable=wrong-import-position

CONTAINER = "fleetdb-pgdg"
PORT = 25202   # the published 5432, where the application connects
LOAD_DIR = os.path.join(sh.EPHEMERAL, "load")
OLD_UNIT = "postgresql-16.service"
OLD_DATA_DIR = "/var/lib/pgsql/16/data"
SNAPSHOT_ROOTS = ["/var/lib/pgsql", "/var/lib/fleetdb", "/etc/systemd/system"]


def new_server(host):
    """The server on 5432 must be 18, run by a unit that is not the old one: postgresql-18.service,
    or whichever unit the upgrade's state files name."""
    server = sh.serving(host)
    assert server and server["version"].startswith("18"), server
    unit = server["unit"]
    assert unit and unit != OLD_UNIT, "the server on 5432 must run under a systemd unit of its own: %s" % server
    assert unit == "postgresql-18.service" or sh.named_in_state(host, unit), (
        "%s runs 18 but is neither postgresql-18.service nor named in %s" % (unit, sh.STATE_DIR))
    return server


def assert_18_serves_and_16_is_down(host):
    server = new_server(host)
    active, enabled, _rc = sh.unit_state(host, server["unit"])
    assert (active, enabled) == ("active", "enabled"), (server["unit"], active, enabled)
    active, enabled, _rc = sh.unit_state(host, OLD_UNIT)
    assert active == "inactive" and enabled in ("disabled", "masked"), (
        "postgresql-16 must be stopped and not started at boot: %s / %s" % (active, enabled))
    assert not host.file(OLD_DATA_DIR + "/postmaster.pid").exists
    return server


def test_every_acknowledged_write_is_on_18():
    report = sh.stop_and_verify(PORT, LOAD_DIR)[LOAD_DIR]
    assert report["acknowledged"] > 100, report
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["out_of_order_ids"] == 0, report
    assert report["ok"] and report["server_version"].startswith("18"), report


def test_18_serves_5432_through_an_enabled_unit_and_postgresql_16_is_stopped_and_disabled(host):
    server = assert_18_serves_and_16_is_down(host)
    print("18 on 5432: %s" % server)


def test_16_is_configured_for_another_port(host):
    port = host.run("runuser -u postgres -- /usr/pgsql-16/bin/postgres -D %s -C port" % OLD_DATA_DIR)
    assert port.rc == 0 and port.stdout.strip() not in ("", "5432"), (port.stdout, port.stderr)


def test_after_a_reboot_18_serves_and_16_stays_down(host):
    state, seconds = sh.reboot(CONTAINER)
    assert state == "running", sh.failed_units(host)
    assert seconds < 60, seconds
    # The application logs in from outside with its password: no fence is left in 18's pg_hba.conf.
    assert sh.wait_app_login(PORT).startswith("18")
    assert_18_serves_and_16_is_down(host)
    host.run("sleep 3")
    assert sh.unit_state(host, OLD_UNIT)[0] == "inactive"
    assert not host.file(OLD_DATA_DIR + "/postmaster.pid").exists


def test_a_check_run_changes_nothing(host):
    server = new_server(host)
    roots = SNAPSHOT_ROOTS + [d for d in [server["data_dir"]] if not d.startswith(tuple(r + "/" for r in SNAPSHOT_ROOTS))]
    units = [OLD_UNIT, server["unit"]]
    before = sh.snapshot(host, roots, units)
    rc, out, recap = sh.playbook("upgrade.yml", "--check")
    after = sh.snapshot(host, roots, units)
    assert rc == 0, out[-4000:]
    assert sh.differences(before, after) == []
    assert recap[CONTAINER]["changed"] == 0, "a --check run after the upgrade predicts changes: %s" % recap
