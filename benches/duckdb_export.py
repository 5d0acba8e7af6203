# DuckDB's PostgreSQL-to-SQLite copy, for benches/export.rs: its postgres and sqlite
# extensions from the pip wheels duckdb-ext-postgres and duckdb-ext-sqlite (offline, no
# INSTALL from the network). Prints "seconds rows", timed from the first ATTACH.
#   python3 duckdb_export.py CONNINFO OUT.db TABLE...     python3 duckdb_export.py --check
import os
import sys
import time

import duckdb

site = os.path.dirname(os.path.dirname(duckdb.__file__))
con = duckdb.connect()
# Its progress bar goes to stdout, where the result is read.
con.execute("SET enable_progress_bar = false")
con.execute(f"SET extension_directory = '{os.path.join(site, 'duckdb_ext', 'extensions')}'")
con.execute("LOAD postgres")
con.execute("LOAD sqlite")
if sys.argv[1] == "--check":
    sys.exit(0)
conninfo, out, tables = sys.argv[1], sys.argv[2], sys.argv[3:]
quote = lambda name: '"' + name.replace('"', '""') + '"'
literal = lambda text: "'" + text.replace("'", "''") + "'"
started = time.monotonic()
con.execute(f"ATTACH {literal(conninfo)} AS pg (TYPE postgres, READ_ONLY)")
con.execute(f"ATTACH {literal(out)} AS out (TYPE sqlite)")
for table in tables:
    con.execute(f"CREATE TABLE out.{quote(table)} AS SELECT * FROM pg.public.{quote(table)}")
con.execute("DETACH out")
seconds = time.monotonic() - started
con.execute(f"ATTACH {literal(out)} AS written (TYPE sqlite, READ_ONLY)")
rows = sum(con.execute(f"SELECT count(*) FROM written.{quote(t)}").fetchone()[0] for t in tables)
print(f"{seconds} {rows}")
