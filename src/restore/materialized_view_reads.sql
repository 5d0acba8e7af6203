-- For the materialized views named in $1 (qualified text), which of them each one reads,
-- directly or through plain views: (reader, read), both as the names given.
WITH RECURSIVE wanted AS (
    SELECT name, to_regclass(name) AS oid FROM unnest($1::text[]) AS name
), reads(reader, relation) AS (
    SELECT w.oid, d.refobjid
    FROM wanted w
    JOIN pg_rewrite r ON r.ev_class = w.oid
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> w.oid
  UNION
    SELECT reads.reader, d.refobjid
    FROM reads
    JOIN pg_class v ON v.oid = reads.relation AND v.relkind = 'v'
    JOIN pg_rewrite r ON r.ev_class = v.oid
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid
)
SELECT DISTINCT r.name AS reader, w.name AS read
FROM reads
JOIN wanted r ON r.oid = reads.reader
JOIN wanted w ON w.oid = reads.relation
