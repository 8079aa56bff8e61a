"""Initial copy, three ways, same table, same run: logical (the replication module's table copy), physical
(the physical_copy module: pg_basebackup recovered to a slot's point, pg_upgrade, then a subscription
from that point) and pg_dump -Fd -j 2 | pg_restore -j 2.

Uses the cached binary tarballs (no Docker): throw-away instances in a temp dir, run as the
``postgres`` OS user when started as root.  Prints seconds and MB/s of each, until the new server holds the
data with its indexes and replicates (logical, physical), or holds the data (dump/restore). Each method starts
from a checkpointed source (CHECKPOINT off the clock).
Each size is its own run (a table of that many MB); prints a table, draws docs/bench-copy.png.
  python3 bench/initial_copy.py [--sizes 1000,5000] [--source 16] [--target 18] [--dist DIR] [--chart PNG]
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

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.engine import InstanceSpec  # noqa: E402
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.physical_copy import (  # noqa: E402
    PhysicalCopy)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication import (  # noqa: E402
    PostgresReplication)
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect  # noqa: E402

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
    sock = os.path.join(work, "sock")
    if not os.path.isdir(sock):
        os.makedirs(sock)
        if OWNER:
            shutil.chown(sock, OWNER)
    sh([os.path.join(bin_dir, "initdb"), "-D", data, "-U", "postgres", "--auth-local=peer", "-E", "UTF8",
        "--locale=C.UTF-8"] + (["--no-data-checksums"] if "postgresql-18" in bin_dir else []),
       stdout=subprocess.DEVNULL)
    with open(os.path.join(data, "postgresql.conf"), "a") as conf:
        conf.write("wal_level = logical\nlisten_addresses = ''\nport = %d\nunix_socket_directories = '%s'\n"
                   "shared_buffers = 256MB\nmax_wal_size = 4GB\nmax_replication_slots = 20\nmax_wal_senders = 20\n"
                   % (port, sock))
    if start:
        sh([os.path.join(bin_dir, "pg_ctl"), "-D", data, "-l", data + ".log", "-w", "start"],
           stdout=subprocess.DEVNULL)
    return InstanceSpec(data_dir=data, bin_dir=bin_dir, owner=OWNER or os.environ.get("USER"), port=port,
                        socket_dir=sock, login_user="postgres", dbname="postgres")


BYTES_PER_ROW = 126  # the bench table's heap per row on 16 (10 million rows: 1.2 GB)
METHODS = (("logical", "logical (subscription created -> all tables ready)"),
           ("physical", "physical (publication -> subscription in sync)"),
           ("dump", "pg_dump -Fd -j 2 | pg_restore -j 2"))


def checkpoint(spec):
    """Each method starts from a clean source: the one before read the table and set its hint bits, and the
    base backup's checkpoint would otherwise write them out on the physical method's clock."""
    session = connect(spec, dbname="app")
    try:
        session.execute("CHECKPOINT")
    finally:
        session.close()


def copy_three_ways(work, src_bin, tgt_bin, rows, ports):
    """One table of ``rows`` rows on a new source, copied logically, by pg_dump/pg_restore and physically.
    Returns dict(mb, <method>_s, physical_phases)."""
    specs = []
    base = os.path.join(work, "%d" % rows)
    os.makedirs(base)
    if OWNER:
        shutil.chown(base, OWNER)
    try:
        src = instance(base, src_bin, "src", ports)
        specs.append(src)
        tgt = instance(base, tgt_bin, "tgt", ports + 1)
        specs.append(tgt)
        ddl = "CREATE TABLE bench (id bigint PRIMARY KEY, k int, v text, t timestamptz)"
        for spec, db in ((src, "app"), (tgt, "app"), (tgt, "dumped")):
            session = connect(spec)
            session.execute("CREATE DATABASE %s" % db)
            session.close()
        session = connect(src, dbname="app")
        session.execute(ddl)
        session.execute("INSERT INTO bench SELECT g, g %% 1000, md5(g::text) || repeat('x', 40), now() "
                        "FROM generate_series(1, %d) g" % rows)
        size = int(session.scalar("SELECT pg_table_size('bench')"))
        session.close()
        session = connect(tgt, dbname="app")
        session.execute(ddl)
        session.close()
        result = dict(rows=rows, mb=round(size / 1048576.0, 1))
        print("table: %d rows, %.1f MB on %s" % (rows, result["mb"], os.path.basename(os.path.dirname(src_bin))))
        sys.stdout.flush()

        replication = PostgresReplication(Module(), src, tgt, "app", replication_password="bench-only",
                                          timeout=7200)
        checkpoint(src)
        began = time.monotonic()
        replication.ensure("synced")
        result["logical_s"] = round(time.monotonic() - began, 2)
        replication.ensure("absent")

        dump = os.path.join(base, "bench.dump")
        checkpoint(src)
        began = time.monotonic()
        sh([os.path.join(tgt_bin, "pg_dump"), "-Fd", "-j", "2", "-h", src.socket_dir, "-p", str(src.port),
            "-U", "postgres", "-t", "bench", "-f", dump, "app"])
        sh([os.path.join(tgt_bin, "pg_restore"), "-j", "2", "-h", tgt.socket_dir, "-p", str(tgt.port),
            "-U", "postgres", "--no-acl", "--no-owner", "-d", "dumped", dump])
        result["dump_s"] = round(time.monotonic() - began, 2)
        shutil.rmtree(dump, ignore_errors=True)
        subprocess.run(as_owner([os.path.join(tgt_bin, "pg_ctl"), "-D", tgt.data_dir, "-m", "fast", "stop"]),
                       stdout=subprocess.DEVNULL, check=False)  # its disk back for the physical copy

        # physical: the publication, then the copy into a new, stopped 18 instance, then replication from its point
        phys = instance(base, tgt_bin, "phys", ports + 2, start=False)
        replication = PostgresReplication(Module(), src, phys, "app", replication_password="bench-only",
                                          timeout=7200)
        checkpoint(src)
        began = time.monotonic()
        replication.ensure("published")
        copied = PhysicalCopy(Module(), src, phys, ["app"], temporary_port=ports + 2, copy_port=ports + 10,
                              state_file=os.path.join(base, "physical_copy.json")).run()
        specs.append(phys)
        PostgresReplication(Module(), src, phys, "app", replication_password="bench-only", existing_slot=True,
                            copy_data=False, start_lsn=copied["start_lsn"], timeout=7200).ensure("synced")
        result["physical_s"] = round(time.monotonic() - began, 2)
        result["physical_phases"] = copied["phases"]
        result["pg_upgrade_mode"] = copied.get("pg_upgrade_mode")
        return result
    finally:
        for spec in specs:
            subprocess.run(as_owner([os.path.join(spec.bin_dir, "pg_ctl"), "-D", spec.data_dir, "-m", "immediate",
                                     "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(base, ignore_errors=True)


def report(results):
    """Text table: per size and method, time and MB/s, and the physical / logical ratio (pure, unit-tested)."""
    lines = []
    for r in results:
        lines.append("%.0f MB (%d rows):" % (r["mb"], r["rows"]))
        for key, label in METHODS:
            seconds = r["%s_s" % key]
            lines.append("  %-52s %7.1f s  %6.1f MB/s" % (label, seconds, r["mb"] / seconds))
        lines.append("  physical / logical rate: %.1fx" % (r["logical_s"] / r["physical_s"]))
    return "\n".join(lines)


def chart(results, path):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(METHODS)
    for i, (key, label) in enumerate(METHODS):
        rates = [r["mb"] / r["%s_s" % key] for r in results]
        bars = ax.bar([x + i * width for x in range(len(results))], rates, width, label=label)
        ax.bar_label(bars, labels=["%.0f" % rate for rate in rates], fontsize=8)
    ax.set_xticks([x + width for x in range(len(results))])
    ax.set_xticklabels(["%.0f MB" % r["mb"] for r in results])
    ax.set_ylabel("MB/s until ready for the cutover")
    ax.set_title("Initial copy, PostgreSQL 16 -> 18, indexes included")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,5000", help="MB of the table, one run each")
    parser.add_argument("--source", default="16")
    parser.add_argument("--target", default="18")
    parser.add_argument("--dist", default="/var/cache/fleetdb-online-upgrade/dist")
    parser.add_argument("--chart", default=os.path.join(ROOT, "docs", "bench-copy.png"), help="'' for none")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="fleetdb-bench-")
    os.chmod(work, 0o755)
    if OWNER:
        shutil.chown(work, OWNER)
    results = []
    try:
        src_bin, tgt_bin = unpack(args.dist, args.source, work), unpack(args.dist, args.target, work)
        for mb in [int(size) for size in args.sizes.split(",") if size]:
            results.append(copy_three_ways(work, src_bin, tgt_bin, mb * 1048576 // BYTES_PER_ROW, 6601))
            print(report(results[-1:]))
            sys.stdout.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(report(results))
    largest = results[-1]
    # tools/fleetdb_waves.py plans a fleet's copies at the largest size's rate (make bench)
    out = os.path.join(ROOT, ".cache", "bench", "initial_copy.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as handle:
        json.dump(dict(runs=results, mb=largest["mb"], copy_seconds=largest["logical_s"],
                       dump_seconds=largest["dump_s"], physical_seconds=largest["physical_s"],
                       physical_phases=largest["physical_phases"],
                       copy_bytes_per_s=int(largest["mb"] * 1048576 / largest["logical_s"])),
                  handle, indent=1, sort_keys=True)
    if args.chart:
        chart(results, args.chart)
        print("chart: %s" % args.chart)


if __name__ == "__main__":
    main()
