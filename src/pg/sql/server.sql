-- Server identity and the snapshot's start time, read inside the exported snapshot.
SELECT current_setting('server_version') AS version,
       current_setting('server_version_num')::int4 AS version_num,
       current_database()::text AS database,
       current_setting('block_size')::int8 AS block_size,
       current_setting('lc_monetary') AS lc_monetary,
       scale(0::money::numeric) AS money_scale,
       to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS snapshot_time
