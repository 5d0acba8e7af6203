-- Access methods made with CREATE ACCESS METHOD (not built in, not an extension's).
SELECT a.amname::text AS name,
       a.amtype::text AS amtype,
       a.amhandler::regproc::text AS handler
FROM pg_am a
WHERE a.oid >= 16384
  AND NOT EXISTS (SELECT 1 FROM pg_depend e
                  WHERE e.classid = 'pg_am'::regclass AND e.objid = a.oid AND e.deptype = 'e')
ORDER BY a.amname
