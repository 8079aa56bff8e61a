"""Record of Upgrades: names and numbering."""
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import record as r


def test_names_are_zero_padded():
    names = r.table_names(7)
    assert names["upgrade"] == "fleetdb_upgrade_record.ttrep_schema_version_007_upgrade"
    assert names["tables"].endswith("_007_tables")


def test_next_number_counts_carried_sets():
    assert r.next_number([]) == 1
    assert r.next_number([1, 2]) == 3


def test_every_table_has_a_primary_key():
    sql = r.create_sql(3)
    assert sql.count("PRIMARY KEY") == 4
    assert r.SET_TABLE_RE.match("ttrep_schema_version_003_upgrade").group(1) == "003"


def test_memberships():
    members = r.table_memberships([], [("public", "t", "p1"), ("public", "t", "p2")])
    assert members == {("public", "t"): ["p1", "p2"]}
