-- Enum, domain, standalone composite, range and base types (not those of extensions, not
-- the array and multirange types PostgreSQL makes itself), each with the body of its
-- CREATE statement, so a restore with --create can make them. A base type also brings the
-- definitions of its I/O functions, which must follow its shell type.
SELECT n.nspname::text AS schema_name,
       t.typname::text AS name,
       t.typtype::text AS typtype,
       CASE t.typtype
         WHEN 'e' THEN (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                        FROM pg_enum e WHERE e.enumtypid = t.oid)
         WHEN 'd' THEN format_type(t.typbasetype, t.typtypmod)
                       || coalesce(' COLLATE ' || (SELECT format('%I.%I', cn.nspname, co.collname)
                                                   FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                                                   WHERE co.oid = t.typcollation
                                                     AND t.typcollation <> (SELECT b.typcollation FROM pg_type b WHERE b.oid = t.typbasetype)), '')
                       || coalesce(' DEFAULT ' || t.typdefault, '')
                       || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                       || coalesce((SELECT string_agg(' CONSTRAINT ' || quote_ident(c.conname) || ' '
                                                      || pg_get_constraintdef(c.oid), '' ORDER BY c.conname)
                                    FROM pg_constraint c WHERE c.contypid = t.oid), '')
         WHEN 'r' THEN (SELECT 'SUBTYPE = ' || format_type(r.rngsubtype, NULL)
                               || CASE WHEN NOT opc.opcdefault
                                       THEN format(', SUBTYPE_OPCLASS = %I.%I', opn.nspname, opc.opcname) ELSE '' END
                               || CASE WHEN r.rngcollation <> 0
                                        AND r.rngcollation <> (SELECT s.typcollation FROM pg_type s WHERE s.oid = r.rngsubtype)
                                       THEN (SELECT format(', COLLATION = %I.%I', cn.nspname, co.collname)
                                             FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                                             WHERE co.oid = r.rngcollation) ELSE '' END
                               || CASE WHEN r.rngcanonical::oid <> 0 THEN ', CANONICAL = ' || r.rngcanonical::text ELSE '' END
                               || CASE WHEN r.rngsubdiff::oid <> 0 THEN ', SUBTYPE_DIFF = ' || r.rngsubdiff::text ELSE '' END
                               || coalesce(', MULTIRANGE_TYPE_NAME = '
                                           || nullif((to_jsonb(r) ->> 'rngmultitypid')::oid, 0)::regtype::text, '')
                        FROM pg_range r
                        JOIN pg_opclass opc ON opc.oid = r.rngsubopc
                        JOIN pg_namespace opn ON opn.oid = opc.opcnamespace
                        WHERE r.rngtypid = t.oid)
         WHEN 'b' THEN 'INPUT = ' || t.typinput::text || ', OUTPUT = ' || t.typoutput::text
                       || CASE WHEN t.typreceive::oid <> 0 THEN ', RECEIVE = ' || t.typreceive::text ELSE '' END
                       || CASE WHEN t.typsend::oid <> 0 THEN ', SEND = ' || t.typsend::text ELSE '' END
                       || CASE WHEN t.typmodin::oid <> 0 THEN ', TYPMOD_IN = ' || t.typmodin::text ELSE '' END
                       || CASE WHEN t.typmodout::oid <> 0 THEN ', TYPMOD_OUT = ' || t.typmodout::text ELSE '' END
                       || CASE WHEN t.typanalyze::oid <> 0 THEN ', ANALYZE = ' || t.typanalyze::text ELSE '' END
                       || ', INTERNALLENGTH = ' || CASE WHEN t.typlen = -1 THEN 'VARIABLE'
                                                        WHEN t.typlen = -2 THEN '-2' ELSE t.typlen::text END
                       || CASE WHEN t.typbyval THEN ', PASSEDBYVALUE' ELSE '' END
                       || ', ALIGNMENT = ' || CASE t.typalign WHEN 'c' THEN 'char' WHEN 's' THEN 'int2'
                                                              WHEN 'i' THEN 'int4' ELSE 'double' END
                       || ', STORAGE = ' || CASE t.typstorage WHEN 'p' THEN 'plain' WHEN 'e' THEN 'external'
                                                              WHEN 'm' THEN 'main' ELSE 'extended' END
                       || ', CATEGORY = ' || quote_literal(t.typcategory::text)
                       || CASE WHEN t.typispreferred THEN ', PREFERRED = true' ELSE '' END
                       || coalesce(', DEFAULT = ' || quote_literal(t.typdefault), '')
                       || CASE WHEN t.typelem <> 0 THEN ', ELEMENT = ' || format_type(t.typelem, NULL) ELSE '' END
                       || CASE WHEN t.typdelim::text <> ',' THEN ', DELIMITER = ' || quote_literal(t.typdelim::text) ELSE '' END
                       || CASE WHEN t.typcollation <> 0 THEN ', COLLATABLE = true' ELSE '' END
         ELSE (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
                                 || coalesce((SELECT format(' COLLATE %I.%I', cn.nspname, co.collname)
                                              FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                                              JOIN pg_type at ON at.oid = a.atttypid
                                              WHERE co.oid = a.attcollation AND a.attcollation <> at.typcollation), ''),
                                 ', ' ORDER BY a.attnum)
               FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
       END AS body,
       CASE WHEN t.typtype = 'b' THEN
         (SELECT string_agg(regexp_replace(pg_get_functiondef(f.oid), '^CREATE OR REPLACE ', 'CREATE '), E';\n' ORDER BY f.position)
          FROM unnest(ARRAY[t.typinput, t.typoutput, t.typreceive, t.typsend,
                            t.typmodin, t.typmodout, t.typanalyze]::oid[]) WITH ORDINALITY AS f(oid, position)
          JOIN pg_proc p ON p.oid = f.oid
          JOIN pg_namespace pn ON pn.oid = p.pronamespace
          WHERE pn.nspname <> 'pg_catalog')
       END AS io_functions
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_class r ON r.oid = t.typrelid
WHERE (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND r.relkind = 'c')
       OR (t.typtype = 'b' AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)))
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
ORDER BY n.nspname, t.typname
