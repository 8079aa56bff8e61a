"""Initial copy, three ways, same table, same run: logical (the replication module's table copy), physical
(the physical_copy module: pg_basebackup recovered to a slot's point, pg_upgrade --link, then a subscription
from that point) and pg_dump -Fd -j 2 | pg_restore -j 2.

Uses the cached binary tarballs (no Docker): throw-away instances in a temp dir, run as the
``postgres`` OS user when started as root.  Prints seconds and MB/s of each, until the new server holds the
data with its indexes and replicates (logical, physical), or holds the data (dump/restore).
  python3 bench/initial_copy.py [--rows 1000000] [--source 16] [--target 18] [--dist DIR]
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "unit"))
import conftest  # noqa: E402,F401 pylint: disable=unused-import

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engine import InstanceSpec  # noqa: E402
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.pg_physical_copy import PhysicalCopy  # noqa: E402
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.pg_replication import PostgresReplication  # noqa: E402
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.pg_session import connect  # noqa: E402

from _local import OWNER, Module  # noqa: E402  (bench/ is on sys.path: the script's own directory)


def as_owner(argv):
    return (["runuser", "-u", OWNER, "--"] if OWNER else []) + argv


def sh(argv, **kw):
    subprocess.run(as_owner(argv), check=True, **kw)


def unpack(dist, major, work):
    archive = glob.glob(os.path.join(dist, "postgresql-%s.*.tar.gz" % major))[0]
    with tarfile.open(archive) as tar:
        tar.extractall(work)
    return glob.glob(os.path.join(work, "postgresql-%s.*" % major, "bin"))[0]


def instance(work, bin_dir, name, port, start=True):
    data = os.path.join(work, name)
    sh([os.path.join(bin_dir, "initdb"), "-D", data, "-U", "postgres", "--auth-local=peer", "-E", "UTF8",
        "--locale=C.UTF-8"] + (["--no-data-checksums"] if "postgresql-18" in bin_dir else []),
       stdout=subprocess.DEVNULL)
    with open(os.path.join(data, "postgresql.conf"), "a") as conf:
        conf.write("wal_level = logical\nlisten_addresses = ''\nport = %d\nunix_socket_directories = '%s'\n"
                   "shared_buffers = 256MB\nmax_wal_size = 4GB\nmax_replication_slots = 20\nmax_wal_senders = 20\n"
                   % (port, os.path.join(work, "sock")))
    if start:
        sh([os.path.join(bin_dir, "pg_ctl"), "-D", data, "-l", data + ".log", "-w", "start"],
           stdout=subprocess.DEVNULL)
    return InstanceSpec(data_dir=data, bin_dir=bin_dir, owner=OWNER or os.environ.get("USER"), port=port,
                        socket_dir=os.path.join(work, "sock"), login_user="postgres", dbname="postgres")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000000)
    parser.add_argument("--source", default="16")
    parser.add_argument("--target", default="18")
    parser.add_argument("--dist", default="/var/cache/fleetdb-online-upgrade/dist")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="fleetdb-bench-")
    os.chmod(work, 0o755)
    os.makedirs(os.path.join(work, "sock"))
    if OWNER:
        shutil.chown(work, OWNER)
        shutil.chown(os.path.join(work, "sock"), OWNER)
    specs = []
    try:
        src_bin, tgt_bin = unpack(args.dist, args.source, work), unpack(args.dist, args.target, work)
        src = instance(work, src_bin, "src", 6601)
        specs.append(src)
        tgt = instance(work, tgt_bin, "tgt", 6602)
        specs.append(tgt)
        ddl = "CREATE TABLE bench (id bigint PRIMARY KEY, k int, v text, t timestamptz)"
        for spec, db in ((src, "app"), (tgt, "app"), (tgt, "dumped")):
            session = connect(spec)
            session.execute("CREATE DATABASE %s" % db)
            session.close()
        session = connect(src, dbname="app")
        session.execute(ddl)
        session.execute("INSERT INTO bench SELECT g, g %% 1000, md5(g::text) || repeat('x', 40), now() "
                        "FROM generate_series(1, %d) g" % args.rows)
        size = int(session.scalar("SELECT pg_table_size('bench')"))
        session.close()
        session = connect(tgt, dbname="app")
        session.execute(ddl)
        session.close()
        mb = size / 1048576.0
        print("table: %d rows, %.1f MB on PostgreSQL %s" % (args.rows, mb, args.source))

        replication = PostgresReplication(Module(), src, tgt, "app", replication_password="bench-only",
                                          timeout=3600)
        began = time.monotonic()
        replication.ensure("synced")
        copy_seconds = time.monotonic() - began

        dump = os.path.join(work, "bench.dump")
        began = time.monotonic()
        sh([os.path.join(tgt_bin, "pg_dump"), "-Fd", "-j", "2", "-h", src.socket_dir, "-p", str(src.port),
            "-U", "postgres", "-t", "bench", "-f", dump, "app"])
        sh([os.path.join(tgt_bin, "pg_restore"), "-j", "2", "-h", tgt.socket_dir, "-p", str(tgt.port),
            "-U", "postgres", "--no-acl", "--no-owner", "-d", "dumped", dump])
        dump_seconds = time.monotonic() - began
        replication.ensure("absent")

        # physical: the publication, then the copy into a new, stopped 18 instance, then replication from its point
        phys = instance(work, tgt_bin, "phys", 6603, start=False)
        replication = PostgresReplication(Module(), src, phys, "app", replication_password="bench-only",
                                          timeout=3600)
        began = time.monotonic()
        replication.ensure("published")
        copied = PhysicalCopy(Module(), src, phys, ["app"], temporary_port=6603, copy_port=6610,
                              state_file=os.path.join(work, "physical_copy.json")).run()
        PostgresReplication(Module(), src, phys, "app", replication_password="bench-only", existing_slot=True,
                            copy_data=False, start_lsn=copied["start_lsn"], timeout=3600).ensure("synced")
        physical_seconds = time.monotonic() - began
        specs.append(phys)
        print("initial copy, logical (subscription created -> all tables ready): %6.1f s, %6.1f MB/s"
              % (copy_seconds, mb / copy_seconds))
        print("initial copy, physical (publication -> subscription in sync):     %6.1f s, %6.1f MB/s  %s"
              % (physical_seconds, mb / physical_seconds,
                 " ".join("%s %.1f s" % kv for kv in copied["phases"].items())))
        print("pg_dump -Fd -j 2 | pg_restore -j 2:                               %6.1f s, %6.1f MB/s"
              % (dump_seconds, mb / dump_seconds))
        print("physical / logical rate: %.1fx" % (copy_seconds / physical_seconds))
        # tools/fleetdb_waves.py plans a fleet's copies at this rate (make bench)
        out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "bench",
                           "initial_copy.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as handle:
            json.dump(dict(mb=round(mb, 1), copy_seconds=round(copy_seconds, 2), dump_seconds=round(dump_seconds, 2),
                           physical_seconds=round(physical_seconds, 2), physical_phases=copied["phases"],
                           copy_bytes_per_s=int(mb * 1024 * 1024 / copy_seconds)), handle, indent=1, sort_keys=True)
    finally:
        for spec in specs:
            subprocess.run(as_owner([os.path.join(spec.bin_dir, "pg_ctl"), "-D", spec.data_dir, "-m", "immediate",
                                     "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
