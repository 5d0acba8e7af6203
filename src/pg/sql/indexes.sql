-- Indexes with their key columns; expression or partial indexes get an empty column list.
SELECT i.indrelid AS relation,
       ic.relname::text AS name,
       i.indisunique AS is_unique,
       i.indisprimary AS is_primary,
       pg_get_indexdef(i.indexrelid) AS definition,
       am.amname::text AS method,
       (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL) AS has_expressions,
       ARRAY(SELECT a.attname::text
             FROM generate_series(0, i.indnkeyatts - 1) AS k(pos)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.pos]
             ORDER BY k.pos) AS columns
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_)'
ORDER BY i.indrelid, ic.relname
