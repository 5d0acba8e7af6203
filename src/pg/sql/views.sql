-- View and materialized view definitions, with their options (security_barrier,
-- check_option) and whether a materialized view holds data.
SELECT n.nspname::text AS schema_name, c.relname::text AS name, c.relkind::text AS relkind,
       pg_get_viewdef(c.oid, true) AS definition,
       array_to_string(c.reloptions, ', ') AS options,
       c.relispopulated AS populated
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (
        SELECT 1 FROM pg_depend d
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
