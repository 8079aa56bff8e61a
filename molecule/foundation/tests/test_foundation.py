"""Both servers run as postgres on their configured ports and answer with their versions."""
import pytest

PG16_BIN = "/opt/fleetdb/postgresql/16/bin"
PG15_BIN = "/usr/lib/postgresql/15/bin"
INSTANCES = [
    # data_dir, bin_dir, port, major
    ("/var/lib/fleetdb/postgresql/15/main", PG15_BIN, 5433, "15"),
    ("/var/lib/fleetdb/postgresql/16/main", PG16_BIN, 5432, "16"),
]


@pytest.mark.parametrize("data_dir, bin_dir, port, major", INSTANCES)
def test_server_answers_on_its_port_with_its_version(host, data_dir, bin_dir, port, major):
    cmd = host.run("runuser -u postgres -- %s/psql -h /var/run/postgresql -p %d -Atc 'SHOW server_version_num'"
                   % (bin_dir, port))
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip().startswith(major)
    assert host.socket("tcp://127.0.0.1:%d" % port).is_listening


@pytest.mark.parametrize("data_dir, bin_dir, port, major", INSTANCES)
def test_fleetdb_conf_holds_the_port(host, data_dir, bin_dir, port, major):
    conf = host.file(data_dir + "/fleetdb.conf")
    assert conf.user == "postgres" and conf.mode == 0o600
    assert ("port = %d" % port) in conf.content_string.splitlines()
    assert "include_if_exists = 'fleetdb.conf'" in host.file(data_dir + "/postgresql.conf").content_string


@pytest.mark.parametrize("data_dir, bin_dir, port, major", INSTANCES)
def test_postmaster_runs_as_postgres_from_its_release(host, data_dir, bin_dir, port, major):
    pid = int(host.file(data_dir + "/postmaster.pid").content_string.splitlines()[0])
    process = host.process.get(pid=pid)
    assert process.user == "postgres"
    assert process.args.startswith(bin_dir + "/postgres ")


def test_no_server_runs_as_root(host):
    assert host.process.filter(user="root", comm="postgres") == []


def test_releases_are_side_by_side(host):
    assert host.file(PG16_BIN + "/postgres").user == "root"
    assert "16." in host.check_output(PG16_BIN + "/postgres --version")
    assert "15." in host.check_output(PG15_BIN + "/postgres --version")
