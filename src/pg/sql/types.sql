-- Every type's kind, domain base and array element, to resolve column codecs.
SELECT t.oid AS oid, t.typtype::text AS typtype, t.typbasetype AS base, t.typelem AS element,
       t.typcategory::text AS category
FROM pg_type t
