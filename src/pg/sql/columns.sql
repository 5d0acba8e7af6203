-- Live columns of user relations, in physical order (dropped columns skipped), with the
-- collation each column has when it is not its type's.
SELECT a.attrelid AS relation,
       a.attnum AS attnum,
       a.attname::text AS name,
       format_type(a.atttypid, a.atttypmod) AS type_text,
       a.atttypid AS type_oid,
       a.atttypmod AS typmod,
       a.attnotnull AS not_null,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr,
       a.attidentity::text AS identity,
       a.attgenerated::text AS generated,
       a.attislocal AS is_local,
       (SELECT format('%I.%I', cn.nspname, co.collname)
        FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace JOIN pg_type ty ON ty.oid = a.atttypid
        WHERE co.oid = a.attcollation AND a.attcollation <> ty.typcollation) AS collation
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p', 'm', 'v')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_)'
ORDER BY a.attrelid, a.attnum
