"""Settings held for a while (postgres/alter_system.py, the module settings with record and state=restored): what
postgresql.auto.conf had is recorded once, before the first change, and given back as it was - SET of its value,
RESET of a setting it did not have - whatever the setting holds by then."""
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import alter_system


class Module:
    check_mode = False


class Session:
    """pg_settings as CURRENT_SQL reads it: name -> (setting, value in postgresql.auto.conf or None)."""

    def __init__(self, settings):
        self.settings = settings
        self.executed = []

    def query(self, _sql, params):
        class Result:
            rows = [(name, setting, "", "sighup", "f", auto) for name, (setting, auto) in sorted(self.settings.items())
                    if name in params[0]]
        return Result()

    def execute(self, statement):
        self.executed.append(statement)


def test_the_first_record_is_kept_and_the_value_in_postgresql_auto_conf_comes_back(tmp_path):
    record = str(tmp_path / "held_settings.json")
    session = Session({"synchronous_standby_names": ("replica1", "replica1")})
    assert alter_system.record_auto_conf(Module(), session, ["synchronous_standby_names"], record, None)
    session.settings["synchronous_standby_names"] = ("", "")          # held empty: a re-run records nothing
    assert not alter_system.record_auto_conf(Module(), session, ["synchronous_standby_names"], record, None)
    reloads = []
    result = alter_system.give_back(Module(), session, record, lambda: reloads.append(1))
    assert session.executed == ["ALTER SYSTEM SET synchronous_standby_names = 'replica1'"] and reloads == [1]
    assert result["changed"] and not (tmp_path / "held_settings.json").exists()
    again = alter_system.give_back(Module(), session, record, lambda: reloads.append(1))
    assert not again["changed"] and session.executed == ["ALTER SYSTEM SET synchronous_standby_names = 'replica1'"]


def test_a_value_set_outside_postgresql_auto_conf_is_reset_there(tmp_path):
    record = str(tmp_path / "held_settings.json")
    session = Session({"synchronous_standby_names": ("replica1", None)})   # postgresql.conf names it
    alter_system.record_auto_conf(Module(), session, ["synchronous_standby_names"], record, None)
    session.settings["synchronous_standby_names"] = ("", "")
    alter_system.give_back(Module(), session, record, lambda: None)
    assert session.executed == ["ALTER SYSTEM RESET synchronous_standby_names"]
