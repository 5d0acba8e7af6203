//! A mirror's soundness: SQLite's integrity check, and self-consistency (its metadata
//! describes exactly its data tables). `verify`
//! reports these findings and `restore` refuses a mirror that has any, since a restore
//! from metadata that no longer matches the data would put back something else.

use rusqlite::Connection;

use super::{Mirror, MirrorTable, METADATA_PREFIX};
use crate::convert::Codec;

/// Everything wrong with the mirror file at `path`: that it cannot be opened, what SQLite's
/// integrity check finds, and how its metadata disagrees with its data.
pub fn verify_file(path: &std::path::Path) -> Vec<String> {
    let mirror = match Mirror::open(path) {
        Ok(mirror) => mirror,
        Err(e) => return vec![e.to_string()],
    };
    let mut problems = integrity_problems(&mirror.conn);
    problems.extend(mirror.consistency_problems());
    problems
}

/// `PRAGMA integrity_check`'s findings (it prints the single row "ok" when there are none).
fn integrity_problems(conn: &Connection) -> Vec<String> {
    let found: rusqlite::Result<Vec<String>> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut statement| statement.query_map([], |r| r.get(0))?.collect());
    match found {
        Ok(rows) if rows == ["ok"] => Vec::new(),
        Ok(rows) => rows
            .into_iter()
            .map(|row| format!("integrity_check: {row}"))
            .collect(),
        Err(e) => vec![format!("integrity_check failed: {e}")],
    }
}

impl Mirror {
    /// Every way the metadata and the data tables disagree; empty for a sound mirror. For
    /// `verify`: a table the metadata does not know (a user's own, an FTS index's shadow
    /// tables) is reported too.
    pub fn consistency_problems(&self) -> Vec<String> {
        let all: Vec<&MirrorTable> = self.tables.iter().collect();
        let mut problems = self.problems_of(&all);
        match unrecorded_tables(&self.conn, self) {
            Ok(names) => problems.extend(
                names
                    .into_iter()
                    .map(|n| format!("data table {n:?} has no row in _pgmirror_tables")),
            ),
            Err(e) => problems.push(format!("listing the file's tables: {e}")),
        }
        problems
    }

    /// How the format marks and these tables disagree with the metadata. For `restore`,
    /// which reads only the tables it restores.
    pub fn problems_of(&self, tables: &[&MirrorTable]) -> Vec<String> {
        let mut problems = Vec::new();
        check_format_marks(&self.conn, &mut problems);
        for table in tables {
            let name = &table.sqlite_name;
            // A table without columns is its recorded row count alone; no data table holds it.
            if table.columns.is_empty() {
                match table_columns(&self.conn, name) {
                    Ok(actual) if actual.is_empty() => {}
                    Ok(_) => problems.push(format!(
                        "table {name:?} has columns in the file, but _pgmirror_columns records none"
                    )),
                    Err(e) => problems.push(format!("table {name:?}: cannot read its columns: {e}")),
                }
                if table.row_count < 0 {
                    problems.push(format!(
                        "table {name:?}: _pgmirror_tables records {} rows",
                        table.row_count
                    ));
                }
                continue;
            }
            match table_columns(&self.conn, name) {
                Ok(actual) if actual.is_empty() => problems.push(format!(
                    "table {name:?} is in _pgmirror_tables but not in the file"
                )),
                Ok(actual) => {
                    let recorded: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
                    if actual != recorded {
                        problems.push(format!(
                            "table {name:?} has columns {actual:?}, _pgmirror_columns records {recorded:?}"
                        ));
                    }
                }
                Err(e) => problems.push(format!("table {name:?}: cannot read its columns: {e}")),
            }
            if let Err(e) = table.loadable_columns() {
                problems.push(e.to_string());
            }
            let count = format!("SELECT count(*) FROM {}", crate::pg::quote_ident(name));
            match self.conn.query_row(&count, [], |r| r.get::<_, i64>(0)) {
                Ok(rows) if rows == table.row_count => {}
                Ok(rows) => problems.push(format!(
                    "table {name:?} holds {rows} rows, _pgmirror_tables says {}",
                    table.row_count
                )),
                Err(e) => problems.push(format!("table {name:?} is unreadable: {e}")),
            }
        }
        if let Err(e) = self.exact_text_problems(tables, &mut problems) {
            problems.push(format!("_pgmirror_exact_text is unreadable: {e}"));
        }
        problems
    }

    /// Every kept exact text must belong to a numeric column of a row still in its table,
    /// whose cell still holds the number the text was stored as.
    fn exact_text_problems(
        &self,
        tables: &[&MirrorTable],
        problems: &mut Vec<String>,
    ) -> rusqlite::Result<()> {
        if !super::has_table(&self.conn, "_pgmirror_exact_text")? {
            return Ok(());
        }
        let mut kept = self.conn.prepare(
            "SELECT sqlite_table, column_name, count(*) FROM _pgmirror_exact_text GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        let kept: Vec<(String, String, i64)> = kept
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let checked_all = tables.len() == self.tables.len();
        for (table_name, column_name, count) in kept {
            let Some(table) = tables.iter().find(|t| t.sqlite_name == table_name) else {
                if checked_all {
                    problems.push(format!(
                        "_pgmirror_exact_text keeps {count} values of table {table_name:?}, which the mirror does not record"
                    ));
                }
                continue;
            };
            let codec = table
                .columns
                .iter()
                .find(|c| c.name == column_name)
                .and_then(|c| Codec::from_name(&c.codec))
                .filter(|codec| codec.keeps_exact_text());
            let Some(codec) = codec else {
                problems.push(format!(
                    "_pgmirror_exact_text keeps {count} values of table {table_name:?}, column \
                     {column_name:?}, which is not a numeric column of it"
                ));
                continue;
            };
            self.stale_exact_texts(table, &column_name, codec, problems)?;
        }
        Ok(())
    }

    /// Kept texts of one column whose row is gone or whose cell was changed (at most a few named).
    fn stale_exact_texts(
        &self,
        table: &MirrorTable,
        column: &str,
        codec: Codec,
        problems: &mut Vec<String>,
    ) -> rusqlite::Result<()> {
        const NAMED: usize = 5;
        let Some(rowid) = super::rows::rowid_expression(&self.conn, table)? else {
            problems.push(format!(
                "table {:?}: columns named rowid, _rowid_ and oid hide the rowid its exact values are keyed by",
                table.sqlite_name
            ));
            return Ok(());
        };
        let mut statement = self.conn.prepare(&format!(
            "SELECT e.row, e.exact_text, t.{rowid} IS NOT NULL, t.{column} FROM _pgmirror_exact_text e \
             LEFT JOIN {table} t ON t.{rowid} = e.row WHERE e.sqlite_table = ?1 AND e.column_name = ?2 ORDER BY e.row",
            column = crate::pg::quote_ident(column),
            table = crate::pg::quote_ident(&table.sqlite_name),
        ))?;
        let mut rows = statement.query([&table.sqlite_name, column])?;
        let mut stale = 0;
        while let Some(row) = rows.next()? {
            let (rowid, exact, present): (i64, String, bool) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let cell = row.get_ref(3)?;
            if present && crate::convert::exact_text_agrees(codec, &exact, cell) {
                continue;
            }
            stale += 1;
            if stale <= NAMED {
                problems.push(if present {
                    super::rows::stale_exact_text(table, rowid, column, cell, &exact).to_string()
                } else {
                    format!(
                        "_pgmirror_exact_text keeps {exact:?} for table {:?}, column {column:?}, rowid {rowid}, \
                         which is no longer in the table",
                        table.sqlite_name
                    )
                });
            }
        }
        if stale > NAMED {
            problems.push(format!(
                "table {:?}, column {column:?}: {} more kept exact values no longer match their cells",
                table.sqlite_name,
                stale - NAMED
            ));
        }
        Ok(())
    }
}

/// `_pgmirror_meta` must say which format it is, and agree with the file header.
fn check_format_marks(conn: &Connection, problems: &mut Vec<String>) {
    let recorded: rusqlite::Result<String> = conn.query_row(
        "SELECT value FROM _pgmirror_meta WHERE key = 'format_version'",
        [],
        |r| r.get(0),
    );
    let header: rusqlite::Result<i32> = conn.query_row("PRAGMA user_version", [], |r| r.get(0));
    match (recorded, header) {
        (Ok(recorded), Ok(header)) if recorded == header.to_string() => {}
        (Ok(recorded), Ok(header)) => problems.push(format!(
            "_pgmirror_meta says format {recorded:?}, the file header (user_version) says {header}"
        )),
        (Err(rusqlite::Error::QueryReturnedNoRows), _) => {
            problems.push("_pgmirror_meta has no format_version".to_owned())
        }
        (Err(e), _) | (_, Err(e)) => problems.push(format!("_pgmirror_meta is unreadable: {e}")),
    }
}

/// The table's column names in order; empty when there is no such table.
fn table_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
    let names = statement.query_map([table], |r| r.get(0))?;
    names.collect()
}

/// Tables of the file that are neither metadata, SQLite's own, nor recorded.
fn unrecorded_tables(conn: &Connection, mirror: &Mirror) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let names = statement.query_map([], |r| r.get::<_, String>(0))?;
    let mut unrecorded = Vec::new();
    for name in names {
        let name = name?;
        if !name.starts_with(METADATA_PREFIX) && mirror.table(&name).is_none() {
            unrecorded.push(name);
        }
    }
    Ok(unrecorded)
}
