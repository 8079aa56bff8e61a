"""Start a playbook, then kill it as a crash of the controller would while a process runs on the host.

    kill_during.py --container C --process pg_basebackup [--freeze] --record kills.jsonl -- ansible-playbook ...

Polls the container (docker exec) for the process; once seen (and with --freeze, stopped with SIGSTOP, so that
the kill lands before it ends), kills the playbook's process group and every Ansible module on the host
(what the module started, the process included, keeps running: with --freeze it is continued). Appends
what it saw - the process, the physical copy's recorded step, the replication slots - to the record file,
for the verifier.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

STATE_FILE = "/var/lib/fleetdb/online_upgrade/physical_copy.json"
PSQL = ["runuser", "-u", "postgres", "--", "/opt/fleetdb/postgresql/16/bin/psql", "-h", "/var/run/postgresql",
        "-XAtq", "-c"]


def docker(container, *argv):
    return subprocess.run(["docker", "exec", container] + list(argv), capture_output=True, text=True, check=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--container", required=True)
    parser.add_argument("--process", required=True, help="exact process name, as pgrep -x matches it")
    parser.add_argument("--freeze", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--record", required=True)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("playbook", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.playbook[1:] if args.playbook[:1] == ["--"] else args.playbook
    log_path = "%s.%s.log" % (os.path.splitext(args.record)[0], args.process)
    # Without pipelining, the module runs from its file (AnsiballZ_<module>.py): pkill finds it by that name.
    env = dict(os.environ, ANSIBLE_PIPELINING="False")
    with open(log_path, "w") as log:
        run = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                               stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    seen = "pkill -STOP -x %s" % args.process if args.freeze else "pgrep -x %s" % args.process
    deadline = time.monotonic() + args.timeout
    while docker(args.container, "sh", "-c", seen).returncode != 0:
        if run.poll() is not None or time.monotonic() > deadline:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
            with open(log_path) as log:
                sys.exit("the playbook %s before %s ran on %s:\n%s" % (
                    "ended (rc %d)" % run.returncode if run.returncode > 0 else "was still running",
                    args.process, args.container, log.read()[-6000:]))
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # the controller, with its workers
    run.wait()
    docker(args.container, "pkill", "-9", "-f", "AnsiballZ_")
    while docker(args.container, "pgrep", "-f", "AnsiballZ_").returncode == 0:
        time.sleep(0.2)
    if args.freeze:
        docker(args.container, "pkill", "-CONT", "-x", args.process)
    state = docker(args.container, "cat", STATE_FILE).stdout
    seen = dict(process=args.process, step=json.loads(state or "{}").get("phase"),
                slots=docker(args.container, *PSQL + ["SELECT string_agg(slot_name, ',' ORDER BY 1) "
                                                      "FROM pg_replication_slots"]).stdout.strip(),
                still_running=docker(args.container, "pgrep", "-x", args.process).returncode == 0)
    with open(args.record, "a") as record:
        record.write(json.dumps(seen, sort_keys=True) + "\n")
    print(json.dumps(seen, sort_keys=True))


if __name__ == "__main__":
    main()
