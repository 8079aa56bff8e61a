"""Client-visible write gap of three ways to upgrade PostgreSQL 16 -> 18, same data, same load, one run.

  online        this collection: schema by pg_dump/pg_restore, logical replication, PostgresSwitchover
  pgbouncer     the same, the writers connected through PgBouncer (transaction pooling), paused at the cutover
  standby       online, the primary with a hot standby (bench/_standby.py): its new standby made before the
                cutover, switched after it; a read client on the standby (its longest pause, values never back)
  pg_upgrade    in place: stop 16, pg_upgrade --link -j 2, start 18 on the same port
  dump_restore  offline, the ttMigrate way: fence clients, pg_dump -Fd -j 2 | pg_restore -j 2, start 18

For each scenario (data size, number of tables) a 16 cluster is seeded once with tools/fleetdb_proof.py and
copied for each method.  The online methods make their initial copy logically (the default of the role), except
with --copy-method physical, or auto (the default) in scenarios of 5,000 tables or more: a logical table copy
synchronizes about 5 tables a second here, 35 minutes per run for 10,000 tables, and the window that follows
is the same cutover whichever way the copy was made.  With --archive every cluster of a run archives its WAL
(archive_mode = on, a cp into a directory of its own beside its data directory), the online methods' new one only
from its start on the production port (on its temporary port archive_mode is off, as the role does it): the
cutover then pushes the old server's backlog before the fence (archive_drain) and checks the new server's
archiving after the window (archive_check), both among its phases.  4 writers run at full speed against 127.0.0.1:PORT from before the upgrade until
after it; `fleetdb_proof.py verify` gives the longest gap between two acknowledged writes and proves that no
acknowledged write was lost.  Prints a table, writes docs/bench-gap.png and .cache/bench/gap.json.

  .venv/bin/python bench/gap.py [--quick] [--sizes 100,1000,5000] [--tables 1000,10000] [--tables-size 100]
                                [--methods ...] [--copy-method auto|logical|physical] [--archive] [--port 7170]
"""
import argparse
import json
import os
import platform
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # its own directory first (_local.py)
from gap_report import METHODS, chart, format_table, markdown_table, ratios  # noqa: E402

PHYSICAL_FROM_TABLES = 5000  # --copy-method auto: the scenarios whose online methods copy physically
BYTES_PER_ROW = 230  # app.events row + its share of orders/order_lines, with indexes (measured on 16)
# --archive: each cluster into archive-<its directory name> beside its data directory (the archiver's working
# directory is the data directory); old and new apart, since the new cluster's segment names start again.
ARCHIVE_SETTINGS = ("archive_mode = on\n"
                    "archive_command = 'mkdir -p ../archive-$(basename \"$PWD\") && cp %p ../archive-$(basename \"$PWD\")/%f'\n")
TEMPORARY_PORT_OPTIONS = ("-c archive_mode=off",)   # as archiving.TEMPORARY_PORT_OPTIONS, on the command line


def archiving(cluster, ports):
    """With --archive, ``cluster`` archives its WAL from its next start on."""
    if ports.get("archive"):
        with open(os.path.join(cluster.data, "postgresql.conf"), "a") as conf:
            conf.write(ARCHIVE_SETTINGS)
    return cluster


def scenarios(args):
    if args.quick:
        return [dict(name="quick 20 MB", mb=20, tables=0), dict(name="quick 300 tables", mb=10, tables=300)]
    out = [dict(name="%s MB" % mb, mb=int(mb), tables=0) for mb in args.sizes.split(",") if mb]
    if args.tables_size:
        out += [dict(name="%s tables" % count, mb=args.tables_size, tables=int(count))
                for count in args.tables.split(",") if count]
    return out


# -- the runs -------------------------------------------------------------------------------------
def seed_template(L, work, bin16, scenario, port):
    """A stopped 16 cluster holding the scenario's data, the app role and database."""
    tmpl = L.Cluster(work, bin16, "template", port).initdb()
    tmpl.start()
    tmpl.execute("CREATE ROLE app LOGIN PASSWORD '%s'" % L.APP_PASSWORD)
    tmpl.execute("CREATE DATABASE app OWNER app")
    began = time.monotonic()
    L.proof(port, "seed", "--rows", max(1000, scenario["mb"] * 1024 * 1024 // BYTES_PER_ROW),
            "--extra-tables", scenario["tables"])
    tmpl.execute("CHECKPOINT")
    scenario["seed_s"] = round(time.monotonic() - began, 1)
    scenario["size_mb"] = round(int(tmpl.scalar("SELECT pg_database_size('app')")) / 1048576.0, 1)
    scenario["relations"] = int(tmpl.scalar("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON "
                                            "n.oid = c.relnamespace WHERE nspname = 'app'", dbname="app"))
    tmpl.stop()
    return tmpl


def upgrade_online(L, work, old, bin18, ports, copy_method="logical"):
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.switchover import PostgresSwitchover
    prod, temp = ports["prod"], ports["temp"]
    new = archiving(L.Cluster(work, bin18, "new", prod).initdb(), ports)  # configured for the production port
    began = time.monotonic()
    copy = dict(logical=copy_logically, physical=copy_physically)[copy_method]
    steps = copy(L, work, old, new, ports)  # wall-clock starts, to name the step a client's longest stall fell in
    copy_s = time.monotonic() - began
    standby = ports.get("standby_pair")
    if standby:
        began = time.monotonic()
        standby.make_new(new)
        standby.report["standby_copy_s"] = round(time.monotonic() - began, 1)
    report = PostgresSwitchover(L.Module(), old.spec(), new.spec(temp), ["app"], "fleetdb_upgrade",
                                "fleetdb_replicator", production_port=prod, temporary_port=temp,
                                old_port_after=ports["old_after"], drain_timeout=30,
                                verify_row_counts=ports["verify_row_counts"],
                                state_file=os.path.join(work, "switchover.json"),
                                pooler=ports.get("pgbouncer") and ports["pgbouncer"].pooler()).run()
    if standby:
        steps["standby switch"] = time.time()
        standby.switch()
    return new, dict(copy_s=round(copy_s, 1), copy_method=copy_method, window_s=report.get("window_seconds"),
                     phases=dict(report.get("phases") or {}),
                     steps=dict(steps, **(report.get("phase_started") or {})))


def _replication(L, old, new, ports, **extra):
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication import PostgresReplication
    return PostgresReplication(L.Module(), old.spec(), new.spec(ports["temp"]), "app",
                               replication_password="bench-repl", timeout=3600, **extra)


def copy_logically(L, work, old, new, ports):
    """The role's default: schema by pg_dump/pg_restore, tables by the subscription, indexes, catch-up."""
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.migrate import PostgresMigrator
    temp = ports["temp"]
    new.start(port=temp, options=TEMPORARY_PORT_OPTIONS)
    steps = dict(schema=time.time())
    dump = os.path.join(work, "migrate", "app.schema.dump")
    os.makedirs(os.path.dirname(dump))
    L.chown(os.path.dirname(dump))
    PostgresMigrator(L.Module(), old.spec(), tool_bin_dir=new.bin_dir).create(
        dump, schema_only=True, dbname="app", role_passwords=True)
    PostgresMigrator(L.Module(), new.spec(temp)).restore(dump, sections=["pre-data", "keys"], dbname="app")
    steps["copy"] = time.time()
    _replication(L, old, new, ports).ensure("synced")
    steps["indexes"] = time.time()
    PostgresMigrator(L.Module(), new.spec(temp)).restore(dump, sections=["post-data"], dbname="app", jobs=2)
    steps["catch-up"] = time.time()
    _replication(L, old, new, ports).ensure("synced")
    return steps


def copy_physically(L, work, old, new, ports):
    """online_upgrade_copy_method: physical: the publication, the base backup recovered to the slot's point and
    upgraded by pg_upgrade, then the subscription from that point."""
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.physical_copy import PhysicalCopy
    steps = dict(copy=time.time())
    _replication(L, old, new, ports).ensure("published")
    copied = PhysicalCopy(L.Module(), old.spec(), new.spec(ports["temp"]), ["app"], temporary_port=ports["temp"],
                          copy_port=ports["copy"], state_file=os.path.join(work, "physical_copy.json")).run()
    steps["catch-up"] = time.time()
    _replication(L, old, new, ports, existing_slot=True, copy_data=False,
                 start_lsn=copied["start_lsn"]).ensure("synced")
    return steps


def upgrade_pg_upgrade(L, work, old, bin18, ports):
    # 16's initdb default is no checksums; 18's is checksums on.  pg_upgrade needs both alike.
    new = archiving(L.Cluster(work, bin18, "new", ports["prod"]).initdb(checksums=False), ports)
    argv = [new.tool("pg_upgrade"), "-b", old.bin_dir, "-B", bin18, "-d", old.data, "-D", new.data,
            "-s", old.sock, "-U", "postgres", "--link", "-j", "2"]
    began = time.monotonic()
    L.run(argv + ["-p", str(ports["prod"]), "-P", str(ports["temp"]), "--check"], cwd=work)
    check_s = time.monotonic() - began
    began = time.monotonic()
    old.stop("fast")
    L.run(argv + ["-p", str(ports["old_after"]), "-P", str(ports["temp"])], cwd=work)
    upgrade_s = time.monotonic() - began
    new.start()
    window_s = time.monotonic() - began
    began = time.monotonic()
    L.run([new.tool("vacuumdb"), "-h", new.sock, "-p", str(ports["prod"]), "-U", "postgres", "--all",
           "--analyze-in-stages"])
    return new, dict(copy_s=round(upgrade_s, 1), check_s=round(check_s, 1), window_s=round(window_s, 3),
                     analyze_s=round(time.monotonic() - began, 1))


def upgrade_dump_restore(L, work, old, bin18, ports):
    prod, temp = ports["prod"], ports["temp"]
    new = archiving(L.Cluster(work, bin18, "new", prod).initdb(), ports)
    new.start(port=temp, options=TEMPORARY_PORT_OPTIONS)
    # Roles are global objects, restored before the window (pg_dumpall --globals-only in real life).
    new.execute("CREATE ROLE app LOGIN PASSWORD '%s'" % L.APP_PASSWORD, port=temp)
    dump = os.path.join(work, "app.dir")
    began = time.monotonic()
    hba = os.path.join(old.data, "pg_hba.conf")
    with open(hba) as handle:
        text = handle.read()
    with open(hba, "w") as handle:
        handle.write("host all app all reject\nlocal all app reject\n" + text)
    old.execute("SELECT pg_reload_conf()")
    time.sleep(0.05)  # the postmaster reloads asynchronously; stragglers are terminated below
    for _attempt in range(100):
        if old.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'app'") == "0":
            break
        time.sleep(0.01)
    L.run([new.tool("pg_dump"), "-Fd", "-j", "2", "-f", dump, "-h", old.sock, "-p", str(prod), "-U", "postgres",
           "app"], cwd=work)
    L.run([new.tool("pg_restore"), "-j", "2", "--create", "--exit-on-error", "-h", new.sock, "-p", str(temp),
           "-U", "postgres", "-d", "postgres", dump], cwd=work)
    copy_s = time.monotonic() - began
    old.stop("fast")
    new.stop("fast")
    new.start(port=prod)
    return new, dict(copy_s=round(copy_s, 1), window_s=round(time.monotonic() - began, 3))


def step_at(steps, at):
    """The step (or cutover phase) that was running when a stall began: the last one started before it."""
    if not steps or at is None:
        return None
    started = [(when, name) for name, when in steps.items() if name != "prepare" and when <= at]
    return max(started)[1] if started else "before the upgrade"


def copy_method_of(scenario, choice):
    """The initial copy of the online methods in this scenario (--copy-method auto|logical|physical)."""
    if choice != "auto":
        return choice
    return "physical" if scenario["tables"] >= PHYSICAL_FROM_TABLES else "logical"


def run_one(L, work, tmpl, bin18, scenario, method, ports, warmup):
    run_dir = os.path.join(work, method)
    os.makedirs(run_dir)
    L.chown(run_dir)
    old = archiving(tmpl.clone(os.path.join(method, "old")), ports)
    old.log = os.path.join(run_dir, "old.log")
    old.start()
    log_dir = os.path.join(run_dir, "load")
    pgbouncer = L.PgBouncer(run_dir, ports["pooler"], ports["prod"]) if method == "pgbouncer" else None
    standby = None
    if method == "standby":
        import _standby  # pylint: disable=import-outside-toplevel
        standby = _standby.StandbyPair(run_dir, old, ports)
    load = L.start_load(ports["pooler"] if pgbouncer else ports["prod"], log_dir)
    if standby:
        standby.start_reader(os.path.join(run_dir, "reads"))
    result = dict(scenario=scenario["name"], method=method, size_mb=scenario["size_mb"], tables=scenario["tables"],
                  archiving=bool(ports.get("archive")))
    try:
        time.sleep(warmup)
        began = time.monotonic()
        if method in ("online", "pgbouncer", "standby"):
            _new, extra = upgrade_online(L, run_dir, old, bin18, dict(ports, pgbouncer=pgbouncer, standby_pair=standby),
                                         copy_method_of(scenario, ports["copy_method"]))
        else:
            upgrade = dict(pg_upgrade=upgrade_pg_upgrade, dump_restore=upgrade_dump_restore)[method]
            _new, extra = upgrade(L, run_dir, old, bin18, ports)
        result.update(extra, upgrade_s=round(time.monotonic() - began, 1))
        time.sleep(warmup)
    except Exception as exc:  # pylint: disable=broad-except
        result["error"] = str(exc)[:2000]
        print("  %s failed: %s" % (method, exc), file=sys.stderr)
        keep = os.path.join(ROOT, ".cache", "bench", "failed", "%s-%s" % (scenario["name"].replace(" ", "_"), method))
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(run_dir, keep, ignore=lambda d, names: [
            n for n in names if n in ("old", "new", "app.dir") or n.startswith(".s.PGSQL")])
    finally:
        L.proof(ports["prod"], "stop", "--log-dir", log_dir, check=False)
        load.wait(timeout=60)
        if pgbouncer:
            pgbouncer.stop()
        if standby:
            result.update(standby.stop_reader())
    verified = L.proof(ports["prod"], "verify", "--log-dir", log_dir, "--json", check=False)
    try:
        report = json.loads(verified.stdout)
        result.update(gap_s=report["longest_gap_s"], lost=report["lost"], acknowledged=report["acknowledged"],
                      failed_attempts=report["failed_attempts"], tps=report["tps"], duplicated=report["duplicated"],
                      server_version=report["server_version"],
                      gap_during=step_at(result.get("steps"), report.get("longest_gap_at")),
                      ok=bool(report["ok"]) and "error" not in result and report["server_version"].startswith("18")
                      and result.get("reads_ok", True))
    except (ValueError, KeyError):
        result.update(ok=False, verify_error=(verified.stderr or verified.stdout)[-500:])
    stop_every_server(L, run_dir, old)   # the new one too when the upgrade failed past its start
    keep_logs(run_dir, scenario, method)
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def stop_every_server(L, folder, cluster):
    """Every server whose data directory is under ``folder`` (a failed run's too), by ``cluster``'s pg_ctl."""
    for path, _dirs, files in os.walk(folder):
        if "postmaster.pid" in files:
            stopped = L.Cluster(cluster.work, cluster.bin_dir, os.path.relpath(path, cluster.work), 0)
            stopped.stop("immediate", check=False)


def keep_logs(run_dir, scenario, method):
    """The servers' logs of the run (checkpoints, shutdown) into .cache/bench/logs/<scenario>-<method>/."""
    keep = os.path.join(ROOT, ".cache", "bench", "logs", "%s-%s" % (scenario["name"].replace(" ", "_"), method))
    shutil.rmtree(keep, ignore_errors=True)
    os.makedirs(keep)
    for folder, _dirs, files in os.walk(run_dir):
        for name in files:
            if name.endswith(".log"):
                shutil.copy(os.path.join(folder, name), keep)


def machine(bin16, bin18, L):
    with open("/proc/meminfo") as meminfo:
        mem_kb = int(meminfo.readline().split()[1])
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return dict(nproc=os.cpu_count(), cpu=cpu, ram_gb=round(mem_kb / 1048576.0, 1), kernel=platform.release(),
                python=platform.python_version(), old=L.version(bin16), new=L.version(bin18))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (20 MB and 300 tables of 10 MB)")
    parser.add_argument("--sizes", default="100,1000,5000", help="MB of the one-table (app schema) scenarios")
    parser.add_argument("--tables", default="1000,10000", help="numbers of tables of the many-table scenarios")
    parser.add_argument("--tables-size", type=int, default=100, help="MB of the many-table scenarios; 0 skips them")
    parser.add_argument("--methods", default=",".join(m for m in METHODS if m != "standby"),
                        help="of %s; standby only when named (make bench runs it beside online)" % ", ".join(METHODS))
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before and after the upgrade")
    parser.add_argument("--copy-method", choices=("auto", "logical", "physical"), default="auto",
                        help="initial copy of the online methods; auto: physical from %d tables" % PHYSICAL_FROM_TABLES)
    parser.add_argument("--archive", action="store_true",
                        help="every cluster archives its WAL (archive_mode = on, a cp): the window and the longest "
                        "client gap with archiving on")
    parser.add_argument("--port", type=int, default=7170,
                        help="production port; the next eight are used too (temporary, old after, PgBouncer, "
                        "the physical copy's recovery and its pg_upgrade; the standby's production, temporary and old "
                        "after ports)")
    parser.add_argument("--no-verify-row-counts", action="store_true",
                        help="switchover without its row-count comparison inside the window")
    parser.add_argument("--dist", default="/var/cache/fleetdb-online-upgrade/dist")
    parser.add_argument("--out", default=os.path.join(ROOT, ".cache", "bench", "gap.json"))
    parser.add_argument("--chart", default=os.path.join(ROOT, "docs", "bench-gap.png"), help="'' for none")
    args = parser.parse_args(argv)
    # imported here so that the report functions (unit-tested) do not need the collection
    import _local as L  # pylint: disable=import-outside-toplevel

    ports = dict(prod=args.port, temp=args.port + 1, old_after=args.port + 2, pooler=args.port + 3,
                 copy=args.port + 4, standby=args.port + 6, standby_temp=args.port + 7, standby_after=args.port + 8,
                 copy_method=args.copy_method, verify_row_counts=not args.no_verify_row_counts, archive=args.archive)
    methods = [m for m in args.methods.split(",") if m]
    work = L.make_work()
    results, started, plan = [], time.monotonic(), scenarios(args)
    try:
        bin16, bin18 = L.unpack(args.dist, "16", work), L.unpack(args.dist, "18", work)
        info = machine(bin16, bin18, L)
        print("machine: %(nproc)s CPUs (%(cpu)s), %(ram_gb)s GB RAM, PostgreSQL %(old)s -> %(new)s" % info)
        for scenario in plan:
            began = time.monotonic()
            tmpl = seed_template(L, work, bin16, scenario, ports["prod"])
            print("%s: %.0f MB in database app, %d relations in schema app (seeded in %.0f s)"
                  % (scenario["name"], scenario["size_mb"], scenario["relations"], time.monotonic() - began))
            for method in methods:
                result = run_one(L, work, tmpl, bin18, scenario, method, ports, args.warmup)
                results.append(result)
                print("  %-12s gap %s s (during %s), lost %s, window %s, copy %s s%s%s" % (
                    method, result.get("gap_s"), result.get("gap_during") or "-", result.get("lost"),
                    result.get("window_s"), result.get("copy_s"),
                    " (%s)" % result["copy_method"] if result.get("copy_method") else "",
                    "  phases %s" % result["phases"] if result.get("phases") else ""))
                sys.stdout.flush()
            shutil.rmtree(tmpl.data, ignore_errors=True)
            save(args, info, plan, results, ports, started)  # a long run stopped later keeps what it measured
    finally:
        # the runs' clusters too (<method>/old), when interrupted
        stop_every_server(L, work, L.Cluster(work, bin16, "template", 0))
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(format_table(results))
    print()
    print(markdown_table(results))
    print(json.dumps(save(args, info, plan, results, ports, started), sort_keys=True))
    return 0 if results and all(r.get("ok") for r in results) else 1


def save(args, info, plan, results, ports, started):
    """The figures so far into args.out and the chart; returns the document."""
    document = dict(machine=info, scenarios=plan, results=results, ratios=ratios(results),
                    verify_row_counts=ports["verify_row_counts"],
                    seconds=round(time.monotonic() - started))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(document, handle, indent=1, sort_keys=True)
    if args.chart and results:
        chart(results, args.chart)
    return document


if __name__ == "__main__":
    sys.exit(main())
