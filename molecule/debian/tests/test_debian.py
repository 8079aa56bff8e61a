"""After the upgrade of Debian's 15/main: 18/main serves 5432 through postgresql@18-main, no write
lost, Debian's tools agree (pg_lsclusters, start.conf, the generator), a reboot keeps it so, a
--check run changes nothing; then the rollback brings 15/main back on 5432 with every write of
both loads, and a second reboot keeps that. The tests run in this order, on one host."""
import json
import os
import re
import shlex

import systemd_host as sh

CONTAINER = "fleetdb-debian"
PORT = 25201   # the published 5432, where the application connects
LOAD_DIR = os.path.join(sh.EPHEMERAL, "load")
ROLLBACK_LOAD_DIR = os.path.join(sh.EPHEMERAL, "load-rollback")
SNAPSHOT_ROOTS = ["/etc/postgresql", "/var/lib/postgresql", "/var/lib/fleetdb", "/etc/systemd/system"]
UNITS = ["postgresql.service", "postgresql@15-main.service", "postgresql@18-main.service"]


def clusters(host):
    """pg_lsclusters -h -s: {"15/main": dict(port, status, start, data_dir)}; status is online or down."""
    out = host.run("pg_lsclusters -h -s")
    assert out.rc == 0, out.stderr
    found = {}
    for line in out.stdout.splitlines():
        fields = line.split()
        status, _sep, start = fields[3].partition(",")
        found["%s/%s" % (fields[0], fields[1])] = dict(
            port=int(fields[2]), status=status, start=start, data_dir=fields[5])
    return found


def start_conf(host, version):
    """The words of /etc/postgresql/N/main/start.conf, comments left out: ["auto"], ["manual"], ["disabled"]."""
    text = host.file("/etc/postgresql/%s/main/start.conf" % version).content_string
    return " ".join(line.split("#", 1)[0] for line in text.splitlines()).split()


def assert_serves(host, version, other):
    """``version``/main serves 5432 through its own postgresql@ unit; ``other``/main is down on another port."""
    listed = clusters(host)
    assert listed.get("%s/main" % version, {}).get("status") == "online", listed
    assert listed["%s/main" % version]["port"] == 5432, listed
    assert listed.get("%s/main" % other, {}).get("status") == "down", listed
    assert listed["%s/main" % other]["port"] != 5432, listed
    server = sh.serving(host)
    assert server and server["version"].startswith(version), server
    assert server["unit"] == "postgresql@%s-main.service" % version, (
        "the server on 5432 must run under systemd's postgresql@%s-main (not a pg_ctl started beside it): %s"
        % (version, server))
    assert server["data_dir"] == "/var/lib/postgresql/%s/main" % version, server
    active, enabled, enabled_rc = sh.unit_state(host, "postgresql@%s-main" % version)
    assert active == "active" and enabled_rc == 0, (active, enabled)
    active, enabled, enabled_rc = sh.unit_state(host, "postgresql@%s-main" % other)
    # Debian enables postgresql@N-main through its generator (start.conf auto -> enabled-runtime);
    # a cluster set to manual is "disabled" once systemd re-ran the generator (daemon-reload).
    assert active == "inactive" and enabled_rc != 0, (
        "postgresql@%s-main must be stopped and not started at boot nor by postgresql.service: %s / %s"
        % (other, active, enabled))
    assert not host.file("/var/lib/postgresql/%s/main/postmaster.pid" % other).exists


def test_every_acknowledged_write_is_on_18():
    report = sh.stop_and_verify(PORT, LOAD_DIR)[LOAD_DIR]
    assert report["acknowledged"] > 100, report
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["out_of_order_ids"] == 0, report
    assert report["ok"] and report["server_version"].startswith("18"), report


def psql(host, version, sql, db="postgres"):
    out = host.run("runuser -u postgres -- /usr/lib/postgresql/%s/bin/psql -h %s -p 5432 -XAtq -F '|' -d %s -c %s"
                   % (version, sh.SOCKET_DIR, db, shlex.quote(sql)))
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def finished_runs(host):
    """job_run_details and the job's own table on 18 at one moment with no run in progress: [(runid, start,
    end, status)], {server_version_num: runs recorded}."""
    for _attempt in range(30):
        out = psql(host, "18", "SELECT (SELECT count(*) FROM cron.job_run_details WHERE status NOT IN ('succeeded', "
                   "'failed')), (SELECT json_agg(json_build_array(runid, extract(epoch FROM start_time), "
                   "extract(epoch FROM end_time), status) ORDER BY runid) FROM cron.job_run_details), "
                   "(SELECT json_object_agg(v, n) FROM (SELECT server_version_num / 10000 AS v, count(*) AS n "
                   "FROM public.cron_ran GROUP BY 1) t)")
        running, runs, ran = out.split("|")
        if running == "0":
            return json.loads(runs), dict((int(v), n) for v, n in json.loads(ran).items())
        host.run("sleep 1")
    raise AssertionError("a pg_cron run on 18 did not end within 30 s")


def test_every_kind_of_object_came_across_from_debian_15(host):
    """tests/integration/full_schema.sql as 15 had it (prepare.yml): same rows in every table and materialized
    view, the unlogged table empty by opt-in, the same owner of the public schema."""
    after = host.run("runuser -u postgres -- /usr/lib/postgresql/18/bin/psql -h %s -p 5432 -XAtq -d app "
                     "-f /srv/contents.sql" % sh.SOCKET_DIR)
    assert after.rc == 0, after.stderr
    before = host.file("/root/contents-15.txt").content_string
    assert len(before.splitlines()) >= 12, before   # the owner line and the populated tables and views
    assert after.stdout.splitlines() == before.splitlines()
    empty = host.run("runuser -u postgres -- /usr/lib/postgresql/18/bin/psql -h %s -p 5432 -XAtq -d app "
                     "-c 'SELECT count(*) FROM feat.cache'" % sh.SOCKET_DIR)
    assert empty.stdout.strip() == "0", empty.stdout


def test_18_main_serves_5432_through_systemd_and_15_main_is_down(host):
    assert_serves(host, "18", "15")


def test_start_conf_keeps_15_main_from_starting_and_18_main_starts_at_boot(host):
    assert start_conf(host, "15") == ["manual"]
    assert start_conf(host, "18") == ["auto"]
    wants = host.run("ls /run/systemd/generator/postgresql.service.wants").stdout.split()
    assert wants == ["postgresql@18-main.service"], "the generator's links (daemon-reload done?): %s" % wants


def test_postgresql_service_restarts_18_main_only(host):
    # What Debian's package scripts and administrators restart: the umbrella unit, whose wants the
    # generator made from start.conf.
    restarted = host.run("systemctl restart postgresql")
    assert restarted.rc == 0, restarted.stderr
    assert sh.wait_app_login(PORT).startswith("18")
    assert_serves(host, "18", "15")


def test_after_a_reboot_18_serves_and_15_stays_down(host):
    state, seconds = sh.reboot(CONTAINER)
    assert state == "running", sh.failed_units(host)
    assert seconds < 60, seconds
    # The application logs in from outside with its password: no fence is left in 18's pg_hba.conf.
    assert sh.wait_app_login(PORT).startswith("18")
    inside = host.run("PGPASSWORD=%s psql -h 127.0.0.1 -p 5432 -U app -d app -XAtc 'SHOW server_version'"
                      % sh.APP_PASSWORD)
    assert inside.rc == 0 and inside.stdout.startswith("18"), inside.stderr
    assert_serves(host, "18", "15")
    host.run("sleep 3")
    assert clusters(host)["15/main"]["status"] == "down"


def test_a_check_run_changes_nothing(host):
    before = sh.snapshot(host, SNAPSHOT_ROOTS, UNITS)
    assert before["serving"], "nothing serves 5432"
    rc, out, recap = sh.playbook("upgrade.yml", "--check")
    after = sh.snapshot(host, SNAPSHOT_ROOTS, UNITS)
    assert rc == 0, out[-4000:]
    assert sh.differences(before, after) == []
    assert recap[CONTAINER]["changed"] == 0, "a --check run after the upgrade predicts changes: %s" % recap


def test_pg_cron_jobs_came_across_and_run_on_18_never_in_the_window(host):
    """Debian's pg_cron 1.4 on 15, pg_cron 1.6 built into the 18 release: the job with its id, run on 15 before
    the fence, then on 18 once it serves 5432, nothing in between; its run history copied, run ids going on.
    Checked last before the rollback: the reboot and the --check run leave time for a run on 18."""
    assert psql(host, "18", "SELECT jobid, jobname, schedule, command FROM cron.job ORDER BY jobid") == \
        host.file("/root/cron-jobs-15.txt").content_string.strip()
    assert psql(host, "18", "SELECT bool_and(active) FROM cron.job") == "t"
    for _attempt in range(80):   # every minute
        if psql(host, "18", "SELECT count(*) FROM public.cron_ran WHERE server_version_num >= 180000") != "0":
            break
        host.run("sleep 1")
    runs, ran = finished_runs(host)
    with open(os.path.join(sh.EPHEMERAL, "cutover-phases.json")) as handle:
        phases = json.load(handle)
    fence, start = phases["fence"], phases["start"]
    before = [run for run in runs if run[1] < fence]
    after = [run for run in runs if run[1] > start]
    assert before and after, (phases, runs)
    assert [run for run in runs if run not in before + after] == [], "runs in the window %s: %s" % (phases, runs)
    assert all(run[2] < fence for run in before), "a run on 15 ended after the fence %s: %s" % (phases, before)
    # cron.runid_seq and cron.jobid_seq came across exactly: 18's first run takes the id after 15's last one
    assert min(run[0] for run in after) == max(run[0] for run in before) + 1, runs
    assert psql(host, "18", "SELECT last_value = (SELECT max(jobid) FROM cron.job) FROM cron.jobid_seq") == "t"
    # Each run recorded where it ran: as many rows from 15 and from 18 as runs that succeeded before and after
    # (a run cut by a restart of the server, prepare.yml's or the reboot's, fails).
    succeeded = [len([run for run in runs if run[3] == "succeeded"]) for runs in (before, after)]
    assert succeeded[1] > 0 and ran == {15: succeeded[0], 18: succeeded[1]}, (ran, runs)


def backrest_info(host):
    out = host.run("runuser -u postgres -- pgbackrest --stanza=main --output=json info")
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)[0]


def switch_wal(host, version):
    """The segment pg_switch_wal() completes.  A restore point first: a switch with no WAL written since the last
    one does nothing, and names the next segment, which no archiver will ever see."""
    psql(host, version, "SELECT pg_create_restore_point('fleetdb-test')")
    return psql(host, version, "SELECT pg_walfile_name(pg_switch_wal())")


def archived(host, segment):
    """The files of ``segment`` in the stanza's repository (any of its db histories)."""
    return host.run("ls /var/lib/pgbackrest/archive/main/*/%s/%s-* 2>/dev/null" % (segment[:16], segment)).stdout.split()


def test_pgbackrest_stanza_upgraded_with_a_full_backup_of_18_and_its_wal(host):
    """The cutover pointed pg1-path at 18/main, ran stanza-upgrade, saw a segment switched on 18 archived, and
    took a full backup of 18; during the copy 18 archived nothing (archive_mode off on its temporary port): its
    archiver, whose counters survive clean restarts, never failed."""
    with open(os.path.join(sh.EPHEMERAL, "cutover-archiving.json")) as handle:
        report = json.load(handle)
    info = backrest_info(host)
    assert info["status"]["code"] == 0, info["status"]
    current = [db for db in info["db"] if db["id"] == max(d["id"] for d in info["db"])][0]
    assert current["version"] == "18", info["db"]
    assert "pg1-path=/var/lib/postgresql/18/main" in host.file("/etc/pgbackrest/pgbackrest.conf").content_string
    last = info["backup"][-1]
    assert last["type"] == "full" and last["database"]["id"] == current["id"], info["backup"]
    assert last["label"] == report["pgbackrest"]["backup"]["label"], (last["label"], report)
    assert report["old_drained"]["segment"] and archived(host, report["old_drained"]["segment"]), report
    assert archived(host, report["new"]["segment"]), report
    assert psql(host, "18", "SELECT failed_count FROM pg_stat_archiver") == "0"
    switched = switch_wal(host, "18")
    check = host.run("runuser -u postgres -- pgbackrest --stanza=main check")
    assert check.rc == 0, check.stderr
    assert archived(host, switched), switched


WRITES_SQL = "SELECT count(*) || ' ' || md5(string_agg(w::text, ',' ORDER BY w::text)) FROM proof.writes w"
RESTORE_DIR = "/var/lib/postgresql/restore-18"
RECOVERY_SETTINGS = ("max_connections", "max_worker_processes", "max_wal_senders", "max_prepared_transactions",
                     "max_locks_per_transaction")


def test_a_restore_of_the_backup_of_18_holds_every_acknowledged_write(host):
    """The full backup of 18 restored into a scratch directory (pgBackRest replays the WAL the repository holds, up
    to a segment switched once the writers had stopped) starts and holds the writes 18 holds: every acknowledged
    one (the first test). Debian keeps the configuration in /etc: the scratch server gets a minimal one of its own."""
    live = psql(host, "18", WRITES_SQL, db="app")
    switched = switch_wal(host, "18")
    assert host.run("for i in $(seq 120); do ls /var/lib/pgbackrest/archive/main/*/%s/%s-* >/dev/null 2>&1 && exit 0; "
                    "sleep 0.5; done; exit 1" % (switched[:16], switched)).rc == 0, switched
    pg = "runuser -u postgres -- /usr/lib/postgresql/18/bin/"
    host.run("rm -rf %s" % RESTORE_DIR)
    try:
        restore = host.run("install -d -o postgres -m 700 {d} && runuser -u postgres -- pgbackrest --stanza=main "
                           "--pg1-path={d} --archive-mode=off restore".format(d=RESTORE_DIR))
        assert restore.rc == 0, restore.stdout + restore.stderr
        # Recovery refuses to start below the primary's values of these (hot standby's own check).
        settings = "".join("%s = %s\\n" % (name, psql(host, "18", "SHOW %s" % name)) for name in RECOVERY_SETTINGS)
        host.run("printf \"port = 5499\\nunix_socket_directories = '/tmp'\\n{s}\" > {d}/postgresql.conf && "
                 "printf 'local all all peer\\n' > {d}/pg_hba.conf && : > {d}/pg_ident.conf && "
                 "chown postgres: {d}/postgresql.conf {d}/pg_hba.conf {d}/pg_ident.conf".format(
                     d=RESTORE_DIR, s=settings))
        started = host.run("%spg_ctl -D %s -l %s/restore.log -w -t 120 start" % (pg, RESTORE_DIR, RESTORE_DIR))
        assert started.rc == 0, started.stdout + host.run("cat %s/restore.log" % RESTORE_DIR).stdout
        promoted = host.run("for i in $(seq 120); do [ \"$(%spsql -h /tmp -p 5499 -XAtq -d postgres -c 'SELECT "
                            "pg_is_in_recovery()')\" = f ] && exit 0; sleep 0.5; done; exit 1" % pg)
        assert promoted.rc == 0, host.run("cat %s/restore.log" % RESTORE_DIR).stdout
        restored = host.run("%spsql -h /tmp -p 5499 -XAtq -d app -c %s" % (pg, shlex.quote(WRITES_SQL)))
        assert restored.rc == 0, restored.stderr
        assert restored.stdout.strip() == live and int(live.split()[0]) > 100, (restored.stdout, live)
    finally:
        host.run("%spg_ctl -D %s -m immediate stop; rm -rf %s" % (pg, RESTORE_DIR, RESTORE_DIR))


def test_a_rollback_whose_backup_fails_serves_15_and_says_run_again(host):
    """The cutover back, then a backup that fails (a repository only the backup command is given, through
    pgBackRest's [global:backup] section, and cannot use): the play fails with pgBackRest's error and says to run
    it again, 15 serving. The next test is that re-run, once the repository is corrected: it takes the backup and
    records the rollback, without a second cutover back."""
    host.run("install -d -o root -m 755 /var/lib/pgbackrest-elsewhere && printf '\\n[global:backup]\\n"
             "repo1-path=/var/lib/pgbackrest-elsewhere\\n' >> /etc/pgbackrest/pgbackrest.conf")
    load_dir = ROLLBACK_LOAD_DIR + "-backup-failed"
    sh.start_load(PORT, load_dir, first_writer=21)
    rc, out, _recap = sh.playbook("rollback.yml")
    host.run("sleep 2")   # the writers write to 15 for a while
    report = sh.stop_and_verify(PORT, load_dir)[load_dir]
    said = " ".join(out.split())
    assert rc != 0 and "the full pgBackRest backup of stanza main failed" in said, out[-4000:]
    assert "then run the play again, which takes the backup" in said, out[-4000:]
    assert report["acknowledged"] > 100 and report["lost"] == 0 and report["duplicated"] == 0, report
    assert report["ok"] and report["server_version"].startswith("15"), report
    assert_serves(host, "15", "18")
    host.run("sed -i '/^\\[global:backup\\]$/,/^repo1-path=/d' /etc/pgbackrest/pgbackrest.conf")
    assert "global:backup" not in host.file("/etc/pgbackrest/pgbackrest.conf").content_string


def test_rollback_brings_15_main_back_on_5432_with_every_write(host):
    out = sh.rollback_under_load(host, PORT, ROLLBACK_LOAD_DIR, LOAD_DIR, "15")
    # a re-run after the cutover back (the test before): no second cutover back, the backup and the record only
    assert re.search(r"Cut clients back over to the old release on the production port\] \**\s*skipping", out), \
        out[-4000:]
    assert_serves(host, "15", "18")
    # the full backup of 15 after the cutover back, a task of its own: which stanza, then its label and duration
    label = backrest_info(host)["backup"][-1]["label"]
    said = " ".join(out.split())   # the messages as printed, however the callback wrapped them
    assert "A full backup of pgBackRest stanza main runs now" in said, out[-4000:]
    assert re.search(r"Full backup %s of pgBackRest stanza main in [0-9.]+ s" % label, said), out[-4000:]
    # pg_cron's jobs, paused on 15 at the cutover, are 15's again (and 18's paused)
    assert psql(host, "15", "SELECT bool_and(active) FROM cron.job") == "t"
    assert start_conf(host, "15") == ["auto"]
    assert start_conf(host, "18") == ["manual"]


def test_after_a_reboot_15_serves_and_18_stays_down(host):
    state, _seconds = sh.reboot(CONTAINER)
    assert state == "running", sh.failed_units(host)
    assert sh.wait_app_login(PORT).startswith("15")
    assert_serves(host, "15", "18")


def test_after_the_rollback_15_archives_into_the_stanza_again(host):
    """The rollback's cutover pointed pg1-path back at 15/main and upgraded the stanza to 15 again (a new db
    history entry: pgBackRest keeps 15, 18, 15), verified 15's archiving and took a full backup of 15."""
    info = backrest_info(host)
    assert [db["version"] for db in sorted(info["db"], key=lambda db: db["id"])] == ["15", "18", "15"], info["db"]
    assert info["backup"][-1]["database"]["id"] == max(db["id"] for db in info["db"]), info["backup"]
    switched = switch_wal(host, "15")
    check = host.run("runuser -u postgres -- pgbackrest --stanza=main check")
    assert check.rc == 0, check.stderr
    assert archived(host, switched), switched


def test_preflight_names_a_stanza_whose_repository_is_out_of_reach_and_changes_nothing(host):
    """A repository the instance owner cannot read (15 serving, archiving into it): the README's preflight
    (--tags preflight) fails with pgBackRest's own error and the check command to run, changing nothing; that
    command, run as printed once the repository is readable again, passes."""
    mode = host.run("stat -c %a /var/lib/pgbackrest").stdout.strip()
    host.run("chmod 000 /var/lib/pgbackrest")
    try:
        before = sh.snapshot(host, SNAPSHOT_ROOTS, UNITS)
        rc, out, _recap = sh.playbook("upgrade.yml", "--tags", "preflight")
        after = sh.snapshot(host, SNAPSHOT_ROOTS, UNITS)
    finally:
        host.run("chmod %s /var/lib/pgbackrest" % mode)
    said = " ".join(out.split())
    assert rc != 0, out[-4000:]
    printed = re.search(r"(runuser -u postgres -- \S*pgbackrest --config=\S+ --stanza=main check) fails: (.{0,200})",
                        said)
    assert printed and "ERROR" in printed.group(2), out[-4000:]
    assert "until that command passes, then run again" in said, out[-4000:]
    assert sh.differences(before, after) == []
    assert_serves(host, "15", "18")
    check = host.run(printed.group(1))
    assert check.rc == 0, check.stdout + check.stderr
