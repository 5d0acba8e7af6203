-- Enum, domain and standalone composite types (not those of extensions), each with the
-- body of its CREATE statement, so a restore with --create can make them.
SELECT n.nspname::text AS schema_name,
       t.typname::text AS name,
       t.typtype::text AS typtype,
       CASE t.typtype
         WHEN 'e' THEN (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                        FROM pg_enum e WHERE e.enumtypid = t.oid)
         WHEN 'd' THEN format_type(t.typbasetype, t.typtypmod)
                       || coalesce(' DEFAULT ' || t.typdefault, '')
                       || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                       || coalesce((SELECT string_agg(' CONSTRAINT ' || quote_ident(c.conname) || ' '
                                                      || pg_get_constraintdef(c.oid), '' ORDER BY c.conname)
                                    FROM pg_constraint c WHERE c.contypid = t.oid), '')
         ELSE (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                                 ORDER BY a.attnum)
               FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
       END AS body
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_class r ON r.oid = t.typrelid
WHERE (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND r.relkind = 'c'))
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
ORDER BY n.nspname, t.typname
