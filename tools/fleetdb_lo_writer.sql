-- A writer of large objects for the tests that upgrade with clients writing (tests/integration/test_data_kinds.py,
-- molecule/physical): lo_writer.op(i) makes change number i to one of the large objects 900000 to 900015 (create,
-- lo_put, lo_truncate - to 0 every third time -, unlink, owner, grant or revoke) and records in the same transaction
-- the object's state after it (content md5, owner, ACL; NULL once unlinked) and the WAL position, in lo_writer.ops.
-- On PostgreSQL 17 or later (the new server) it changes nothing and answers 'skipped': the tests compare 18 with
-- the old server as it stopped.  Run by tools/fleetdb_lo_writer.sh.
DO $$BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lo_owner') THEN CREATE ROLE lo_owner NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lo_reader') THEN CREATE ROLE lo_reader NOLOGIN; END IF;
END$$;
CREATE SCHEMA lo_writer;
CREATE TABLE lo_writer.ops (i int PRIMARY KEY, loid oid NOT NULL, op text NOT NULL, md5 text, owner name, acl text,
                            lsn pg_lsn NOT NULL);
CREATE FUNCTION lo_writer.op(i int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  target oid := 900000 + i % 16;
  what text := (ARRAY['put', 'owner', 'truncate', 'grant', 'unlink', 'put'])[1 + (i / 16) % 6];   -- created again after the unlink
BEGIN
  IF current_setting('server_version_num')::int >= 170000 THEN
    RETURN 'skipped';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_largeobject_metadata WHERE oid = target) THEN
    what := 'create';
    PERFORM lo_create(target);
    PERFORM lo_put(target, 0, convert_to(repeat(md5(i::text), 1 + i % 200), 'UTF8'));
  ELSIF what = 'put' THEN
    PERFORM lo_put(target, (i % 7) * 1500, convert_to(repeat(md5(i::text), 1 + i % 90), 'UTF8'));
  ELSIF what = 'truncate' THEN
    PERFORM lo_truncate(lo_open(target, 131072), (i % 3) * 1000);
  ELSIF what = 'unlink' THEN
    PERFORM lo_unlink(target);
  ELSIF what = 'owner' THEN
    EXECUTE format('ALTER LARGE OBJECT %s OWNER TO %I', target, CASE (i / 96) % 2 WHEN 0 THEN 'lo_owner' ELSE 'postgres' END);
  ELSIF (i / 96) % 2 = 0 THEN
    EXECUTE format('GRANT SELECT, UPDATE ON LARGE OBJECT %s TO lo_reader', target);
  ELSE
    EXECUTE format('REVOKE UPDATE ON LARGE OBJECT %s FROM lo_reader', target);
  END IF;
  INSERT INTO lo_writer.ops
  SELECT i, target, what, md5(lo_get(m.oid)), pg_get_userbyid(m.lomowner), m.lomacl::text, pg_current_wal_insert_lsn()
    FROM (VALUES (1)) AS v LEFT JOIN pg_largeobject_metadata m ON m.oid = target;
  RETURN 'done';
END $$;
