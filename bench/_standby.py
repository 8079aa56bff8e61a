"""The ``standby`` method of bench/gap.py: the online upgrade of a primary with one hot standby, and a read client
on that standby, on this one host (the standby on ports of its own, as if on a host of its own).

As the role does it (docs/layouts.md, "Primaries with standbys"): once the new instance holds the data it lets the
standby in (StandbyAccess); the new standby is ``pg_basebackup -R`` of it (NewStandby), on the standby's temporary
port; after the primary's cutover, the standby's switch (PostgresStandbySwitch).  The read client reads the
writers' progress on the standby's production port all along (tools/fleetdb_proof.py ``read``): its longest pause
and whether a value it read ever went backwards.
"""
import json
import os
import subprocess
import sys

import _local as L

APPLICATION_NAME = "standby1"
REPLICATOR = "fleetdb_replicator"
PASSWORD = "bench-repl"   # as gap.py's replication


def trust_replication(cluster, port=None):
    """The standby's own primary_conninfo (postgres over 127.0.0.1) let in: on a real host the role carries the old
    primary's pg_hba.conf line for it over to the new instance; the bench's new instance is a bare initdb."""
    path = os.path.join(cluster.data, "pg_hba.conf")
    with open(path) as handle:
        text = handle.read()
    with open(path, "w") as handle:
        handle.write("host replication postgres 127.0.0.1/32 trust\n" + text)
    cluster.execute("SELECT pg_reload_conf()", port=port)


class StandbyPair:
    """The old primary's hot standby (``ports["standby"]``), then its new one, and the read client on that port."""

    def __init__(self, run_dir, old, ports):
        self.ports = ports
        self.dir = os.path.join(run_dir, "standby")   # its own parent: the passfile beside a data directory is its own
        os.makedirs(self.dir)
        L.chown(self.dir)
        # each a Cluster of its primary's work directory: the copy carries the primary's unix_socket_directories
        self.old = L.Cluster(old.work, old.bin_dir, os.path.relpath(os.path.join(self.dir, "old"), old.work),
                             ports["standby"])
        trust_replication(old)
        L.run([old.tool("pg_basebackup"), "-h", "127.0.0.1", "-p", str(old.port), "-U", "postgres", "-D", self.old.data,
               "-R", "-X", "stream", "-c", "fast", "-d", "application_name=%s" % APPLICATION_NAME])
        with open(os.path.join(self.old.data, "postgresql.conf"), "a") as conf:
            conf.write("port = %d\n" % ports["standby"])
        self.old.log = os.path.join(self.dir, "old.log")
        self.old.start()
        self.new = None
        self.reader = None
        self.log_dir = None
        self.report = {}

    def start_reader(self, log_dir):
        self.log_dir = log_dir
        self.reader = subprocess.Popen(
            [sys.executable, L.PROOF, "--host", "127.0.0.1", "--port", str(self.ports["standby"]), "--user", "app",
             "--password", L.APP_PASSWORD, "--dbname", "app", "read", "--log-dir", log_dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def make_new(self, new_primary):
        """The new standby, from the new instance on its temporary port, before the primary's cutover."""
        from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.standby import (
            NewStandby, StandbyAccess)
        temp = self.ports["temp"]
        trust_replication(new_primary, temp)
        StandbyAccess(L.Module(), new_primary.spec(temp), temp, REPLICATOR, PASSWORD, ["127.0.0.1"]).run()
        self.new = L.Cluster(new_primary.work, new_primary.bin_dir,
                             os.path.relpath(os.path.join(self.dir, "new"), new_primary.work), self.ports["standby"])
        self.new.log = os.path.join(self.dir, "new.log")
        made = NewStandby(L.Module(), self.new.spec(), "127.0.0.1", temp, REPLICATOR, PASSWORD, APPLICATION_NAME,
                          self.ports["standby_temp"], timeout=300).run()
        self.report["standby_receiver"] = made.get("receiver", {}).get("status")
        # The copy is configured for the new primary's port: on a host of its own that is the production port
        # the switch gives it; on this one, the standby's.
        with open(os.path.join(self.new.data, "postgresql.conf"), "a") as conf:
            conf.write("port = %d\n" % self.ports["standby"])

    def switch(self):
        """The standby's switch, after the primary's cutover: the read pause the module measures."""
        from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.standby_switch import (
            PostgresStandbySwitch)
        switched = PostgresStandbySwitch(
            L.Module(), self.old.spec(), self.new.spec(), "127.0.0.1", REPLICATOR, PASSWORD, APPLICATION_NAME,
            self.ports["standby_temp"], self.ports["standby_after"], primary_port=self.ports["prod"],
            timeout=120).run()
        self.report.update(standby_pause_module_s=switched.get("read_pause_seconds"),
                           standby_phases=switched.get("phases"))

    def stop_reader(self):
        """The reader stopped; what it saw: its longest pause, values gone backwards."""
        if self.reader is None:
            return self.report
        self.reader.terminate()
        self.reader.wait(timeout=30)
        seen = L.proof(self.ports["standby"], "reads", "--log-dir", self.log_dir, check=False)
        try:
            reads = json.loads(seen.stdout)
            self.report.update(read_pause_s=reads["longest_pause_s"], read_pause_at=reads["longest_pause_at"],
                               reads=reads["reads"], reads_backwards=reads["backwards"], reads_ok=reads["ok"])
        except (ValueError, KeyError):
            self.report.update(reads_ok=False, reads_error=(seen.stderr or seen.stdout)[-500:])
        return self.report

    def clusters(self):
        return [c for c in (self.new, self.old) if c is not None]
