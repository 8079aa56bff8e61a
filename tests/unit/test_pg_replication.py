"""Replication: names, conninfo without password, pg_hba lines, passfile, SCRAM, hash SQL, capacity."""
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import compare
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import publication
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import replication as r
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import replication_access as access
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.replication import subscription_name


def test_names_match_switchover():
    assert subscription_name("fleetdb_upgrade", "app", ["app"]) == "fleetdb_upgrade"
    assert subscription_name("fleetdb_upgrade", "App-2", ["a", "App-2"]) == "fleetdb_upgrade_app_2"


def test_conninfo_names_passfile_not_password():
    info = access.conninfo("/var/run/postgresql", 5432, "app", "fleetdb_replicator", "/x/p.pgpass", "sub")
    assert "passfile='/x/p.pgpass'" in info and "password" not in info
    assert "host='/var/run/postgresql'" in info and "port='5432'" in info


def test_passfile_line_escapes_and_replaces():
    text = access.with_passfile_line("*:5432:*:u:old\n*:6432:*:v:x\n", 5432, "u", "a:b\\c")
    assert text == "*:6432:*:v:x\n*:5432:*:u:a\\:b\\\\c\n"


def test_hba_block_is_first_and_idempotent():
    original = "local all all peer\n"
    once = access.with_hba_lines(original, "rep", "app")
    assert once.startswith(access.HBA_BEGIN) and once.endswith(original)
    assert 'local   "app"   "rep"   scram-sha-256' in once and "::1/128" in once
    assert access.with_hba_lines(once, "rep", "app") == once
    twice = access.with_hba_lines(once, "rep", "shop")
    assert twice.count(access.HBA_BEGIN) == 1 and 'local   "shop"   "rep"' in twice and twice.endswith(original)


def test_scram_verifier_round_trip():
    verifier = access.scram_verifier("pw", salt=b"0123456789abcdef")
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert access.verifier_matches(verifier, "pw") and not access.verifier_matches(verifier, "other")
    assert not access.verifier_matches(None, "pw")


def test_tables_without_key():
    tables = [dict(schema="s", name="pk", identity="d", has_pk="t", has_ri_index="f"),
              dict(schema="s", name="nopk", identity="d", has_pk="f", has_ri_index="f"),
              dict(schema="s", name="full", identity="f", has_pk="f", has_ri_index="f"),
              dict(schema="s", name="idx", identity="i", has_pk="f", has_ri_index="t"),
              dict(schema="s", name="nothing", identity="n", has_pk="t", has_ri_index="f")]
    assert publication.tables_without_key(tables) == ["s.nopk", "s.nothing"]


def test_hash_sql_is_order_independent_aggregate():
    sql = compare.hash_sql('"public"."t"')
    assert "md5(t::text)" in sql and "ORDER BY" not in sql and 'FROM "public"."t" AS t' in sql


def test_capacity_problems_say_what_to_set():
    problems = r.capacity_problems({"max_wal_senders": 3}, {"max_wal_senders": 2}, {"max_wal_senders": 3})
    assert problems == ["max_wal_senders = 3 with 2 in use, 3 more needed (set it to at least 5)"]
    assert r.capacity_problems({"max_wal_senders": 10}, {}, {"max_wal_senders": 3}) == []
