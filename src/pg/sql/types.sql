-- Every type's kind, domain base and array element, to resolve column codecs.
SELECT t.oid, t.typtype::text, t.typbasetype, t.typelem, t.typcategory::text
FROM pg_type t
