//! Reading a mirror table's rows back with each value as exact as the export left it: the
//! stored cell, or the exact text `_pgmirror_exact_text` keeps for it (format 3). Restore,
//! `csv export` and `verify` all read rows through here.

use rusqlite::types::ValueRef;
use rusqlite::{Rows, Statement};

use super::{has_table, Mirror, MirrorTable};
use crate::convert::Codec;
use crate::error::{Context, Error, Result};
use crate::pg::{quote_ident, quote_list};

/// The names SQLite gives the rowid, unless a column takes them.
const ROWID_ALIASES: [&str; 3] = ["rowid", "_rowid_", "oid"];

/// The rowid's name in a table with these columns; `None` when columns take all three.
pub fn rowid_alias(columns: &[&str]) -> Option<&'static str> {
    ROWID_ALIASES
        .into_iter()
        .find(|alias| !columns.iter().any(|c| c.eq_ignore_ascii_case(alias)))
}

/// How to select a mirror table's rowid: a free alias, else its INTEGER PRIMARY KEY column,
/// the value exact texts are keyed by; `None` when columns take every name and the table
/// has no such key.
pub fn rowid_expression(
    conn: &rusqlite::Connection,
    table: &MirrorTable,
) -> rusqlite::Result<Option<String>> {
    let columns: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    if let Some(alias) = rowid_alias(&columns) {
        return Ok(Some(alias.to_owned()));
    }
    Ok(integer_primary_key(conn, &table.sqlite_name)?.map(|name| quote_ident(&name)))
}

/// The table's INTEGER PRIMARY KEY column (its rowid), if it has one.
pub fn integer_primary_key(conn: &rusqlite::Connection, table: &str) -> rusqlite::Result<Option<String>> {
    // A key with an index of its own (DESC, WITHOUT ROWID) is not the rowid.
    let key_has_index: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_index_list(?1) WHERE origin = 'pk'",
        [table],
        |r| r.get(0),
    )?;
    if key_has_index {
        return Ok(None);
    }
    let keys: Vec<(String, String)> = conn
        .prepare("SELECT name, upper(type) FROM pragma_table_info(?1) WHERE pk > 0")?
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(match keys.as_slice() {
        [(name, declared)] if declared == "INTEGER" => Some(name.clone()),
        _ => None,
    })
}

/// The prepared reads of one table: its rows in rowid order, and its exact texts.
pub struct RowReader<'m> {
    table: &'m MirrorTable,
    mirror_path: &'m str,
    columns: Vec<(String, Codec)>,
    rows: Statement<'m>,
    exact: Option<Statement<'m>>,
}

impl<'m> RowReader<'m> {
    /// Reads `columns` (names with their codecs) of `table`.
    pub fn new(mirror: &'m Mirror, table: &'m MirrorTable, columns: &[(&str, Codec)]) -> Result<Self> {
        let reading = || format!("reading table {:?} of mirror {}", table.sqlite_name, mirror.path);
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let has_exact = has_table(&mirror.conn, "_pgmirror_exact_text").with_context(reading)?
            && mirror
                .conn
                .query_row(
                    "SELECT count(*) > 0 FROM _pgmirror_exact_text WHERE sqlite_table = ?1",
                    [&table.sqlite_name],
                    |r| r.get::<_, bool>(0),
                )
                .with_context(reading)?;
        let rowid = match (
            rowid_expression(&mirror.conn, table).with_context(reading)?,
            has_exact,
        ) {
            (Some(rowid), _) => rowid,
            // Without exact texts the rowid only orders the rows; any order restores them.
            (None, false) => "NULL".to_owned(),
            (None, true) => {
                return Err(Error::unsupported(
                    reading(),
                    "columns named rowid, _rowid_ and oid hide the rowid its exact values are keyed by",
                ))
            }
        };
        let rows = mirror
            .conn
            .prepare(&format!(
                "SELECT {rowid}, {} FROM {} ORDER BY {rowid}",
                quote_list(&names),
                quote_ident(&table.sqlite_name)
            ))
            .with_context(reading)?;
        let exact = if has_exact {
            Some(
                mirror
                    .conn
                    .prepare(
                        "SELECT row, column_name, exact_text FROM _pgmirror_exact_text \
                         WHERE sqlite_table = ?1 ORDER BY row",
                    )
                    .with_context(reading)?,
            )
        } else {
            None
        };
        Ok(RowReader {
            table,
            mirror_path: &mirror.path,
            columns: columns
                .iter()
                .map(|(name, codec)| ((*name).to_owned(), *codec))
                .collect(),
            rows,
            exact,
        })
    }

    /// The rows, in rowid order.
    pub fn rows(&mut self) -> Result<RowCursor<'_>> {
        let reading = format!(
            "reading table {:?} of mirror {}",
            self.table.sqlite_name, self.mirror_path
        );
        let rows = self.rows.query([]).with_context(|| reading.clone())?;
        let exact = match &mut self.exact {
            Some(statement) => Some(
                statement
                    .query([&self.table.sqlite_name])
                    .with_context(|| reading.clone())?,
            ),
            None => None,
        };
        Ok(RowCursor {
            table: self.table,
            columns: &self.columns,
            reading,
            rows,
            exact,
            pending: None,
            overrides: vec![None; self.columns.len()],
        })
    }
}

/// A table's rows one at a time, each with the exact texts that replace its stored cells.
pub struct RowCursor<'r> {
    table: &'r MirrorTable,
    columns: &'r [(String, Codec)],
    reading: String,
    rows: Rows<'r>,
    exact: Option<Rows<'r>>,
    /// The next exact text not yet matched to a row: (rowid, column index, text).
    pending: Option<(i64, Option<usize>, String)>,
    overrides: Vec<Option<String>>,
}

/// One row: `value(i)` is the i-th requested column's value.
pub struct MirrorRow<'c> {
    row: &'c rusqlite::Row<'c>,
    overrides: &'c [Option<String>],
    reading: &'c str,
}

impl MirrorRow<'_> {
    pub fn value(&self, index: usize) -> Result<ValueRef<'_>> {
        match &self.overrides[index] {
            Some(text) => Ok(ValueRef::Text(text.as_bytes())),
            None => self
                .row
                .get_ref(index + 1)
                .with_context(|| self.reading.to_owned()),
        }
    }
}

impl RowCursor<'_> {
    pub fn next_row(&mut self) -> Result<Option<MirrorRow<'_>>> {
        let reading = &self.reading;
        let Some(row) = self.rows.next().with_context(|| reading.clone())? else {
            return Ok(None);
        };
        // Only a table with kept texts has overrides to clear: no per-row work otherwise.
        if let Some(exact) = &mut self.exact {
            for slot in &mut self.overrides {
                *slot = None;
            }
            let rowid: Option<i64> = row.get(0).with_context(|| reading.clone())?;
            let rowid = rowid.unwrap_or(i64::MIN);
            loop {
                if self.pending.is_none() {
                    let Some(next) = exact.next().with_context(|| reading.clone())? else {
                        break;
                    };
                    let name: String = next.get(1).with_context(|| reading.clone())?;
                    let column = self.columns.iter().position(|(c, _)| *c == name);
                    self.pending = Some((
                        next.get(0).with_context(|| reading.clone())?,
                        column,
                        next.get(2).with_context(|| reading.clone())?,
                    ));
                }
                let Some((at, column, _)) = &self.pending else {
                    break;
                };
                if *at > rowid {
                    break;
                }
                let (at, column) = (*at, *column);
                let text = self.pending.take().map(|(_, _, text)| text).unwrap_or_default();
                // Texts of rows no longer in the table, or of columns not read, are passed over.
                let Some(column) = column.filter(|_| at == rowid) else {
                    continue;
                };
                let (name, codec) = &self.columns[column];
                let cell = row.get_ref(column + 1).with_context(|| reading.clone())?;
                if !crate::convert::exact_text_agrees(*codec, &text, cell) {
                    return Err(stale_exact_text(self.table, at, name, cell, &text));
                }
                self.overrides[column] = Some(text);
            }
        }
        Ok(Some(MirrorRow {
            row,
            overrides: &self.overrides,
            reading: &self.reading,
        }))
    }
}

/// A kept exact text whose cell was changed after export: restoring either would be a guess.
pub fn stale_exact_text(
    table: &MirrorTable,
    rowid: i64,
    column: &str,
    cell: ValueRef<'_>,
    exact: &str,
) -> Error {
    Error::unsupported(
        format!(
            "mirror table {:?}, row with rowid {rowid}, column {column:?}",
            table.sqlite_name
        ),
        format!(
            "the cell holds {}, but _pgmirror_exact_text keeps {exact:?} for it: the data table \
             was changed after export. Put the number back, or delete the row of \
             _pgmirror_exact_text to keep the cell's value",
            describe_cell(cell)
        ),
    )
}

fn describe_cell(cell: ValueRef<'_>) -> String {
    match cell {
        ValueRef::Null => "NULL".to_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => format!("{f:?}"),
        ValueRef::Text(text) => format!("{:?}", String::from_utf8_lossy(text)),
        ValueRef::Blob(bytes) => format!("a blob of {} bytes", bytes.len()),
    }
}
