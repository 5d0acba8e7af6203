//! `_pgmirror_sync`: what makes a mirror a replica (`pgmirror sync`). Written by the export
//! that starts it, in the same file as the data, and advanced in the same SQLite
//! transaction as every batch of changes applied, so the mirror always says exactly which
//! source commit it reflects.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Context, Error, ErrorKind, Result};

pub const SYNC_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS _pgmirror_sync (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
";

/// The replication set-up and progress of a replica.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncState {
    pub slot: String,
    pub publication: String,
    /// `host=... port=... dbname=... user=...`: where the changes come from. Never a password.
    pub source: String,
    /// pg_control_system().system_identifier: a mirror is not applied from another cluster.
    pub system_identifier: String,
    /// `pg_current_snapshot()` of the initial copy, until the mirror is consistent.
    pub snapshot: Option<String>,
    /// The WAL position right after the initial copy's snapshot: past it, no streamed
    /// transaction can be in the copy.
    pub consistent_lsn: String,
    /// Just past the last source commit applied: the only place the stream resumes.
    pub applied_lsn: String,
    /// The commit time of the last applied transaction (RFC 3339), if any.
    pub applied_commit_time: Option<String>,
    /// The SQLite tables that follow the source.
    pub tables: Vec<String>,
    /// Tables copied again (`sync --resync`) whose copy the stream has not passed yet.
    pub resyncs: Vec<TableResync>,
}

/// A table's own copy, taken later than the replica's: until the stream passes `lsn`, the
/// table's changes in transactions `snapshot` sees are in the copy already.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableResync {
    pub table: String,
    pub snapshot: String,
    pub lsn: String,
}

impl SyncState {
    /// Writes the whole state (creating the table).
    pub fn write(&self, conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch(SYNC_SCHEMA)?;
        let tables = serde_json::to_string(&self.tables).unwrap_or_else(|_| "[]".into());
        let resyncs = (!self.resyncs.is_empty())
            .then(|| serde_json::to_string(&self.resyncs).unwrap_or_else(|_| "[]".into()));
        let mut insert =
            conn.prepare("INSERT OR REPLACE INTO _pgmirror_sync (key, value) VALUES (?1, ?2)")?;
        for (key, value) in [
            ("slot", Some(self.slot.as_str())),
            ("publication", Some(self.publication.as_str())),
            ("source", Some(self.source.as_str())),
            ("system_identifier", Some(self.system_identifier.as_str())),
            ("snapshot", self.snapshot.as_deref()),
            ("consistent_lsn", Some(self.consistent_lsn.as_str())),
            ("applied_lsn", Some(self.applied_lsn.as_str())),
            ("applied_commit_time", self.applied_commit_time.as_deref()),
            ("tables", Some(tables.as_str())),
            ("resyncs", resyncs.as_deref()),
        ] {
            match value {
                Some(value) => insert.execute(params![key, value])?,
                None => conn.execute("DELETE FROM _pgmirror_sync WHERE key = ?1", [key])?,
            };
        }
        Ok(())
    }

    /// Makes a replica a plain mirror again (`sync --drop`): no state, the default journal.
    pub fn remove(conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch("DROP TABLE IF EXISTS _pgmirror_sync; PRAGMA journal_mode = DELETE")
    }

    /// The replica state of an open mirror; `None` when it is a plain mirror.
    pub fn read(conn: &Connection, path: &str) -> Result<Option<SyncState>> {
        let context = || format!("reading the replication state of {path}");
        let exists: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE name = '_pgmirror_sync'",
                [],
                |r| r.get(0),
            )
            .with_context(context)?;
        if !exists {
            return Ok(None);
        }
        let get = |key: &str| -> Result<Option<String>> {
            conn.query_row("SELECT value FROM _pgmirror_sync WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .with_context(context)
        };
        let required = |key: &str| -> Result<String> {
            get(key)?.ok_or_else(|| {
                Error::new(
                    context(),
                    ErrorKind::Unsupported(format!("_pgmirror_sync has no {key:?}; the mirror was edited")),
                )
            })
        };
        let tables_text = required("tables")?;
        let tables: Vec<String> = serde_json::from_str(&tables_text).map_err(|e| {
            Error::new(
                context(),
                ErrorKind::Unsupported(format!(
                    "_pgmirror_sync \"tables\" is not a JSON list of names: {e}"
                )),
            )
        })?;
        let resyncs: Vec<TableResync> = match get("resyncs")? {
            None => Vec::new(),
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                Error::new(
                    context(),
                    ErrorKind::Unsupported(format!("_pgmirror_sync \"resyncs\" is unreadable: {e}")),
                )
            })?,
        };
        Ok(Some(SyncState {
            slot: required("slot")?,
            publication: required("publication")?,
            source: required("source")?,
            system_identifier: required("system_identifier")?,
            snapshot: get("snapshot")?,
            consistent_lsn: required("consistent_lsn")?,
            applied_lsn: required("applied_lsn")?,
            applied_commit_time: get("applied_commit_time")?,
            tables,
            resyncs,
        }))
    }
}

/// Keeps `_pgmirror_tables.row_count` true as changes add and remove rows.
pub fn record_row_count(conn: &Connection, sqlite_table: &str, rows: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE _pgmirror_tables SET row_count = ?2 WHERE sqlite_name = ?1")?
        .execute(params![sqlite_table, rows])?;
    Ok(())
}

/// The statements that keep `_pgmirror_exact_text` in step with a changed row.
pub mod exact_text_sql {
    pub const INSERT: &str =
        "INSERT OR REPLACE INTO _pgmirror_exact_text (sqlite_table, row, column_name, exact_text) VALUES (?1, ?2, ?3, ?4)";
    pub const DELETE_COLUMN: &str =
        "DELETE FROM _pgmirror_exact_text WHERE sqlite_table = ?1 AND row = ?2 AND column_name = ?3";
    pub const DELETE_ROW: &str = "DELETE FROM _pgmirror_exact_text WHERE sqlite_table = ?1 AND row = ?2";
    pub const MOVE_ROW: &str =
        "UPDATE _pgmirror_exact_text SET row = ?3 WHERE sqlite_table = ?1 AND row = ?2";
    pub const DELETE_TABLE: &str = "DELETE FROM _pgmirror_exact_text WHERE sqlite_table = ?1";
}

/// Keeps a sequence's recorded value current: sequences are not in the change stream.
pub fn record_sequence_value(
    conn: &Connection,
    schema: &str,
    name: &str,
    value: Option<i64>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE _pgmirror_sequences SET last_value = ?3 WHERE schema_name = ?1 AND sequence_name = ?2",
    )?
    .execute(params![schema, name, value])?;
    Ok(())
}
