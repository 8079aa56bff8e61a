#!/usr/bin/env bash
# make demo: a containerized PostgreSQL 16 host with sample data and four live writers is
# upgraded to 18 on the same port by playbooks/upgrade.yml; then the proof and the figures.
# Environment: DEMO_ROWS (default 1000000), DEMO_PORT (default 25432).
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
name=fleetdb-demo
port="${DEMO_PORT:-25432}"
rows="${DEMO_ROWS:-1000000}"
work="$FLEETDB_ROOT/.cache/demo"
export PATH="$FLEETDB_ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$FLEETDB_ROOT/ansible.cfg" PGPASSWORD=demo-app-pw
tarball() { find "$FLEETDB_CACHE/dist" -name "postgresql-$1.*.tar.gz" | sort | tail -1; }
pg16="$(tarball 16)"; pg18="$(tarball 18)"
[[ -n "$pg16" && -n "$pg18" ]] || die "PostgreSQL 16 and 18 tarballs missing: run make setup"

log "starting the host $name (PostgreSQL clients reach it on 127.0.0.1:$port)"
docker rm -f "$name" >/dev/null 2>&1 || true
docker run -d --name "$name" --hostname "$name" -p "127.0.0.1:$port:5432" --shm-size 256m \
  --label fleetdb-test=1 fleetdb-test/pghost:latest >/dev/null
rm -rf "$work" && mkdir -p "$work"
echo "$name ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3" > "$work/inventory"
cat > "$work/vars.yml" <<VARS
fleetdb_proof: $FLEETDB_ROOT/tools/fleetdb_proof.py
fleetdb_load_dir: $work/load
fleetdb_client_port: $port
fleetdb_app_password: $PGPASSWORD
fleetdb_rows: $rows
pg16_tarball: $pg16
online_upgrade_old_version: "16"
online_upgrade_new_version: "18"
online_upgrade_databases: [app]
online_upgrade_archive_src: $pg18
online_upgrade_archive_checksum: sha256:$(sha256sum "$pg18" | cut -d' ' -f1)
online_upgrade_replication_password: demo-replication-pw
VARS

log "PostgreSQL 16 with $rows rows, and four writers started"
ansible-playbook -i "$work/inventory" -e "@$work/vars.yml" molecule/default/prepare.yml >"$work/prepare.log" \
  || { tail -30 "$work/prepare.log"; die "preparing the host failed (log: $work/prepare.log)"; }
before="$(docker exec -u postgres "$name" /opt/fleetdb/postgresql/16/bin/psql -h /var/run/postgresql -XAtc 'SHOW server_version')"
sleep 3

log "ansible-playbook playbooks/upgrade.yml (log: $work/upgrade.log)"
started=$(date +%s.%N)
# The progress of the copy and catch-up (the fleetdb.online_upgrade.progress callback) as it comes.
ansible-playbook -i "$work/inventory" -e "@$work/vars.yml" -e online_upgrade_progress_interval=5 playbooks/upgrade.yml \
  | tee "$work/upgrade.log" | { grep --line-buffered '^fleetdb progress' || true; } \
  || { tail -40 "$work/upgrade.log"; python3 tools/fleetdb_proof.py --port "$port" stop --log-dir "$work/load"; die "the upgrade failed"; }
finished=$(date +%s.%N)
sleep 3
python3 tools/fleetdb_proof.py --port "$port" stop --log-dir "$work/load"
python3 tools/fleetdb_proof.py --port "$port" verify --log-dir "$work/load" --json >"$work/proof.json" || true
docker exec "$name" cat /var/lib/fleetdb/online_upgrade/switchover.json >"$work/switchover.json"
docker exec -u postgres "$name" /opt/fleetdb/postgresql/18/bin/psql -h /var/run/postgresql -d app -XAtc \
  "SELECT count(*) FROM app.events" >"$work/rows"

python3 - "$work" "$before" "$started" "$finished" <<'PY'
import json, os, sys
work, before, started, finished = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
proof = json.load(open(os.path.join(work, "proof.json")))
state = json.load(open(os.path.join(work, "switchover.json")))
rows = open(os.path.join(work, "rows")).read().strip()
order = ["fence", "drain", "schema", "sequences", "roles", "verify", "detach", "stop", "configure_old_port", "start"]
timings = state.get("phases", {})
phases = ", ".join("%s %.0f ms" % (k, timings[k] * 1000) for k in order if k in timings)
print()
print("  version           PostgreSQL %s -> %s, same port" % (before, proof["server_version"]))
print("  rows              %s in app.events (plus orders, lines, customers)" % rows)
print("  upgrade           %.0f s for the whole playbook" % (finished - started))
print("  writes            %d acknowledged by 4 writers (%.0f/s), %d lost, %d duplicated"
      % (proof["acknowledged"], proof["tps"], proof["lost"], proof["duplicated"]))
print("  longest gap       %.3f s between two acknowledged writes of one client (%d failed attempts, retried)"
      % (proof["longest_gap_s"], proof["failed_attempts"]))
print("  cutover window    %.3f s: %s" % (state.get("window_seconds", 0), phases))
print("  proof             %s" % ("OK: every acknowledged write is on the new server exactly once" if proof["ok"]
                                  else "FAILED: %s" % proof))
sys.exit(0 if proof["ok"] else 1)
PY
echo
echo "The host is still running: psql -h 127.0.0.1 -p $port -U app app (password $PGPASSWORD);"
echo "remove it with: docker rm -f $name"
