-- User relations that can hold or describe data, without extension members.
SELECT c.oid AS oid,
       n.nspname::text AS schema_name,
       c.relname::text AS name,
       c.relkind::text AS relkind,
       c.relispartition AS is_partition,
       CASE WHEN c.relispartition THEN pg_partition_root(c.oid)::oid END AS partition_root,
       c.relispopulated AS populated,
       c.reltuples::float8 AS estimated_rows,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key,
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS partition_bound,
       CASE WHEN c.relispartition THEN (SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid) END AS partition_parent,
       CASE WHEN NOT c.relispartition THEN ARRAY(SELECT i.inhparent FROM pg_inherits i
                                                 WHERE i.inhrelid = c.oid ORDER BY i.inhseqno)
            ELSE '{}'::oid[] END AS inherits,
       am.amname::text AS access_method
FROM pg_class c
LEFT JOIN pg_am am ON am.oid = c.relam AND c.relkind IN ('r', 'p', 'm')
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm', 'v')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (
        SELECT 1 FROM pg_depend d
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
