-- User triggers (not the internal ones of foreign keys, not the clones partitions get from
-- their partitioned table) with their definitions and whether they fire
-- (tgenabled: O origin, D disabled, R replica, A always).
SELECT t.tgrelid AS relation,
       t.tgname::text AS name,
       pg_get_triggerdef(t.oid) AS definition,
       t.tgenabled::text AS enabled
FROM pg_trigger t
WHERE NOT t.tgisinternal
  AND coalesce((to_jsonb(t) ->> 'tgparentid')::oid, 0) = 0
ORDER BY t.tgrelid, t.tgname
