-- Every type's kind, domain base and array element, to resolve column codecs.
SELECT t.oid AS oid, t.typtype::text AS typtype, t.typbasetype AS base, t.typtypmod AS typmod,
       t.typelem AS element,
       -- An array is the type its element names as its array type: int2vector and
       -- oidvector have category 'A' and an element too, but COPY treats them as scalars.
       (t.typcategory = 'A' AND EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem AND e.typarray = t.oid))
           AS is_array
FROM pg_type t
