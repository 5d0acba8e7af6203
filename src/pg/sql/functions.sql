-- The user functions that defaults, generated columns, CHECK constraints (of tables and
-- domains), index expressions, triggers, views, range types and access methods call, and the functions
-- those call in turn (SQL-standard bodies record their calls), with their definitions.
-- Aggregates and the I/O functions of base types are left out: the latter come with
-- their type.
WITH RECURSIVE needed(oid) AS (
    SELECT d.refobjid
    FROM pg_depend d
    WHERE d.refclassid = 'pg_proc'::regclass
      AND d.classid IN ('pg_attrdef'::regclass, 'pg_constraint'::regclass, 'pg_class'::regclass,
                        'pg_trigger'::regclass, 'pg_rewrite'::regclass, 'pg_type'::regclass,
                        'pg_am'::regclass)
  UNION
    SELECT d.refobjid
    FROM pg_depend d
    JOIN needed ON d.classid = 'pg_proc'::regclass AND d.objid = needed.oid
    WHERE d.refclassid = 'pg_proc'::regclass
)
SELECT n.nspname::text AS schema_name,
       -- Name and arguments as a restore looks them up (not regprocedure text, which
       -- depends on the session's search_path).
       format('%s(%s)', p.proname, pg_get_function_identity_arguments(p.oid)) AS signature,
       -- Never OR REPLACE: a function the lookup missed must not overwrite the target's.
       regexp_replace(pg_get_functiondef(p.oid), '^CREATE OR REPLACE ', 'CREATE ') AS definition
FROM needed
JOIN pg_proc p ON p.oid = needed.oid
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND p.prokind IN ('f', 'p', 'w')
  AND NOT EXISTS (SELECT 1 FROM pg_depend e
                  WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e')
  AND NOT EXISTS (SELECT 1 FROM pg_type t
                  WHERE t.typtype = 'b'
                    AND p.oid IN (t.typinput, t.typoutput, t.typreceive, t.typsend,
                                  t.typmodin, t.typmodout, t.typanalyze))
ORDER BY p.oid
