-- How each table to follow identifies its changed rows: pg_class.relreplident
-- (d default = primary key, f full, i an index, n nothing) and whether that key exists.
-- PostgreSQL identifies rows only by an immediate (not DEFERRABLE), valid index.
SELECT n.nspname::text AS schema_name,
       c.relname::text AS table_name,
       c.relreplident::text AS replica_identity,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary
                                        AND i.indimmediate AND i.indisvalid) AS has_primary_key,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident
                                        AND i.indimmediate AND i.indisvalid) AS has_identity_index,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype IN ('p', 'u')
                                        AND k.condeferrable) AS has_deferrable_unique
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY ($1)
ORDER BY n.nspname, c.relname
