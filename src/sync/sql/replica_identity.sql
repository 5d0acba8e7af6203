-- How each table to follow identifies its changed rows: pg_class.relreplident
-- (d default = primary key, f full, i an index, n nothing) and whether that key exists.
SELECT n.nspname::text AS schema_name,
       c.relname::text AS table_name,
       c.relreplident::text AS replica_identity,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_primary_key,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) AS has_identity_index
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY ($1)
ORDER BY n.nspname, c.relname
