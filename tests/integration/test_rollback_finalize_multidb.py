"""Rollback and finalize on a host with two application databases and the default database list (every
connectable database: postgres, app, inventory), driven by the playbooks like test_upgrade_flows.py:

  16 -> 18 with writers -> more writes on 18 -> rollback: every write is back on 16 on the production port
  -> upgrade again -> finalize: no replication role, passfile, pg_hba.conf lines, publication or slot is left,
  every write is on 18.

inventory's table lives in a tablespace of its own: each instance's directory there (PG_16_*, PG_18_*) goes
with the instance - the rolled-back 18's when the upgrade again removes that instance (or it could not create
the tablespace anew), 16's with finalize.
"""
import json
import os

from test_upgrade_flows import (APP_PASSWORD, NEW_DATA, OLD_DATA, PG16, PG18, PREPARE, Flow, dist,
                                slots, wait_for)

PORT = int(os.environ.get("MULTIDB_PORT", "25071"))
ROWS = 2000
ROLE = "fleetdb_replicator"
PASSFILES = ["/var/lib/fleetdb/postgresql/%s/fleetdb_replication.pgpass" % v for v in ("16", "18")]
TABLESPACE_DIR = "/srv/ts_inventory"


class MultiDbFlow(Flow):
    """Flow's host with the default database list and a second application database, inventory."""

    def __init__(self, tmp_path, client_port):
        super().__init__(tmp_path, client_port)
        with open(self.inventory) as handle:
            text = handle.read()
        with open(self.inventory, "w") as handle:
            handle.write(text.replace('online_upgrade_databases=["app"]\n', ""))
        self.items = {}  # label -> qty: what inventory's table items must hold

    def prepare(self):
        path = str(self.tmp / "prepare.yml")
        with open(path, "w") as handle:
            handle.write(PREPARE % dict(tarball=dist("16"), data=OLD_DATA, bin=PG16, pw=APP_PASSWORD, locale="C.UTF-8"))
        self.ok(path)
        self.psql("CREATE DATABASE inventory OWNER app", bin_dir=PG16, dbname="postgres")
        self.sh("install -d -o postgres -g postgres -m 700 %s" % TABLESPACE_DIR)
        self.psql("CREATE TABLESPACE ts_inventory LOCATION '%s'" % TABLESPACE_DIR, bin_dir=PG16, dbname="postgres")
        self.psql("CREATE TABLE items (id bigserial PRIMARY KEY, label text UNIQUE NOT NULL, qty int NOT NULL) "
                  "TABLESPACE ts_inventory", bin_dir=PG16, dbname="inventory")
        self.write_items("on16", PG16)
        seeded = self.proof("seed", "--rows", str(ROWS))
        assert seeded.returncode == 0, seeded.stderr
        self.start_writers()  # they write to app through the whole test

    def write_items(self, stage, bin_dir):
        """Inserts (ids from the sequence), an update and a delete in inventory, remembered in self.items."""
        self.psql("INSERT INTO items (label, qty) SELECT '%s-' || g, g FROM generate_series(1, 20) g" % stage,
                  bin_dir=bin_dir, dbname="inventory")
        self.items.update(("%s-%d" % (stage, g), g) for g in range(1, 21))
        self.psql("UPDATE items SET qty = qty + 100 WHERE label = '%s-1'; DELETE FROM items WHERE label = '%s-2'"
                  % (stage, stage), bin_dir=bin_dir, dbname="inventory")
        self.items["%s-1" % stage] += 100
        del self.items["%s-2" % stage]

    def check_items(self, bin_dir):
        rows = self.psql("SELECT label, qty FROM items ORDER BY id", bin_dir=bin_dir, dbname="inventory")
        assert dict((label, int(qty)) for label, qty in (r.split("\t") for r in rows.splitlines())) == self.items

    def verify_now(self, version):
        """Every write acknowledged so far is on the server exactly once (the writers go on)."""
        verified = self.proof("verify", "--log-dir", self.load_dir, "--json")
        report = json.loads(verified.stdout)
        assert report["ok"] and report["acknowledged"] > 100 and report["server_version"].startswith(version), report

    def rollback_slots(self):
        """The cutover's rollback_slots in the state file: exactly the slots on the new server, by database."""
        found = dict(r.split("\t") for r in self.psql(
            "SELECT database, slot_name FROM pg_replication_slots ORDER BY 1", dbname="postgres").splitlines())
        assert self.state().get("rollback_slots") == found, (self.state(), found)
        return found


def tablespace_versions(flow):
    """The major versions with a directory in inventory's tablespace."""
    return sorted(name.split("_")[1] for name in flow.sh("ls %s" % TABLESPACE_DIR).split())


def leftovers(flow):
    """(replication roles, lines naming the role in the new server's pg_hba.conf, replication passfiles)."""
    lines = flow.host.run("grep -c '\"%s\"' %s/pg_hba.conf" % (ROLE, NEW_DATA)).stdout.strip()
    return (int(flow.psql("SELECT count(*) FROM pg_roles WHERE rolname = '%s'" % ROLE)), int(lines or 0),
            len(flow.host.run("ls %s" % " ".join(PASSFILES)).stdout.split()))


def objects_left(flow, bin_dir=PG18):
    return flow.psql("SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_subscription)",
                     bin_dir=bin_dir, dbname="postgres") + "/" + "/".join(
        flow.psql("SELECT count(*) FROM pg_publication", bin_dir=bin_dir, dbname=db)
        for db in ("postgres", "app", "inventory"))


def test_rollback_then_finalize_with_two_databases_and_the_default_list(tmp_path, run_module):
    flow = MultiDbFlow(tmp_path, PORT)
    try:
        flow.prepare()
        flow.ok("upgrade.yml")
        assert flow.psql("SHOW server_version").startswith("18")
        assert flow.rollback_slots() == {db: "fleetdb_rollback_" + db for db in ("app", "inventory", "postgres")}
        assert tablespace_versions(flow) == ["16", "18"]
        # writes that exist only on 18 until the rollback replays them
        before = flow.acknowledged()
        flow.write_items("on18", PG18)
        wait_for("writes on 18", lambda: flow.acknowledged() > before + 100, timeout=60)

        flow.ok("rollback.yml")
        assert flow.psql("SHOW server_version", bin_dir=PG16).startswith("16")
        assert flow.host.run("test -e %s/postmaster.pid" % NEW_DATA).returncode != 0, "18 still runs"
        flow.check_items(PG16)
        assert tablespace_versions(flow) == ["16", "18"]  # 18 stays, stopped, until the upgrade again
        rolled_back_18 = flow.sh("stat -c %%i %s/PG_18_*" % TABLESPACE_DIR).strip()
        # no slot keeps WAL on either server: none on 16, the rollback slots on 18 went with the cutover back
        assert slots(flow, bin_dir=PG16) == ""
        assert flow.sh("ls -A %s/pg_replslot" % NEW_DATA).strip() == ""
        assert flow.psql("SELECT count(*) FROM pg_subscription", bin_dir=PG16) == "0"
        flow.verify_now("16")
        flow.write_items("back16", PG16)  # the sequence went on from 18's ids

        flow.ok("upgrade.yml")  # starts over: a new 18 instance
        assert flow.psql("SHOW server_version").startswith("18")
        flow.rollback_slots()
        flow.write_items("again18", PG18)
        # what finalize must remove: the role, with privileges in the databases, its pg_hba.conf lines, passfiles
        assert int(flow.psql("SELECT count(DISTINCT dbid) FROM pg_shdepend WHERE refobjid = '%s'::regrole" % ROLE)) >= 2
        assert leftovers(flow) == (1, 9, 2)  # 3 lines for each of the 3 databases
        new = dict(data_dir=NEW_DATA, bin_dir=PG18, port=5432)
        checked = run_module(flow.host, "fleetdb.online_upgrade.replication",
                             dict(source=new, target=new, state="role_absent"), check=True, diff=True)
        assert checked["changed"] and 'DROP ROLE "%s"' % ROLE in checked["actions"], checked["actions"]
        assert ROLE not in checked["diff"][0]["after"] and ROLE in checked["diff"][0]["before"], checked["diff"]
        assert leftovers(flow) == (1, 9, 2), "check mode changed something"

        assert tablespace_versions(flow) == ["16", "18"]
        assert flow.sh("stat -c %%i %s/PG_18_*" % TABLESPACE_DIR).strip() != rolled_back_18, "18's files were kept"
        flow.ok("finalize.yml")
        assert tablespace_versions(flow) == ["18"], "16's files stayed in the tablespace"
        assert leftovers(flow) == (0, 0, 0)
        assert "fleetdb.online_upgrade replication" not in flow.sh("cat %s/pg_hba.conf" % NEW_DATA)
        assert objects_left(flow) == "0/0/0/0"
        again = run_module(flow.host, "fleetdb.online_upgrade.replication",
                           dict(source=new, target=new, state="role_absent"))
        assert not again["changed"] and not again.get("failed"), again
        flow.check_items(PG18)
        flow.stop_and_verify("18")
    finally:
        flow.close()
