#!/usr/bin/env bash
# Calls lo_writer.op (tools/fleetdb_lo_writer.sql) with 1, 2, 3 ... on the production port until the file
# STOP exists or the server answers 'skipped' (the new release serves); appends each i answered 'done' (an
# acknowledged change) to ACK.  Usage: fleetdb_lo_writer.sh BIN_DIR DBNAME ACK STOP
bin=$1 db=$2 ack=$3 stop=$4
i=1
while [ ! -e "$stop" ]; do
  out=$(runuser -u postgres -- "$bin/psql" -h /var/run/postgresql -p 5432 -d "$db" -XAtq -c "SELECT lo_writer.op($i)" 2>/dev/null)
  [ "$out" = skipped ] && break
  [ "$out" = "done" ] && echo "$i" >> "$ack"
  i=$((i + 1))
  sleep 0.02
done
