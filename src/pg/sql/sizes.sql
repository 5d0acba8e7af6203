-- On-disk size of each relation, taken after the relations are locked.
SELECT c.oid AS oid, pg_relation_size(c.oid) AS size_bytes
FROM pg_class c
WHERE c.oid = ANY($1)
