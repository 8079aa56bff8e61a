"""Ten hosts upgraded in waves through ansible-runner, as AWX and CI systems run playbooks.

Ten PostgreSQL 16 hosts (molecule/fleet/prepare.yml: a few MB each, one writer per host on the controller)
are upgraded to 18 by `ansible-runner run` of playbooks/upgrade.yml with a private data directory: the
inventory, env/extravars (serial [1, 3, 6], max_fail_percentage), env/envvars, and the replication password
in an Ansible Vault file whose password the runner types at the prompt (env/passwords). Two hosts are unfit:
fleet04 fails preflight (a table without a key), fleet07 fails in the middle of its copy (its new server
killed). Then:

  run 1  max_fail_percentage 20: wave 2 loses fleet04 (1 of 3), the play stops (fleet02 and fleet03 with it,
         after their preflight), wave 3 is never touched;
  run 2  max_fail_percentage 40: the waves go on, fleet04 and fleet07 fail alone;
  run 3  the causes fixed, --limit fleet04,fleet07 finishes them.

Checked: the runner's artifacts (status, rc, job events), every host's writers (nothing lost, on 18),
the unfit hosts' old servers serving while they failed, no secret in any artifact, and the summary the
playbook writes (per host and per wave), from which tools/fleetdb_waves.py plans a 500-host fleet.
The summary (with the controller's peak memory at 6 forks) is kept in .cache/fleet/summary.json for
`make bench`.
"""
import glob
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from conftest import BIN, ROOT, ansible_env, remove_host, start_host

HOSTS = ["fleet%02d" % i for i in range(1, 11)]
PORT = 25400  # fleetNN publishes its 5432 on 127.0.0.1:PORT+NN
UNFIT_PREFLIGHT, UNFIT_COPY = "fleet04", "fleet07"
REPLICATION_PASSWORD = "repl-fleet-secret-4711"
VAULT_PASSWORD = "vault-fleet-secret-0815"
APP_PASSWORD = "app-fleet-pw"
PSQL16 = "runuser -u postgres -- /opt/fleetdb/postgresql/16/bin/psql -h /var/run/postgresql -p 5432 -XAtq -d app -c "
# On fleet07: once the upgrade's slot exists on 16 (its copy has begun), kill -9 the new server, once.
KILL_NEW_DURING_COPY = """for i in $(seq 12000); do
  if [ -f /var/lib/fleetdb/postgresql/18/main/postmaster.pid ] &&
     %s "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'fleetdb_upgrade'" | grep -q 1; then
    kill -9 "$(head -1 /var/lib/fleetdb/postgresql/18/main/postmaster.pid)"; echo killed > /srv/killed; exit 0
  fi
  sleep 0.05
done
""" % PSQL16


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, pg_dists):
    tmp = tmp_path_factory.mktemp("fleet")
    names = dict((name, name) for name in HOSTS)
    hosts = {}
    try:
        for name in HOSTS:
            hosts[name] = start_host(name, ["-p", "127.0.0.1:%d:5432" % (PORT + int(name[-2:]))])
            names[name] = hosts[name].name
        inventory = tmp / "hosts.ini"
        lines = ["[fleet]"]
        for name in HOSTS:
            lines.append("%s ansible_host=%s fleetdb_client_port=%d fleetdb_load_dir=%s/load-%s%s" % (
                name, names[name], PORT + int(name[-2:]), tmp, name,
                " fleetdb_unfit_table=app.audit_trail" if name == UNFIT_PREFLIGHT else ""))
        lines += ["", "[fleet:vars]", "ansible_connection=community.docker.docker",
                  "ansible_python_interpreter=/usr/bin/python3"]
        inventory.write_text("\n".join(lines) + "\n")
        prepare_vars = dict(fleetdb_proof=os.path.join(ROOT, "tools", "fleetdb_proof.py"),
                            fleetdb_app_password=APP_PASSWORD, fleetdb_rows=20000, fleetdb_writers=1,
                            fleetdb_write_rate=20, pg16_tarball=pg_dists["16"])
        env = ansible_env()
        env.update(ANSIBLE_STDOUT_CALLBACK="default")
        proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(inventory), "-f", "10",
                               "-e", json.dumps(prepare_vars), os.path.join(ROOT, "molecule", "fleet", "prepare.yml")],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200, check=False)
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
        yield dict(hosts=hosts, inventory=inventory, tmp=tmp)
    finally:
        for name in HOSTS:
            proof(name, tmp, "stop", check=False)
        for host in hosts.values():
            remove_host(host)


def proof(name, tmp, *args, check=True):
    argv = ["python3", os.path.join(ROOT, "tools", "fleetdb_proof.py"), "--port", str(PORT + int(name[-2:]))]
    argv += list(args) + ["--log-dir", "%s/load-%s" % (tmp, name)]
    proc = subprocess.run(argv, env=dict(os.environ, PGPASSWORD=APP_PASSWORD), capture_output=True, text=True,
                          timeout=120, check=False)
    if check:
        assert proc.returncode == 0 or args[0] == "verify", proc.stderr
    return proc


def serving(host):
    """The version that answers on the production port."""
    return host.run(PSQL16 + "'SHOW server_version'").stdout.strip()


class Runner:
    """One private data directory for ansible-runner, as a CI system or AWX lays it out."""

    def __init__(self, tmp, inventory):
        self.dir = tmp / "runner"
        (self.dir / "env").mkdir(parents=True)
        (self.dir / "inventory").mkdir()
        shutil.copy(str(inventory), str(self.dir / "inventory" / "hosts"))
        vault_pass = tmp / "vault-pass"
        vault_pass.write_text(VAULT_PASSWORD + "\n")
        vault = tmp / "vault.yml"
        vault.write_text("online_upgrade_replication_password: %s\n" % REPLICATION_PASSWORD)
        subprocess.run([os.path.join(BIN, "ansible-vault"), "encrypt", "--vault-password-file", str(vault_pass),
                        str(vault)], check=True, capture_output=True)
        vault_pass.unlink()  # the runner types it at the prompt; no file holds it
        self.vault = vault
        self.reports = tmp / "reports"
        self.envvars = dict(ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
                            ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        (self.dir / "env" / "envvars").write_text(json.dumps(self.envvars))
        (self.dir / "env" / "passwords").write_text(json.dumps({"^Vault password:\\s*?$": VAULT_PASSWORD}))
        dists = sorted(glob.glob(os.path.join(os.environ.get("FLEETDB_CACHE", "/var/cache/fleetdb-online-upgrade"),
                                              "dist", "postgresql-18.*.tar.gz")))
        with open(dists[-1], "rb") as handle:
            import hashlib
            checksum = "sha256:" + hashlib.sha256(handle.read()).hexdigest()
        self.extravars = dict(online_upgrade_old_version="16", online_upgrade_new_version="18",
                              online_upgrade_databases=["app"], online_upgrade_archive_src=dists[-1],
                              online_upgrade_archive_checksum=checksum, online_upgrade_sync_timeout=600,
                              online_upgrade_serial=[1, 3, 6], online_upgrade_report_dir=str(self.reports))

    def run(self, ident, max_fail_percentage, limit=None, sample=None):
        extravars = dict(self.extravars, online_upgrade_max_fail_percentage=max_fail_percentage)
        (self.dir / "env" / "extravars").write_text(json.dumps(extravars))
        (self.dir / "env" / "cmdline").write_text("-e @%s --ask-vault-pass" % self.vault)
        argv = [os.path.join(BIN, "ansible-runner"), "run", str(self.dir), "--project-dir", ROOT,
                "-p", "playbooks/upgrade.yml", "--ident", ident, "--forks", "6"]
        argv += ["--limit", limit] if limit else []
        env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                cwd=str(self.dir))
        peak = sample_memory(proc, sample) if sample is not None else None
        output = proc.communicate(timeout=2400)[0]
        artifacts = self.dir / "artifacts" / ident
        events = [json.loads(p.read_text()) for p in sorted((artifacts / "job_events").glob("*.json"))]
        return dict(rc=int((artifacts / "rc").read_text()), status=(artifacts / "status").read_text().strip(),
                    events=events, output=output, artifacts=artifacts, runner_rc=proc.returncode, peak=peak)


def sample_memory(proc, into):
    """Peak resident memory of the controller's ansible-playbook processes (the main one and its forks)."""
    def sample():
        while proc.poll() is None:
            total = 0
            for status in glob.glob("/proc/[0-9]*/status"):
                try:
                    with open(status.replace("status", "cmdline"), "rb") as handle:
                        if b"ansible-playbook" not in handle.read():
                            continue
                    with open(status) as handle:
                        total += next(int(l.split()[1]) * 1024 for l in handle if l.startswith("VmRSS:"))
                except (OSError, StopIteration):
                    continue
            into["peak_rss_bytes"] = max(into.get("peak_rss_bytes", 0), total)
            time.sleep(0.5)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return into


def failed_hosts(run):
    stats = next(e for e in reversed(run["events"]) if e.get("event") == "playbook_on_stats")["event_data"]
    return sorted(set(stats.get("failures", {})) | set(stats.get("dark", {}))), stats


def test_ten_hosts_in_waves_through_ansible_runner(fleet):
    hosts, tmp = fleet["hosts"], fleet["tmp"]
    runner = Runner(tmp, fleet["inventory"])
    hosts[UNFIT_COPY].write_file("/srv/kill-new.sh", KILL_NEW_DURING_COPY)
    hosts[UNFIT_COPY].check("nohup bash /srv/kill-new.sh > /dev/null 2>&1 &")

    # run 1: wave 2 loses fleet04, a third of it, above max_fail_percentage 20: the play stops there
    first = runner.run("run1-stops", 20)
    assert first["status"] == "failed" and first["rc"] != 0, first["output"][-3000:]
    assert failed_hosts(first)[0] == [UNFIT_PREFLIGHT], failed_hosts(first)
    assert "online_upgrade_replication_password" not in first["output"]
    assert serving(hosts["fleet01"]).startswith("18")
    # Ansible stops the whole wave at the task where the limit is passed: fleet02 and fleet03 stop after their
    # own preflight (which passed), having changed nothing; wave 3 never began
    for name in HOSTS[1:]:
        assert serving(hosts[name]).startswith("16"), name
        assert hosts[name].run("test -e /opt/fleetdb/postgresql/18").returncode != 0, name

    # run 2: max_fail_percentage 40: both unfit hosts fail alone, the other waves go on
    controller = {}
    second = runner.run("run2-continues", 40, sample=controller)
    failed, stats = failed_hosts(second)
    assert failed == [UNFIT_PREFLIGHT, UNFIT_COPY], (failed, second["output"][-4000:])
    assert second["status"] == "failed", second["status"]
    assert hosts[UNFIT_COPY].run("cat /srv/killed").stdout.strip() == "killed", "the copy of fleet07 was not hit"
    assert serving(hosts[UNFIT_COPY]).startswith("16") and serving(hosts[UNFIT_PREFLIGHT]).startswith("16")
    for name in set(HOSTS) - {UNFIT_PREFLIGHT, UNFIT_COPY}:
        assert serving(hosts[name]).startswith("18"), name
    # the host upgraded by run 1 was found done: nothing changed on it
    assert stats["changed"].get("fleet01", 0) == 0, stats["changed"]
    summary = json.loads((runner.reports / "summary.json").read_text())
    unfinished = sorted(h["host"] for h in summary["hosts"] if not h["ok"])
    assert unfinished == [UNFIT_PREFLIGHT, UNFIT_COPY] and summary["ok"] == 8, summary["hosts"]
    # run 1 upgraded wave 1; run 2 the two others (fleet01 was found done there and kept run 1's report)
    assert [w["hosts"] for w in summary["waves"]] == [HOSTS[:1], HOSTS[1:4], HOSTS[4:]], summary["waves"]
    assert [w["failed"] for w in summary["waves"]] == [0, 1, 1] and all(w["duration_s"] > 0 for w in summary["waves"])
    reasons = dict((e["event_data"]["host"], e["event_data"]["res"].get("msg", ""))
                   for e in second["events"] if e.get("event") == "runner_on_failed"
                   and not e["event_data"].get("ignore_errors"))
    assert "app.audit_trail" in reasons[UNFIT_PREFLIGHT], reasons

    # run 3: the causes fixed (a key; fleet07's killer was one-shot), --limit on the failed hosts finishes them
    hosts[UNFIT_PREFLIGHT].check(PSQL16 + "'ALTER TABLE app.audit_trail ADD COLUMN id bigserial PRIMARY KEY'")
    third = runner.run("run3-limit", 40, limit="%s,%s" % (UNFIT_PREFLIGHT, UNFIT_COPY))
    assert third["status"] == "successful" and third["rc"] == 0, third["output"][-4000:]
    assert sorted(e["event_data"]["host"] for e in third["events"] if e.get("event") == "runner_on_ok"
                  and e["event_data"].get("task") == "Check the new server serves the production port") == \
        [UNFIT_PREFLIGHT, UNFIT_COPY]

    # every host's writers: nothing lost, on 18
    for name in HOSTS:
        proof(name, tmp, "stop")
        report = json.loads(proof(name, tmp, "verify", "--json").stdout)
        assert report["ok"] and report["lost"] == 0 and report["server_version"].startswith("18"), (name, report)

    # no secret in any artifact: stdout, job events, the command line
    for path in runner.dir.joinpath("artifacts").rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            for secret in (REPLICATION_PASSWORD, VAULT_PASSWORD):
                assert secret not in text, "%s holds a secret" % path

    # the summary: ten hosts, each with its timings; the waves of run 2
    summary = json.loads((runner.reports / "summary.json").read_text())
    by_host = dict((h["host"], h) for h in summary["hosts"])
    assert sorted(by_host) == HOSTS and summary["ok"] == 10, summary["failed"]
    for name, host in by_host.items():
        assert host["timings"]["total"] > 0 and host["size_bytes"] > 0, (name, host)
        # Each first cutover's schema check in the window read md5s only (nothing moved since the full check).
        report = json.loads((runner.reports / "hosts" / ("%s.json" % name)).read_text())
        assert report["schema_in_window"] == {"app": "catalogs"}, (name, report)
    assert all(k in by_host[UNFIT_COPY]["timings"] for k in ("install", "copy", "catch_up", "cutover", "window"))
    assert summary["model"]["copy_bytes_per_s"] > 0 and summary["model"]["window_s"] < 5, summary["model"]
    summary["controller"] = dict(forks=6, peak_rss_bytes=controller.get("peak_rss_bytes"))
    keep = os.path.join(ROOT, ".cache", "fleet")
    os.makedirs(keep, exist_ok=True)
    with open(os.path.join(keep, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1, sort_keys=True)
    planned = subprocess.run(["python3", os.path.join(ROOT, "tools", "fleetdb_waves.py"), "plan", "--summary",
                              os.path.join(keep, "summary.json"), "--fleet", "400x20GB,90x200GB,10x1TB"],
                             capture_output=True, text=True, check=False)
    assert planned.returncode == 0 and "500 hosts in" in planned.stdout, planned.stderr
    print(planned.stdout)
