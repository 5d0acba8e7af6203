-- COMMENT statements for relations and their columns, constraints, indexes and triggers,
-- each with the relation it belongs to.
SELECT c.oid AS relation,
       format('COMMENT ON %s %s IS %L',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
              c.oid::regclass, d.description) AS statement
FROM pg_description d
JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND d.objoid = c.oid AND d.objsubid = 0
WHERE c.relkind IN ('r', 'p', 'm', 'v')
UNION ALL
SELECT a.attrelid, format('COMMENT ON COLUMN %s.%I IS %L', a.attrelid::regclass, a.attname, d.description)
FROM pg_description d
JOIN pg_attribute a ON d.classoid = 'pg_class'::regclass AND d.objoid = a.attrelid AND d.objsubid = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT k.conrelid, format('COMMENT ON CONSTRAINT %I ON %s IS %L', k.conname, k.conrelid::regclass, d.description)
FROM pg_description d
JOIN pg_constraint k ON d.classoid = 'pg_constraint'::regclass AND d.objoid = k.oid
WHERE k.conrelid <> 0
UNION ALL
SELECT i.indrelid, format('COMMENT ON INDEX %s IS %L', i.indexrelid::regclass, d.description)
FROM pg_description d
JOIN pg_index i ON d.classoid = 'pg_class'::regclass AND d.objoid = i.indexrelid AND d.objsubid = 0
UNION ALL
SELECT t.tgrelid, format('COMMENT ON TRIGGER %I ON %s IS %L', t.tgname, t.tgrelid::regclass, d.description)
FROM pg_description d
JOIN pg_trigger t ON d.classoid = 'pg_trigger'::regclass AND d.objoid = t.oid
ORDER BY 1, 2
