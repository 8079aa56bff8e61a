-- One object of each kind the upgrade must carry, rebuild or refuse (docs/procedure.md, "What happens to each
-- kind of object"). Loaded into two databases by tests/integration/test_data_kinds.py.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA feat AUTHORIZATION app;
SET ROLE app;

-- Partitioned two levels deep, with a default partition; written to during the upgrade.
CREATE TABLE feat.measurements (id bigint NOT NULL, ts date NOT NULL, v numeric, PRIMARY KEY (id, ts))
    PARTITION BY RANGE (ts);
CREATE TABLE feat.measurements_2025 PARTITION OF feat.measurements
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY RANGE (ts);
CREATE TABLE feat.measurements_2025_h1 PARTITION OF feat.measurements_2025 FOR VALUES FROM ('2025-01-01') TO ('2025-07-01');
CREATE TABLE feat.measurements_2025_h2 PARTITION OF feat.measurements_2025 FOR VALUES FROM ('2025-07-01') TO ('2026-01-01');
CREATE TABLE feat.measurements_2026 PARTITION OF feat.measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE feat.measurements_default PARTITION OF feat.measurements DEFAULT;
INSERT INTO feat.measurements SELECT g, DATE '2024-12-01' + (g % 800), g * 0.5 FROM generate_series(1, 20000) g;

-- Identity, a stored generated column, a sequence owned by no column.
CREATE SEQUENCE feat.free_seq START 100;
SELECT nextval('feat.free_seq') FROM generate_series(1, 7);
-- Sequences whose next value only the sequence itself says: never called, and set back.
CREATE SEQUENCE feat.never_called START 42;
CREATE SEQUENCE feat.set_back;
SELECT nextval('feat.set_back') FROM generate_series(1, 5);
ALTER SEQUENCE feat.set_back RESTART WITH 1000;
CREATE TABLE feat.items (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name citext NOT NULL,
    price numeric NOT NULL,
    price_with_tax numeric GENERATED ALWAYS AS (price * 1.2) STORED,
    code bigint DEFAULT nextval('feat.free_seq'));
INSERT INTO feat.items (name, price) SELECT 'item ' || g, g FROM generate_series(1, 500) g;
CREATE INDEX items_name_trgm ON feat.items USING gin ((name::text) gin_trgm_ops);

-- Keys of every type, and the replica identities.
CREATE TABLE feat.by_text (code text PRIMARY KEY, label text);
INSERT INTO feat.by_text SELECT 'k' || g, md5(g::text) FROM generate_series(1, 300) g;
CREATE TABLE feat.by_uuid (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), payload jsonb);
INSERT INTO feat.by_uuid (payload) SELECT jsonb_build_object('n', g) FROM generate_series(1, 300) g;
CREATE TABLE feat.by_pair (a int, b text, n int, PRIMARY KEY (a, b));
INSERT INTO feat.by_pair SELECT g % 10, 'b' || g, g FROM generate_series(1, 300) g;
CREATE TABLE feat.full_identity (a int, b text);
ALTER TABLE feat.full_identity REPLICA IDENTITY FULL;
INSERT INTO feat.full_identity SELECT g, 'row ' || g FROM generate_series(1, 300) g;
CREATE TABLE feat.by_index (a int NOT NULL, b int NOT NULL, c text);
CREATE UNIQUE INDEX by_index_ab ON feat.by_index (a, b);
ALTER TABLE feat.by_index REPLICA IDENTITY USING INDEX by_index_ab;
INSERT INTO feat.by_index SELECT g, g * 2, 'c' || g FROM generate_series(1, 300) g;
-- No key at all (pgbench_history's kind), plain and partitioned: refused by preflight until the operator opts in
-- to REPLICA IDENTITY FULL, which the root's partitions need too, on both servers.
CREATE TABLE feat.history (at timestamptz NOT NULL DEFAULT now(), what text);
INSERT INTO feat.history (what) SELECT 'event ' || g FROM generate_series(1, 300) g;
CREATE TABLE feat.events (day int NOT NULL, what text) PARTITION BY RANGE (day);
CREATE TABLE feat.events_early PARTITION OF feat.events FOR VALUES FROM (0) TO (100);
CREATE TABLE feat.events_late PARTITION OF feat.events FOR VALUES FROM (100) TO (1000);
INSERT INTO feat.events SELECT g % 1000, 'e' || g FROM generate_series(1, 300) g;

-- Materialized views: populated (one over the other), and one never populated.
CREATE MATERIALIZED VIEW feat.item_totals AS SELECT count(*) AS n, sum(price) AS total FROM feat.items;
CREATE UNIQUE INDEX item_totals_n ON feat.item_totals (n);
CREATE MATERIALIZED VIEW feat.item_totals_twice AS SELECT n * 2 AS n2, total * 2 AS total2 FROM feat.item_totals;
CREATE MATERIALIZED VIEW feat.never_filled AS SELECT 1 AS one WITH NO DATA;

-- Row-level security: the copy must take every row, whatever the policies show the replication role.
CREATE TABLE feat.notes (id int PRIMARY KEY, owner_name text NOT NULL, body text);
INSERT INTO feat.notes SELECT g, CASE WHEN g % 2 = 0 THEN 'app' ELSE 'someone_else' END, 'note ' || g
  FROM generate_series(1, 200) g;
ALTER TABLE feat.notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE feat.notes FORCE ROW LEVEL SECURITY;
CREATE POLICY notes_own ON feat.notes USING (owner_name = current_user);
COMMENT ON TABLE feat.notes IS 'row-level security, forced';
COMMENT ON COLUMN feat.notes.body IS 'free text';

-- Unlogged: one the operator makes logged for the upgrade, one that may start empty (opt-in).
CREATE UNLOGGED TABLE feat.staging (id int PRIMARY KEY, v text);
INSERT INTO feat.staging SELECT g, 'staged ' || g FROM generate_series(1, 1000) g;
CREATE UNLOGGED TABLE feat.cache (k text PRIMARY KEY, v text);
INSERT INTO feat.cache SELECT 'k' || g, 'cached' FROM generate_series(1, 1000) g;

-- A large object (the test removes it after preflight refused it).
SELECT lo_from_bytea(0, convert_to('a large object, refused by preflight', 'UTF8'));

-- A user publication (no slot) and grants, default privileges.
RESET ROLE;
CREATE PUBLICATION user_pub FOR TABLE feat.by_text;
GRANT USAGE ON SCHEMA feat TO reporting;
GRANT SELECT ON ALL TABLES IN SCHEMA feat TO reporting;
ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA feat GRANT SELECT ON TABLES TO reporting;

-- An event trigger (it fires on the new server for the upgrade's own DDL too: it must not get in the way).
CREATE FUNCTION feat.ddl_noted() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
CREATE EVENT TRIGGER feat_ddl_noted ON ddl_command_end EXECUTE FUNCTION feat.ddl_noted();
