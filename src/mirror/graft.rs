//! Replacing one data table of a mirror with the same table of another mirror (an export of
//! that table alone), metadata included: how `sync --resync` re-copies a table whose
//! columns changed, or adds one, without rewriting the rest of the replica.

use std::path::Path;

use rusqlite::Connection;

use crate::pg::quote_ident;

/// The metadata tables that describe one data table, and the column naming it.
const PER_TABLE: [(&str, &str); 7] = [
    ("_pgmirror_tables", "sqlite_name"),
    ("_pgmirror_columns", "sqlite_table"),
    ("_pgmirror_indexes", "sqlite_table"),
    ("_pgmirror_constraints", "sqlite_table"),
    ("_pgmirror_partitions", "sqlite_table"),
    ("_pgmirror_curation", "sqlite_table"),
    ("_pgmirror_exact_text", "sqlite_table"),
];

/// Replaces `tables` of the mirror open on `conn` with those of the mirror file `fresh`,
/// then runs `finish` (which records what the caller needs), all in one transaction: a
/// reader sees the old tables or the new ones, never a mix. `conn` must not be inside a
/// transaction (SQLite attaches files only outside one).
pub fn graft_tables(
    conn: &Connection,
    fresh: &Path,
    tables: &[String],
    finish: impl FnOnce(&Connection) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let fresh_text = fresh.to_string_lossy();
    conn.execute("ATTACH DATABASE ?1 AS pgmirror_fresh", [fresh_text.as_ref()])?;
    let grafted = conn
        .execute_batch("BEGIN IMMEDIATE")
        .and_then(|_| tables.iter().try_for_each(|table| graft(conn, table)))
        .and_then(|_| finish(conn))
        .and_then(|_| conn.execute_batch("COMMIT"));
    if grafted.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let detached = conn.execute_batch("DETACH DATABASE pgmirror_fresh");
    grafted.and(detached)
}

fn graft(conn: &Connection, table: &str) -> rusqlite::Result<()> {
    let quoted = quote_ident(table);
    conn.execute_batch(&format!("DROP TABLE IF EXISTS main.{quoted}"))?;
    let definitions: Vec<(String, String)> = conn
        .prepare(
            "SELECT type, sql FROM pgmirror_fresh.sqlite_master \
             WHERE tbl_name = ?1 AND sql IS NOT NULL ORDER BY type = 'index', rowid",
        )?
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if !definitions.iter().any(|(kind, _)| kind == "table") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(format!("the copy has no table {table:?}")),
        ));
    }
    for (kind, sql) in &definitions {
        // Unqualified CREATE statements make their objects in main.
        conn.execute_batch(sql)?;
        if kind == "table" {
            copy_rows(conn, table)?;
        }
    }
    for (meta, key) in PER_TABLE {
        conn.execute(&format!("DELETE FROM main.{meta} WHERE {key} = ?1"), [table])?;
        conn.execute(
            &format!("INSERT INTO main.{meta} SELECT * FROM pgmirror_fresh.{meta} WHERE {key} = ?1"),
            [table],
        )?;
    }
    conn.execute(
        "DELETE FROM main._pgmirror_objects WHERE sqlite_table = ?1",
        [table],
    )?;
    conn.execute(
        "INSERT INTO main._pgmirror_objects (kind, schema_name, object_name, sqlite_table, create_sql) \
         SELECT kind, schema_name, object_name, sqlite_table, create_sql FROM pgmirror_fresh._pgmirror_objects \
         WHERE sqlite_table = ?1 ORDER BY position",
        [table],
    )?;
    // Types and sequences as the copy found them (a new column's type, a new table's sequence).
    conn.execute_batch(
        "DELETE FROM main._pgmirror_types WHERE EXISTS (SELECT 1 FROM pgmirror_fresh._pgmirror_types f \
             WHERE f.schema_name = main._pgmirror_types.schema_name AND f.type_name = main._pgmirror_types.type_name \
             AND f.kind = main._pgmirror_types.kind); \
         INSERT INTO main._pgmirror_types SELECT * FROM pgmirror_fresh._pgmirror_types; \
         INSERT OR REPLACE INTO main._pgmirror_sequences SELECT * FROM pgmirror_fresh._pgmirror_sequences;",
    )?;
    Ok(())
}

/// The rows with their rowids: exact texts are keyed by rowid, and a scan of the copy need
/// not come in rowid order.
fn copy_rows(conn: &Connection, table: &str) -> rusqlite::Result<()> {
    let quoted = quote_ident(table);
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info(?1, 'pgmirror_fresh')")?
        .query_map([table], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let list = crate::pg::quote_list(&columns);
    let sql = match super::rowid_alias(&names) {
        Some(alias) => format!(
            "INSERT INTO main.{quoted} ({alias}, {list}) SELECT {alias}, {list} FROM pgmirror_fresh.{quoted} ORDER BY {alias}"
        ),
        // Every alias is a column: the INTEGER PRIMARY KEY, if any, carries the rowid.
        None => format!("INSERT INTO main.{quoted} ({list}) SELECT {list} FROM pgmirror_fresh.{quoted}"),
    };
    conn.execute_batch(&sql)
}
