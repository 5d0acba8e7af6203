-- Server identity and the snapshot's start time, read inside the exported snapshot.
SELECT current_setting('server_version'),
       current_setting('server_version_num')::int4,
       current_database()::text,
       current_setting('block_size')::int8,
       to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
