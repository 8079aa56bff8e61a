-- What the Debian scenario compares before (15) and after (18): each populated table and materialized
-- view of tests/integration/full_schema.sql (count and a hash of its rows; the unlogged ones start empty
-- on 18 by opt-in), and the owner of the public schema.
SELECT 'public schema owner ' || pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public';
SELECT format('SELECT %L || '' '' || count(*) || '' '' || coalesce(md5(string_agg(t::text, ''|'' ORDER BY t::text)), ''-'') FROM %s t',
              c.oid::regclass::text, c.oid::regclass)
  FROM pg_class c
 WHERE c.relnamespace = 'feat'::regnamespace AND c.relkind IN ('r', 'm') AND c.relispopulated
   AND c.relpersistence = 'p'
 ORDER BY 1
\gexec
