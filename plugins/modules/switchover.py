#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: switchover
short_description: Cut clients over from the old server to the new one on the same port, in one call
version_added: "1.0.0"
description:
  - Runs steps 3 to 6 of the online upgrade inside one module call on the host, so that no
    Ansible round trip falls inside the time clients cannot write.
  - "Before the window: checks that the subscriptions have finished their initial copy, that the
    schemas of both servers match (DDL is not replicated), that no prepared transaction and no background
    worker of an extension runs on the old server (no fence can hold those back: each is named with its fix),
    opens every session the window uses, takes a checkpoint on both servers so their shutdowns are short,
    and configures the new server for the production port (it keeps running on its temporary port)."
  - "The window: the fence (pg_hba.conf rejects every login, superusers included, on the socket and on TCP,
    except the replication role on the Unix socket; the file is validated before the reload and a probe login
    as the administrator and as an application role must be rejected before the cutover goes on), client
    backends terminated; a marker row per database, waited for on the new server, then one check that no
    other transaction took an id meanwhile; every sequence's last_value and is_called copied; changed role
    passwords copied (never logged by the server); optionally row counts compared; the subscriptions
    disabled (their slots stay on the old server); both servers stopped; the proof; the new server started
    on the production port until its postmaster.pid says ready."
  - "The proof: once stopped, the old server's pg_control must show a clean shutdown and the very next
    transaction id the drain saw. When ids were taken after it, its WAL since the drain (pg_waldump of the old
    release) must show that each one wrote only the planner's statistics (pg_statistic, pg_statistic_ext_data,
    in-place updates of pg_class): what an autovacuum ANALYZE writes, which no fence stops. Anything else means
    something wrote past the fence: the new server is not started on the production port and the old server
    comes back unfenced with all its data."
  - If anything fails before the old server is stopped, the fence is lifted, replication resumes and
    the old server keeps serving. If the new server exits before it ever accepted clients, the old server is
    started again on the production port, unfenced, and replication resumes. A new server that may have
    accepted writes is never stopped or killed; the failure says what to do.
  - A guardian process lifts the fence if the module itself dies (SIGKILL, out of memory) before it stops the
    old server. Every session of the window has socket and statement timeouts (O(drain_timeout)).
  - The phase reached is kept in O(state_file); a re-run after an interruption continues, and a re-run
    after success changes nothing.
  - The old server keeps its data directory and binaries for rollback, its pg_hba.conf keeps the fence
    (so that an accidental start takes no writes) and it is configured to listen on O(old_port_after). The
    upgrade's slots are removed from its pg_replslot once the new server serves.
  - "WAL archiving: before the fence (clients still writing), an old server that archives switches its WAL
    segment and waits until its archiver pushed it (C(archive_drain)), so that its shutdown in the window has
    little left to push. After the window, the new server switches a segment and waits until it is archived
    without failure (C(archive_check)); with pgBackRest, the stanza's C(pg1-path) is first pointed at the new
    data directory and C(stanza-upgrade) run, and RV(archiving) says that a full backup is due. A failure there
    fails the module with the archiver's error and its fix while the new server keeps serving."
  - "O(state=backed_up), after the cutover: the full backup, in a call of its own since it grows with the data
    (run it with C(async) to see it progress). With pgBackRest, C(pgbackrest --type=full backup) of the stanza the
    serving server's C(archive_command) names, unless the stanza already holds a backup of its current database
    (the one C(stanza-upgrade) added at the cutover): a re-run after a failed or interrupted backup takes it, a
    re-run after success changes nothing. A server that archives no WAL through pgBackRest: nothing to do."
extends_documentation_fragment:
  - fleetdb.online_upgrade.engine
  - fleetdb.online_upgrade.instance.old
  - fleetdb.online_upgrade.instance.new
  - fleetdb.online_upgrade.pooler
options:
  state:
    description:
      - C(switched) runs the cutover.
      - C(unfenced) only lifts the fence that an interrupted cutover left on the running old server (the module
        died before stopping it, or the host rebooted), from the file the state file names, without connecting;
        O(new) is not needed. With O(pooler), it also RESUMEs the databases such a cutover left paused.
      - C(backed_up), once the cutover recorded in O(state_file) is done, takes the full backup of the server now
        serving (O(new)) that its WAL archiving through pgBackRest needs, with the same options as the cutover.
    type: str
    default: switched
    choices: [switched, unfenced, backed_up]
  databases:
    description:
      - Databases that are replicated, each with a subscription named O(subscription) on the new server.
    type: list
    elements: str
    required: true
  subscription:
    description:
      - Name of the subscription on the new server, and of its slot on the old server.
    type: str
    default: fleetdb_upgrade
  replication_user:
    description:
      - Role used by replication; the only role the fence still lets in, on the Unix socket only.
    type: str
    default: fleetdb_replicator
  old_port_after:
    description:
      - Port the old instance is configured to listen on after the cutover, should it ever be started again.
    type: int
    required: true
  drain_timeout:
    description:
      - Seconds to wait for the new server to apply the last changes. Past it the cutover is abandoned
        and the old server keeps serving. Also the statement and socket timeout of every session the window
        uses, so that a hung query cannot hang the window.
    type: int
    default: 30
  start_timeout:
    description:
      - Seconds to wait for the new server to be ready on the production port. A server still starting then is
        left running (it may accept writes any moment) and the module fails saying so; a re-run finishes.
    type: int
    default: 60
  verify_row_counts:
    description:
      - Compare row counts of every replicated table on both servers before the window, while clients write. The new
        server's subscription is paused, the old server is counted in a snapshot taken after that, and the
        transactions between the two points are decoded from a temporary copy of the upgrade's slot, so the
        comparison is exact. Its time grows with the data; the window's does not. A difference fails the module
        before the fence. Skipped in check mode (it pauses the subscription for the count).
    type: bool
    default: true
  max_lag_bytes:
    description:
      - Refuse to start the cutover when the new server is further behind than this (the drain would be long).
    type: int
    default: 67108864
  rollback_slot:
    description:
      - Create the publication and, inside the window, the logical slot C(fleetdb_rollback) on the new server,
        so that every write it accepts can be replayed to the old server by a rollback until finalize.
    type: bool
    default: true
  state_file:
    description:
      - File on the host recording the phase reached, for resuming and idempotence. A file C(failpoint) beside it
        that names a phase makes the module wait there until it is killed, or with a number of seconds after the
        phase, that long (for fault tests only).
    type: path
    default: /var/lib/fleetdb/online_upgrade/switchover.json
notes:
  - Supports check mode; it runs every check before the window and reports what would happen.
  - The client-visible window is reported in RV(window_seconds) and per phase in RV(phases).
author:
  - fleetdb contributors (@fleetdb)
"""

EXAMPLES = r"""
- name: Cut over to PostgreSQL 18 on port 5432
  fleetdb.online_upgrade.switchover:
    old:
      data_dir: /var/lib/fleetdb/postgresql/16/main
      bin_dir: /opt/fleetdb/postgresql/16/bin
      port: 5432
    new:
      data_dir: /var/lib/fleetdb/postgresql/18/main
      bin_dir: /opt/fleetdb/postgresql/18/bin
      port: 6432
    databases: [app]
    old_port_after: 5433
  register: cutover

- name: Show the client-visible window
  ansible.builtin.debug:
    msg: "clients waited {{ cutover.window_seconds }} s: {{ cutover.phases }}"
"""

RETURN = r"""
window_seconds:
  description: Time from raising the fence (with O(pooler), from the PAUSE) to the new server accepting connections
    on the production port (with O(pooler), to the RESUME).
  returned: when the cutover ran
  type: float
  sample: 0.31
phases:
  description: Seconds per phase - before the window C(prepare) (which includes C(vacuum), C(verify) with
    O(verify_row_counts), C(large_objects_copy), C(large_objects_rounds) and C(checkpoint), also reported alone), then
    C(pause) (with O(pooler)), C(fence), C(drain), C(large_objects), C(schema), C(sequences), C(roles), C(detach),
    C(stop), C(proof), C(start), C(resume) (with O(pooler)), and C(cleanup) after it; C(archive_drain) before the window
    and C(archive_check) after it when a server archives.
  returned: always
  type: dict
  sample: {"fence": 0.012, "drain": 0.004, "stop": 0.09, "start": 0.16}
phase_order:
  description: The phases of RV(phases) in the order they ran.
  returned: always
  type: list
  elements: str
  sample: ["prepare", "vacuum", "large_objects_copy", "verify", "checkpoint", "large_objects_rounds", "fence", "drain",
           "large_objects", "schema", "sequences", "roles", "detach"]
phase_started:
  description: When each phase of RV(phases) began, in seconds since the epoch on the host's clock (to set a
    client's stall beside the phase it fell in).
  returned: always
  type: dict
  sample: {"fence": 1764748800.125, "drain": 1764748800.137}
databases:
  description:
    - Per database, C(sequences) (how many the old server has), C(sequences_copied_before_fence) and
      C(sequences_copied) (set on the new server before the fence, and in the window - those that moved since),
      the tables verified and rows counted, and C(commits_listed_by) (the plugin that listed the commits since
      the slot's position for the row counts - V(test_decoding), or V(pgoutput) without contrib).
  returned: always
  type: dict
schema_in_window:
  description:
    - Per database, how the window's schema check ended - V(catalogs) when no row of the catalogs it reads
      changed since the full comparison before the fence, V(md5) when one did but each description's md5 was
      still the one that comparison gave, V(full) when one moved and it compared in full again.
  returned: when the window reached its schema check
  type: dict
  sample: {"app": "catalogs"}
pooler:
  description: With O(pooler), PgBouncer's version, the databases paused, and how long the PAUSE took.
  returned: when a pooler was given and the checks ran
  type: dict
  sample: {"version": "PgBouncer 1.18.0", "databases": ["app"], "pause_seconds": 0.004}
resumed:
  description: True when this run continued a cutover interrupted after the old server stopped.
  returned: when it applies
  type: bool
large_objects:
  description: The window's round of the large objects - C(carried), how many it copied again or unlinked on the new
    server, C(wal), the range of the old server's WAL it read (from the last round before the fence to the drain),
    and per database C(copied), every large object copied by the full round and all rounds since.
  returned: when the window reached it
  type: dict
  sample: {"carried": 3, "wal": ["0/5A0013C8", "0/5A0A2F10"], "databases": {"app": {"copied": 1042}}}
proof:
  description: What the stopped old server's pg_control showed against the drain (next transaction ids), and
    C(statistics_xids), the ids past the drain its WAL showed writing statistics only (autovacuum ANALYZE), and
    C(large_objects), the C(carried) and C(wal) of RV(large_objects).
  returned: when the cutover reached the proof
  type: dict
rescue:
  description: What was done after a failure once the old server had been told to stop.
  returned: on such a failure
  type: str
archiving:
  description:
    - C(old_drained), the old server's segment switched and archived before the fence; C(new), the new server's
      after the window (each with C(segment), C(seconds) and pg_stat_archiver's counters), or V(archives nothing);
      C(pgbackrest) with its C(stanza), C(config), C(pg1_path_changed) and C(backup_due) (a full backup is due,
      O(state=backed_up) takes it).
  returned: when a server archives
  type: dict
  sample: {"new": {"segment": "000000010000000000000007", "seconds": 0.41}, "pgbackrest": {"stanza": "main",
           "backup_due": true}}
wal_receivers:
  description:
    - The WAL receivers (pg_receivewal, barman's streaming archiver) that streamed from the old server, each with
      its C(application_name), C(client_addr), C(slot) (made on the new server before it took clients), C(tool)
      and C(next), what to do with it now that the new server serves.
  returned: when a WAL receiver streamed from the old server
  type: list
  elements: dict
  sample: [{"application_name": "pg_receivewal", "client_addr": "local", "slot": "wal_archive", "tool": "pg_receivewal",
            "next": "pg_receivewal (from local, slot wal_archive): ..."}]
stanza:
  description: With O(state=backed_up), the pgBackRest stanza the serving server archives into.
  returned: when it archives through pgBackRest
  type: str
  sample: main
backup:
  description: With O(state=backed_up), the stanza's backup of the serving server - the one taken, or the one it
    already held - with its C(label) and C(seconds); none in check mode when one is due.
  returned: when it archives through pgBackRest
  type: dict
  sample: {"label": "20261207-024501F", "seconds": 6.2}
aborted_because:
  description: Why the cutover was abandoned before the old server stopped (the old server keeps serving).
  returned: on failure before the old server stopped
  type: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.args import instance_suboptions, pooler_options, spec_from
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import DatabaseError, OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.engines import engine_option, get_engine


def main():
    module = AnsibleModule(
        argument_spec=dict(
            engine=engine_option(),
            old=dict(type="dict", required=True, options=instance_suboptions()),
            new=dict(type="dict", options=instance_suboptions()),
            state=dict(type="str", default="switched", choices=["switched", "unfenced", "backed_up"]),
            databases=dict(type="list", elements="str", required=True),
            subscription=dict(type="str", default="fleetdb_upgrade"),
            replication_user=dict(type="str", default="fleetdb_replicator"),
            old_port_after=dict(type="int", required=True),
            drain_timeout=dict(type="int", default=30),
            start_timeout=dict(type="int", default=60),
            verify_row_counts=dict(type="bool", default=True),
            max_lag_bytes=dict(type="int", default=64 * 1024 * 1024),
            state_file=dict(type="path", default="/var/lib/fleetdb/online_upgrade/switchover.json"),
            rollback_slot=dict(type="bool", default=True),
            pooler=dict(type="dict", options=pooler_options()),
        ),
        required_if=[("state", "switched", ["new"]), ("state", "backed_up", ["new"])],
        supports_check_mode=True,
    )
    p = module.params
    engine = get_engine(p["engine"])
    old = spec_from(p["old"])
    if p["state"] == "unfenced":
        unfencing = engine.switchover(
            module, old, old, p["databases"], subscription=p["subscription"], replication_user=p["replication_user"],
            production_port=old.port, temporary_port=None,
            old_port_after=p["old_port_after"], state_file=p["state_file"], pooler=engine.pooler(p["pooler"]))
        module.exit_json(**unfencing.unfence())
    new = spec_from(p["new"])
    if old.port == new.port:
        module.fail_json(msg="old.port and new.port are both %d: the new server must run on a temporary port "
                             "until the cutover. Fix: start it with fleetdb.online_upgrade.server port=<free port>"
                             % old.port)
    if p["old_port_after"] == old.port:
        module.fail_json(msg="old_port_after must differ from the production port %d. Fix: choose a free port"
                             % old.port)
    switchover = engine.switchover(
        module, old, new, p["databases"], subscription=p["subscription"], replication_user=p["replication_user"],
        production_port=old.port, temporary_port=new.port, old_port_after=p["old_port_after"],
        drain_timeout=p["drain_timeout"], start_timeout=p["start_timeout"],
        verify_row_counts=p["verify_row_counts"], state_file=p["state_file"], max_lag_bytes=p["max_lag_bytes"],
        rollback_slot=p["rollback_slot"], pooler=engine.pooler(p["pooler"]))
    try:
        result = switchover.back_up() if p["state"] == "backed_up" else switchover.run()
    except Exception as exc:  # pylint: disable=broad-except  # the report says what state the servers are in
        if isinstance(exc, OperationError):
            failure = exc.as_result()
        elif isinstance(exc, DatabaseError):
            failure = dict(msg="database error during the cutover: %s" % exc)
        else:
            failure = dict(msg="unexpected %s during the cutover: %s" % (type(exc).__name__, exc),
                           exception=traceback.format_exc())
        failure.update(phases=switchover.report.get("phases"), databases=switchover.report.get("databases"),
                       aborted_because=switchover.report.get("aborted_because"),
                       rescue=switchover.report.get("rescue"), archiving=switchover.report.get("archiving"))
        module.fail_json(**failure)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
