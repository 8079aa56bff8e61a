"""Pure logic of the cutover: the fence block, schema comparison, names."""
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils import pg_switchover as sw

HBA = "local all all peer\nhost all all 0.0.0.0/0 scram-sha-256\n"


def test_fence_goes_first_and_lets_only_replication_and_admin_in():
    fenced = sw.fence_block("fleetdb_replicator", "postgres", ["app", "crm"]) + HBA
    rules = [line.split() for line in fenced.splitlines() if line and not line.startswith("#")]
    assert rules[0][:3] == ["local", "app,crm", "fleetdb_replicator"]
    assert ["local", "all", "all", "reject"] in rules
    assert ["host", "all", "all", "all", "reject"] in rules
    first_reject = next(i for i, r in enumerate(rules) if r[-1] == "reject")
    first_original = rules.index(["local", "all", "all", "peer"])
    assert first_reject < first_original


def test_without_fence_restores_the_original_text_and_is_idempotent():
    fenced = sw.fence_block("rep", "postgres", ["app"]) + HBA
    assert sw.without_fence(fenced) == HBA
    assert sw.without_fence(HBA) == HBA


def test_schema_differences_name_each_drift():
    old = [("public.a", "r", "id bigint not null"), ("public.b", "r", "id int"), ("public.s", "S", "")]
    new = [("public.a", "r", "id bigint not null, note text"), ("public.s", "S", ""), ("public.c", "r", "x int")]
    problems = sw.schema_differences(old, new)
    assert any("public.a differs" in p for p in problems)
    assert "public.b exists only on the old server" in problems
    assert "public.c exists only on the new server" in problems
    assert sw.schema_differences(old, old) == []


def test_subscription_names_are_unique_per_database_only_when_needed():
    assert sw.subscription_name("fleetdb_upgrade", "app", ["app"]) == "fleetdb_upgrade"
    assert sw.subscription_name("fleetdb_upgrade", "Sales-EU", ["app", "Sales-EU"]) == "fleetdb_upgrade_sales_eu"
