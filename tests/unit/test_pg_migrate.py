"""TOC parsing and selection of what a restore runs (pure logic, no server)."""
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import migrate as m

TOC = """;
; Archive created at 2026-11-25 03:35:22 UTC
;     dbname: app
;     Dumped from database version: 16.15
;     Dumped by pg_dump version: 18.6
;
218; 1259 16397 TABLE public child postgres
2576; 0 0 SEQUENCE OWNED BY public parent_id_seq postgres
2575; 0 0 COMMENT public TABLE parent postgres
2419; 2606 16401 CONSTRAINT public child child_pkey postgres
2420; 1259 16407 INDEX public child_v postgres
2421; 1259 16418 INDEX public ri_a postgres
2422; 2606 16402 FK CONSTRAINT public child child_parent_id_fkey postgres
2568; 6106 16420 PUBLICATION TABLE public userpub parent postgres
3000; 0 16397 TABLE DATA public child postgres
"""


def entries():
    return m.parse_toc(TOC)


def test_parse_types_with_spaces():
    e = dict((x.dump_id, x) for x in entries())
    assert (e[2576].kind, e[2576].schema, e[2576].tag) == ("SEQUENCE OWNED BY", "public", "parent_id_seq")
    assert (e[2422].kind, e[2422].tag, e[2422].owner) == ("FK CONSTRAINT", "child child_parent_id_fkey", "postgres")
    assert (e[2568].kind, e[2568].tag) == ("PUBLICATION TABLE", "userpub parent")
    assert e[3000].key() == ("data", "public", "child")
    assert e[2575].key() is None


def test_header():
    h = m.parse_header(TOC)
    assert h["dbname"] == "app" and h["source_version"] == "16.15" and h["tool_version"] == "18.6"
    assert h["created"] == "2026-11-25 03:35:22 UTC"


def by_section():
    e = dict((x.dump_id, x) for x in entries())
    return {"pre-data": [e[218], e[2576], e[2575]], "data": [e[3000]],
            "post-data": [e[2419], e[2420], e[2421], e[2422], e[2568]]}


def ids(selected):
    return [x.dump_id for x in selected]


def test_keys_are_pk_unique_and_replica_identity_indexes():
    chosen = m.select_entries(by_section(), ["keys"], set(), {("public", "ri_a")})
    assert ids(chosen) == [2419, 2421]


def test_post_data_after_keys_skips_keys():
    chosen = m.select_entries(by_section(), ["pre-data", "keys", "post-data"], set(), {("public", "ri_a")})
    assert ids(chosen) == [218, 2576, 2575, 2419, 2421, 2420, 2422, 2568]


def test_present_objects_are_left_out_and_rerun_is_empty():
    present = {("rel", "public", "child"), ("con", "public", "child child_pkey")}
    assert ids(m.select_entries(by_section(), ["pre-data", "keys"], present)) == []
    assert ids(m.select_entries(by_section(), ["post-data"], present)) == [2420, 2421, 2422, 2568]


def test_data_of_non_empty_tables_is_skipped():
    assert ids(m.select_entries(by_section(), ["data"], {("data", "public", "child")})) == []
    assert ids(m.select_entries(by_section(), ["data"], set())) == [3000]


def test_replica_identity_indexes_from_sql():
    sql = ("--\n-- Name: child_v; Type: INDEX; Schema: public; Owner: postgres\n--\n\nCREATE INDEX child_v ON x;\n"
           "\n-- Name: ri_a; Type: INDEX; Schema: public; Owner: postgres\n--\n\nCREATE UNIQUE INDEX ri_a ON ri;\n"
           "ALTER TABLE ONLY public.ri REPLICA IDENTITY USING INDEX ri_a;\n")
    assert m.replica_identity_indexes(sql) == {("public", "ri_a")}


def test_objects_and_globals():
    assert m.split_objects(["public.t", "sales"]) == ["-t", "public.t", "-n", "sales"]
    sql = "--\n-- Roles\n--\n\nCREATE ROLE app;\nALTER ROLE app WITH NOSUPERUSER\n  LOGIN;\n\\unrestrict x\n"
    assert m.globals_statements(sql) == ["CREATE ROLE app;", "ALTER ROLE app WITH NOSUPERUSER\n  LOGIN;"]


def test_database_properties_are_the_settings_comment_labels_and_privileges_of_the_database():
    sql = ("CREATE DATABASE inv WITH TEMPLATE = template0 ENCODING = 'UTF8';\n"
           "ALTER DATABASE inv OWNER TO stock;\n\\connect inv\nSET statement_timeout = 0;\n"
           "COMMENT ON DATABASE inv IS 'x';\nSECURITY LABEL FOR selinux ON DATABASE inv IS "
           "'system_u:object_r:sepgsql_db_t:s0';\nALTER DATABASE inv SET work_mem TO '8MB';\n"
           "ALTER ROLE app IN DATABASE inv SET statement_timeout TO '31s';\n"
           "REVOKE CONNECT,TEMPORARY ON DATABASE inv FROM PUBLIC;\nGRANT CONNECT ON DATABASE inv TO app;\n")
    assert m.database_properties(sql) == [
        "COMMENT ON DATABASE inv IS 'x';",
        "SECURITY LABEL FOR selinux ON DATABASE inv IS 'system_u:object_r:sepgsql_db_t:s0';",
        "ALTER DATABASE inv SET work_mem TO '8MB';",
        "ALTER ROLE app IN DATABASE inv SET statement_timeout TO '31s';",
        "REVOKE CONNECT,TEMPORARY ON DATABASE inv FROM PUBLIC;", "GRANT CONNECT ON DATABASE inv TO app;"]
