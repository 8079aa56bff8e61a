"""Pure logic of the cutover: the fence block, schema comparison, names."""
import pytest

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import cron as pg_cron, fence
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade import cutover_logic
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade import switchover as sw
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError

HBA = "local all all peer\nhost all all 0.0.0.0/0 scram-sha-256\n"


def test_fence_goes_first_and_lets_only_replication_in_on_the_socket():
    fenced = fence.fence_block("fleetdb_replicator", ["app", "crm"]) + HBA
    rules = [line.split() for line in fenced.splitlines() if line and not line.startswith("#")]
    assert rules[0] == ["local", '"app","crm"', '"fleetdb_replicator"', "scram-sha-256"]
    assert rules[1] == ["local", "all", "all", "reject"]
    assert rules[2] == ["host", "all", "all", "all", "reject"]
    # no other rule in the fence: no superuser, no peer login, no TCP for replication
    assert len([line for line in fenced.split(fence.FENCE_END, maxsplit=1)[0].splitlines() if not line.startswith("#")]) == 3
    first_original = rules.index(["local", "all", "all", "peer"])
    assert first_original == 3


def test_hba_names_are_quoted_and_unquotable_names_refused():
    assert fence.hba_quote("sales, eu") == '"sales, eu"'
    assert fence.hba_quote("all") == '"all"'
    with pytest.raises(OperationError):
        fence.hba_quote('bad"name')
    with pytest.raises(OperationError):
        fence.hba_quote("two\nlines")


def test_without_fence_restores_the_original_text_and_is_idempotent():
    fenced = fence.fence_block("rep", ["app"]) + HBA
    assert fence.without_fence(fenced) == HBA
    assert fence.without_fence(HBA) == HBA
    assert fence.is_fenced(fenced) and not fence.is_fenced(HBA)


def test_drain_is_clean_only_when_the_markers_took_every_id():
    assert cutover_logic.drain_is_clean(100, [100, 101], 102, 0)
    assert not cutover_logic.drain_is_clean(100, [101, 102], 103, 0)   # someone took 100
    assert not cutover_logic.drain_is_clean(100, [100, 101], 103, 0)   # someone took 102 and finished
    assert not cutover_logic.drain_is_clean(100, [100, 101], 102, 1)   # someone holds an id


def test_the_proof_needs_a_clean_shutdown_and_the_drain_xid():
    clean = {"Database cluster state": "shut down", "Latest checkpoint's NextXID": "1:100"}
    assert cutover_logic.proof_problems(clean, (1 << 32) + 100) == []
    assert "after the drain" in cutover_logic.proof_problems(clean, (1 << 32) + 98)[0]
    crashed = dict(clean, **{"Database cluster state": "in production"})
    assert "did not shut down cleanly" in cutover_logic.proof_problems(crashed, (1 << 32) + 100)[0]


def test_schema_differences_name_each_drift():
    old = [("public.a", "r", "id bigint not null"), ("public.b", "r", "id int"), ("public.s", "S", "")]
    new = [("public.a", "r", "id bigint not null, note text"), ("public.s", "S", ""), ("public.c", "r", "x int")]
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.cutover_logic import schema_differences
    problems = schema_differences(old, new)
    assert any("public.a differs" in p for p in problems)
    assert "public.b exists only on the old server" in problems
    assert "public.c exists only on the new server" in problems
    assert schema_differences(old, old) == []


def test_subscription_names_are_unique_per_database_only_when_needed():
    assert sw.subscription_name("fleetdb_upgrade", "app", ["app"]) == "fleetdb_upgrade"
    assert sw.subscription_name("fleetdb_upgrade", "Sales-EU", ["app", "Sales-EU"]) == "fleetdb_upgrade_sales_eu"


def test_tables_the_subscription_does_not_carry_are_named():
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.cutover_logic import unreplicated_tables
    assert unreplicated_tables(["app.a", "app.b", "feat.m_2027"], ["app.a", "app.b"]) == ["feat.m_2027"]
    assert unreplicated_tables(["app.a"], ["app.a", "app.gone"]) == []


# -- row counts at one point of replication (pg_row_check) ------------------------------------------------------

def test_visibility_in_a_snapshot_follows_xmin_xmax_and_the_in_progress_list():
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.row_check import visible_in_snapshot
    snapshot = "1000:1010:1003,1007"
    assert visible_in_snapshot("999", snapshot)
    assert visible_in_snapshot("1005", snapshot)
    assert not visible_in_snapshot("1003", snapshot)      # in progress when the snapshot was taken
    assert not visible_in_snapshot("1010", snapshot)      # began after it
    # 64-bit ids: decoding gives 32 bits, the epoch is the one nearest the snapshot's
    epoch = 1 << 32
    assert visible_in_snapshot(str(epoch - 5), "%d:%d:" % (epoch - 10, epoch + 3))
    assert not visible_in_snapshot("4", "%d:%d:" % (epoch - 10, epoch + 3))
    assert visible_in_snapshot("2", "%d:%d:" % (epoch - 10, epoch + 3))


def test_a_32_bit_transaction_id_is_widened_with_the_epoch_nearest_the_snapshot():
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.row_check import widened
    epoch = 1 << 32
    assert widened("1005", "1000:1010:") == 1005
    assert widened("4", "%d:%d:" % (epoch - 10, epoch + 3)) == epoch + 4     # the newest, past xmax
    assert widened(str(epoch - 5), "%d:%d:" % (epoch - 10, epoch + 3)) == epoch - 5


def test_transactions_in_the_gap_move_the_expected_difference_both_ways():
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade import row_check as rc
    snapshot = "100:110:105"
    changes = [
        ("101", "true", "app.t", "3", "false"),    # applied on the new server, visible in the snapshot: counted both
        ("105", "true", "app.t", "2", "false"),    # applied, not yet visible in the snapshot: new has 2 more
        ("108", "false", "app.t", "-1", "false"),  # not applied, visible: a delete the new server lacks
        ("120", "false", "app.u", "7", "false"),   # neither
        ("109", "false", "other.x", "4", "false"),  # a table not compared
    ]
    differences, truncated = rc.expected_differences(changes, snapshot, ["app.t", "app.u"])
    assert differences == {"app.t": 2 + 1, "app.u": 0} and truncated == []
    assert rc.mismatches({"app.t": "10", "app.u": "5"}, {"app.t": "13", "app.u": "5"}, differences) == []
    wrong = rc.mismatches({"app.t": "10", "app.u": "5"}, {"app.t": "12", "app.u": "5"}, differences)
    assert wrong == ["app.t (old 10, new 12, +3 in flight)"]
    assert rc.expected_differences([("105", "true", "app.u", "0", "true")], snapshot, ["app.u"])[1] == ["app.u"]


def test_side_by_side_runs_each_call_at_once_and_raises_the_first_error():
    import threading
    import pytest
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import side_by_side
    barrier = threading.Barrier(2, timeout=5)   # both calls must be running together to get past it
    assert side_by_side(lambda: barrier.wait() * 0 + 1, lambda: barrier.wait() * 0 + 2) == [1, 2]

    def fails():
        raise ValueError("timed out")
    with pytest.raises(ValueError, match="timed out"):
        side_by_side(lambda: 1, fails)


def test_union_all_rows_reads_1201_relations_in_three_statements_of_at_most_500_branches():
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import union_all_rows

    class Session:
        statements = []

        def execute(self, sql):
            self.statements.append(sql)
            return type("Result", (), dict(rows=[(part.split("'")[1], "0") for part in sql.split(" UNION ALL ")]))
    selects = ["SELECT 't%d', count(*) FROM t%d" % (i, i) for i in range(1201)]
    rows = union_all_rows(Session(), selects)
    assert [name for name, _count in rows] == ["t%d" % i for i in range(1201)]
    assert [sql.count(" UNION ALL ") + 1 for sql in Session.statements] == [500, 500, 201]
    assert union_all_rows(Session(), []) == [] and len(Session.statements) == 3


def test_the_digest_queries_keep_the_check_query_whole():
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.schema_check import (
        digest_sql, with_digest_sql)
    sql = "SELECT 1 AS x WHERE 1 <> ALL ($1::text[]) ORDER BY 1"
    assert digest_sql(sql).startswith("WITH f AS (%s) SELECT md5(" % sql)
    assert with_digest_sql(sql).startswith("WITH f AS (%s) SELECT f.*, (SELECT md5(" % sql)


def test_the_catalog_token_reads_each_catalog_once_with_one_horizon():
    from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.schema_check import (
        CATALOG_TOKEN_SQL, CATALOGS)
    for catalog in CATALOGS:
        assert CATALOG_TOKEN_SQL.count("FROM h, pg_catalog.%s c" % catalog) == 1, catalog
    assert "%% 4294967296" not in CATALOG_TOKEN_SQL and "% 4294967296" in CATALOG_TOKEN_SQL
    assert CATALOG_TOKEN_SQL.count("$1") == 1


class _Activity:
    """pg_stat_activity as the fence's query sees it: the server leaves out the backend types it is given."""

    def __init__(self, workers):
        self.workers = workers

    def query(self, sql, params=()):
        if sql in (fence.PREPARED_SQL, fence.SUBSCRIPTIONS_SQL):
            rows = self.subscriptions if sql == fence.SUBSCRIPTIONS_SQL else []
        else:
            rows = [w for w in self.workers if w[1] not in params[0]]
        return type("Result", (), dict(rows=rows))

    subscriptions = []


def test_pg_cron_is_not_a_fence_blocker_but_other_extension_workers_are_named_with_their_way_out():
    session = _Activity([(101, "pg_cron launcher", "", "postgres"), (102, "pg_cron", "postgres", "postgres"),
                         (103, "TimescaleDB Background Worker Scheduler", "app", "postgres")])
    blockers = fence.fence_blockers(session)
    assert [b["name"] for b in blockers] == ["TimescaleDB Background Worker Scheduler (pid 103, database app, "
                                             "user postgres)"]
    assert "online_upgrade_method=dump_restore" in blockers[0]["fix"]
    assert "pg_cron" not in fence.blockers_message(blockers)


def test_a_subscription_of_the_old_server_is_a_fence_blocker_named_with_its_database():
    session = _Activity([])
    session.subscriptions = [("prices_sub", "market", "prices_pub")]
    blockers = fence.fence_blockers(session)
    assert fence.blockers_message(blockers) == "subscription prices_sub (database market, publication prices_pub)"
    assert "check `subscriptions`" in fence.blockers_fix(blockers)


def test_pg_cron_holds_its_jobs_on_a_temporary_port_from_1_6_on():
    assert pg_cron.temporary_port_options(None) == []   # no pg_cron in the release
    assert pg_cron.temporary_port_options("1.4-1") == []
    assert pg_cron.temporary_port_options("1.6") == ["-c", "cron.launch_active_jobs=off"]
    assert not pg_cron.holds_jobs("1.5") and pg_cron.holds_jobs("1.10")
