"""Catalog operations on slots and subscriptions (postgres/slots.py), against a session that records what it is sent."""
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import slots


class Result:
    def __init__(self, rows):
        self.rows = rows


class Session:
    """Answers active_pid with each of ``active`` in turn, then NULL."""

    def __init__(self, active=(), names=()):
        self.sent = []
        self.active = list(active)
        self.names = list(names)

    def execute(self, sql):
        self.sent.append(sql)

    def query(self, sql, params=()):
        self.sent.append((sql, list(params)))
        return Result([[name] for name in self.names])

    def scalar(self, sql, params=()):
        self.sent.append((sql, list(params)))
        return self.active.pop(0) if self.active else None


def test_a_subscription_is_detached_from_its_slot_before_it_is_dropped():
    session = Session()
    slots.drop_subscription_keeping_slot(session, "Upgrade")
    assert session.sent == ['ALTER SUBSCRIPTION "Upgrade" DISABLE', 'ALTER SUBSCRIPTION "Upgrade" SET (slot_name = NONE)',
                            'DROP SUBSCRIPTION "Upgrade"']


def test_a_slot_in_use_loses_its_walsender_first():
    session = Session(active=["4242"])
    slots.drop_slot_in_use(session, "fleetdb_upgrade")
    assert session.sent[1] == ("SELECT pg_terminate_backend($1::int)", ["4242"])
    assert "pg_drop_replication_slot" in session.sent[-1][0] and session.sent[-1][1] == ["fleetdb_upgrade"]


def test_an_unused_slot_is_dropped_only_when_no_one_streams_from_it():
    session = Session()
    slots.drop_unused_slot(session, "fleetdb_physical_copy")
    assert "AND NOT active" in session.sent[0][0] and session.sent[0][1] == ["fleetdb_physical_copy"]


def test_slots_are_listed_by_name_and_by_pattern():
    session = Session(names=["fleetdb_upgrade", "pg_16513_sync_16398_7714407194255615608"])
    assert slots.slot_names(session, "fleetdb_upgrade", "pg_16513_sync_%") == session.names
    assert session.sent[0][1] == ["fleetdb_upgrade", "pg_16513_sync_%"]
