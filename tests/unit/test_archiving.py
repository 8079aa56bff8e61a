"""WAL archiving and pgBackRest: what is read from archive_command, versions, the stanza's pg1-path, and the
archiver's wait (on a scripted pg_stat_archiver)."""

import pytest

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import archiving, pgbackrest
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade import preflight_archiving
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight import Findings, PostgresPreflight
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.preflight_standbys import LOGICAL_REPLICAS_SQL, STANDBYS_SQL


def test_pgbackrest_is_recognised_in_archive_command():
    assert pgbackrest.from_archive_command("pgbackrest --stanza=main archive-push %p") == dict(
        stanza="main", config=None, binary="pgbackrest")
    assert pgbackrest.from_archive_command(
        "/usr/bin/pgbackrest --config /etc/pgbackrest/site.conf --stanza db1 archive-push '%p'") == dict(
        stanza="db1", config="/etc/pgbackrest/site.conf", binary="/usr/bin/pgbackrest")
    assert pgbackrest.from_archive_command("pgbackrest archive-push %p")["stanza"] is None
    assert pgbackrest.from_archive_command("cp %p /archive/%f") is None
    assert pgbackrest.from_archive_command("wal-g wal-push %p") is None
    assert pgbackrest.from_archive_command("") is None


def test_pgbackrest_backs_up_18_from_2_57_on():
    # 2.55.0 announced PostgreSQL 18 with its beta catalog number; 2.57.0 carries the release's.
    assert pgbackrest.supports("2.45", 18) is False
    assert pgbackrest.supports("2.56.0", 18) is False
    assert pgbackrest.supports("2.57.0", 18) is True
    assert pgbackrest.supports("2.60.0", 18) is True
    assert pgbackrest.supports("2.45", 15) is True
    assert pgbackrest.supports(None, 18) is None


def test_the_stanza_pg1_path_is_set_in_its_own_section_only():
    text = "[global]\nrepo1-path=/var/lib/pgbackrest\n\n[other]\npg1-path=/srv/x\n\n[main]\npg1-path=/var/lib/postgresql/15/main\n"
    changed = pgbackrest._set_section_value(text, "main", "pg1-path", "/var/lib/postgresql/18/main")
    assert pgbackrest._section_value(changed, "main", "pg1-path") == "/var/lib/postgresql/18/main"
    assert pgbackrest._section_value(changed, "other", "pg1-path") == "/srv/x"
    assert pgbackrest._set_section_value(text, "absent", "pg1-path", "/x") is None


class _Rows:
    def __init__(self, rows):
        self.rows = rows


class _Archiver:
    """pg_stat_archiver that archives the switched segment after ``pushes_after`` reads, or never."""

    def __init__(self, settings, pushes_after=None):
        self.settings = settings
        self.pushes_after = pushes_after
        self.reads = 0

    def query(self, sql, params=()):
        if sql is archiving.SETTINGS_SQL:
            return _Rows([self.settings])
        self.reads += 1
        archived = self.pushes_after is not None and self.reads > self.pushes_after
        last = "000000010000000000000005" if archived else "000000010000000000000004"
        return _Rows([(last, 4 + archived, "000000010000000000000005", 3 + self.reads, "2026-12-07 02:00:00 UTC")])

    def scalar(self, sql, params=()):
        assert sql == archiving.SWITCH_SQL
        return "000000010000000000000005"


def test_archiving_settings():
    assert archiving.settings(_Archiver(("off", "cp %p /a/%f", "", "f"))) is None
    assert archiving.settings(_Archiver(("on", "", "", "f"))) is None   # paused by its DBA
    assert archiving.settings(_Archiver(("on", "cp %p /a/%f", "", "t"))) is None   # a standby
    assert archiving.settings(_Archiver(("always", "cp %p /a/%f", "", "t")))["mode"] == "always"
    assert archiving.settings(_Archiver(("on", "", "basic_archive", "f")))["library"] == "basic_archive"


def test_switch_and_wait_returns_once_the_segment_is_archived():
    done = archiving.switch_and_wait(_Archiver(None, pushes_after=2), "the new server", None, "fix it")
    assert done["segment"] == "000000010000000000000005" and done["last_archived_wal"] == done["segment"]


def test_switch_and_wait_names_the_archivers_last_failure(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("LOG:  checkpoint complete\nERROR: [045]: PostgreSQL version 18 does not match stanza version 15\n"
                   "LOG:  archive command failed with exit code 58\n")
    with pytest.raises(OperationError) as failure:
        archiving.switch_and_wait(_Archiver(None), "the new server", str(log), "fix it", timeout=0.3)
    msg = failure.value.as_result()["msg"]
    assert "did not archive WAL segment 000000010000000000000005" in msg
    assert "the last for 000000010000000000000005 at 2026-12-07 02:00:00 UTC" in msg
    assert "archive command failed with exit code 58" in msg and "does not match stanza version 15" in msg
    assert "checkpoint complete" not in msg and msg.endswith("Fix: fix it")


def test_switch_and_wait_ends_when_the_archiver_gives_up_a_round_of_tries():
    """Three failures during the wait: the archiver waits a minute before trying again; the wait does not."""
    archiver = _Archiver(None)
    with pytest.raises(OperationError) as failure:
        archiving.switch_and_wait(archiver, "the new server", None, "fix it", timeout=3600)
    assert "did not archive WAL segment 000000010000000000000005 (its archiver gave up a round of tries)" in \
        failure.value.as_result()["msg"]
    assert archiver.reads == 1 + archiving.GIVEN_UP_AFTER_FAILURES


class _Preflight(preflight_archiving.ArchivingChecks):
    def __init__(self, new_major):
        self.module = None
        self.old = type("Spec", (), dict(owner="postgres", data_dir="/var/lib/postgresql/15/main"))()
        self.new_major = new_major
        self.findings = Findings()
        self.facts = {}


def test_preflight_refuses_a_pgbackrest_that_does_not_know_the_new_major(monkeypatch):
    monkeypatch.setattr(pgbackrest.PgBackRest, "version", lambda self: "2.45")
    monkeypatch.setattr(pgbackrest.PgBackRest, "check", lambda self: None)
    monkeypatch.setattr(pgbackrest.PgBackRest, "pg_path", lambda self: "/var/lib/postgresql/15/main")
    check = _Preflight((18,))
    check._archiving(_Archiver(("on", "pgbackrest --stanza=main archive-push %p", "", "f")))
    assert [p["msg"] for p in check.findings.problems] == [
        "pgBackRest 2.45 cannot back up PostgreSQL 18: the new server would archive nothing and stanza-upgrade "
        "would fail"]
    assert "install pgBackRest 2.57 or later" in check.findings.problems[0]["fix"]
    assert check.facts["archiving"]["stanza"] == "main" and check.facts["archiving"]["version"] == "2.45"


def test_preflight_names_a_failing_stanza_check_and_a_missing_pg1_path(monkeypatch):
    monkeypatch.setattr(pgbackrest.PgBackRest, "version", lambda self: "2.57.0")
    monkeypatch.setattr(pgbackrest.PgBackRest, "check", lambda self: "ERROR: [055]: unable to load info file")
    monkeypatch.setattr(pgbackrest.PgBackRest, "pg_path", lambda self: None)
    check = _Preflight((18,))
    check._archiving(_Archiver(("on", "pgbackrest --stanza=main archive-push %p", "", "f")))
    messages = [p["msg"] for p in check.findings.problems]
    assert len(messages) == 2 and "has no pg1-path in its section [main]" in messages[0]
    assert ("runuser -u postgres -- pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=main check fails: "
            "ERROR: [055]: unable to load info file") in messages[1]


def test_preflight_leaves_other_archive_commands_to_the_check_after_the_cutover():
    check = _Preflight((18,))
    check._archiving(_Archiver(("on", "cp %p /archive/%f", "", "f")))
    assert check.findings.problems == [] and check.facts["archiving"]["command"] == "cp %p /archive/%f"


def test_the_backup_of_the_stanzas_current_database_counts_as_taken(monkeypatch):
    """After stanza-upgrade the newest database of the stanza's history is the upgraded server's: only a backup
    of it means the backup after the cutover is done (15, 18, then 15 again after a rollback)."""
    backrest = pgbackrest.PgBackRest(None, "postgres", "main", config="/etc/pgbackrest/pgbackrest.conf")
    history = [{"id": 1, "version": "15"}, {"id": 2, "version": "18"}]
    of_15 = {"label": "20261207-020000F", "database": {"id": 1}, "timestamp": {"start": 100, "stop": 106}}
    of_18 = {"label": "20261207-024501F", "database": {"id": 2}, "timestamp": {"start": 200, "stop": 209}}
    monkeypatch.setattr(pgbackrest.PgBackRest, "info", lambda self: {"db": history, "backup": [of_15]})
    assert backrest.current_backup() is None
    monkeypatch.setattr(pgbackrest.PgBackRest, "info", lambda self: {"db": history, "backup": [of_15, of_18]})
    assert backrest.current_backup() == {"label": "20261207-024501F", "seconds": 9}
    history.append({"id": 3, "version": "15"})
    assert backrest.current_backup() is None
    monkeypatch.setattr(pgbackrest.PgBackRest, "info", lambda self: None)
    assert backrest.current_backup() is None


class _Senders:
    """The old server's physical senders and replication slots (no logical replica streams from it)."""

    def __init__(self, senders, slots):
        self.senders = senders
        self.slots = slots

    def query(self, sql, params=()):
        if sql is LOGICAL_REPLICAS_SQL:
            return _Rows([])
        return _Rows(self.senders if sql is STANDBYS_SQL else self.slots)


def test_wal_receivers_are_named_with_what_to_do_not_refused_as_standbys():
    old = type("Spec", (), dict(owner="postgres", data_dir="/var/lib/postgresql/16/main", port=5432))()
    check = PostgresPreflight(None, old, "18", "/nonexistent", [], "replication", 15432, 5433, inventory_host="db1")
    check._other_replication(_Senders(
        [("barman_receive_wal", "10.0.0.9", "async", "barman"), ("pg_receivewal", "local", "async", "wal_archive"),
         ("walreceiver", "10.0.0.50", "async", "")],
        [("barman", "", ""), ("debezium", "pgoutput", "app"), ("wal_archive", "", "")]))
    problems = [p["msg"] for p in check.findings.problems]
    assert len(problems) == 2, problems
    assert "a physical standby the inventory does not name streams from the old server (application_name " \
        "walreceiver from 10.0.0.50" in problems[0]
    assert "the replication slot debezium (pgoutput, database app) belongs to another consumer" in problems[1]
    warnings = [w["msg"] for w in check.findings.warnings]
    assert len(warnings) == 2
    assert "barman_receive_wal (from 10.0.0.9, slot barman)" in warnings[0]
    assert "barman receive-wal --reset <server>" in warnings[0] and "barman backup <server>" in warnings[0]
    assert warnings[1].endswith("pg_receivewal -h <this server> -p 5432 -S wal_archive -D <a new directory>; the "
                                "cutover creates its slot wal_archive on the new server")
    assert [r["tool"] for r in check.facts["wal_receivers"]] == ["barman", "pg_receivewal"]
