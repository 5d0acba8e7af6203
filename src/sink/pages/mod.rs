//! The page writer: a fresh mirror's tables written as SQLite table B-trees directly,
//! bypassing SQLite's insert path (DESIGN §23).
//!
//! SQLite itself creates the file and its schema (header, `sqlite_schema`, one empty root
//! page per table), so everything SQLite checks about those is SQLite's own work. This
//! module then appends leaf, overflow and interior pages after them, writes each tree's
//! top node to the root page SQLite reserved, and updates the header's page count. The
//! mirror is then reopened with SQLite for indexes, metadata and ANALYZE.

pub mod record;
#[cfg(test)]
mod tests;
pub mod tree;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rusqlite::Connection;

use crate::batch::RowBatch;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::quote_ident;
use crate::plan::PlannedTable;
use record::{apply_affinity, encode_record, Affined, Affinity, Converter, Field};
use tree::{build_cell, build_tree, Leaf, PageFile, Run, TreeError};

use super::{insert_exact_texts, SqliteSink, TableWriter};

/// Bytes of out-of-order cells held before they are sorted into a run of their own.
const LATE_CELL_BUDGET: usize = 32 << 20;

/// Rows per COPY task of a table without an INTEGER PRIMARY KEY: the n-th task seen gets
/// rowids from n × 2^40 + 1, so each task's rows form one run of ascending keys that no
/// other task's run overlaps, and the runs concatenate without a merge.
const TASK_ROWID_SPAN: i64 = 1 << 40;

/// What the page writer needs to know of one SQLite table, read from the schema SQLite
/// created for it.
struct TableShape {
    root: u32,
    affinities: Vec<Affinity>,
    not_null: Vec<bool>,
}

/// Cells whose keys arrived below their run's last key: sorted into runs of their own.
#[derive(Default)]
struct LateCells {
    keys: Vec<(i64, usize, usize)>,
    bytes: Vec<u8>,
}

struct PageTable {
    writer: TableWriter,
    shape: TableShape,
    /// The open run of each COPY task: a task's rows mostly arrive in key order.
    runs: HashMap<usize, Run>,
    closed: Vec<Vec<Leaf>>,
    late: LateCells,
    /// Without an INTEGER PRIMARY KEY: the rowids each task numbers its rows with.
    task_rowids: TaskRowids,
}

/// Per task, its span (in order of first arrival) and the rows it has numbered.
#[derive(Default)]
struct TaskRowids(HashMap<usize, (i64, i64)>);

impl TaskRowids {
    /// The rowid of the first of `rows` rows the task sends next (tables without an
    /// INTEGER PRIMARY KEY; SQLite numbers a single task's rows 1..n, as it would).
    fn take(&mut self, task: usize, rows: usize) -> std::result::Result<i64, String> {
        let spans = self.0.len() as i64;
        let (span, numbered) = self.0.entry(task).or_insert((spans, 0));
        let after = *numbered + rows as i64;
        // i64 rowids hold 2^23 spans of 2^40.
        if after > TASK_ROWID_SPAN || *span >= i64::MAX / TASK_ROWID_SPAN {
            return Err(format!(
                "a COPY task sent more than {TASK_ROWID_SPAN} rows, or there are more than {} tasks; use --writer sqlite",
                i64::MAX / TASK_ROWID_SPAN
            ));
        }
        let first = *span * TASK_ROWID_SPAN + *numbered + 1;
        *numbered = after;
        Ok(first)
    }
}

pub struct PageSink {
    path: std::path::PathBuf,
    file: PageFile,
    tables: Vec<PageTable>,
    converter: Converter,
    /// `_pgmirror_exact_text` rows, kept in a private SQLite file until the mirror is
    /// reopened (its table is WITHOUT ROWID, an index B-tree this writer does not build).
    exact: Connection,
    exact_file: tempfile::TempPath,
    record: Vec<u8>,
    cell: Vec<u8>,
}

/// Each table's shape (`None` for a table without columns, which has no SQLite table), or
/// why the page writer does not take the mirror: the insert loop writes it instead.
fn shapes(
    conn: &Connection,
    path: &Path,
    tables: &[PlannedTable],
) -> Result<std::result::Result<Vec<Option<TableShape>>, String>> {
    let mut header = [0u8; 100];
    std::fs::File::open(path)
        .and_then(|file| file.read_exact_at(&mut header, 0))
        .with_context(|| format!("reading the header of {}", path.display()))?;
    let word = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    // Schema format 4 (serial types 8 and 9), UTF-8, no reserved bytes, no auto-vacuum (its
    // pointer-map pages): what this writer writes.
    if word(44) != 4 || word(56) != 1 || header[20] != 0 || word(52) != 0 {
        return Ok(Err(
            "the file's schema format, text encoding, reserved bytes or auto-vacuum differ".into(),
        ));
    }
    let mut shapes = Vec::with_capacity(tables.len());
    for table in tables {
        if table.columns.is_empty() {
            shapes.push(None);
            continue;
        }
        match table_shape(conn, table)? {
            Ok(shape) => shapes.push(Some(shape)),
            Err(reason) => return Ok(Err(format!("table {:?} {reason}", table.sqlite_name))),
        }
    }
    Ok(Ok(shapes))
}

/// The table's shape, or why the page writer cannot write it.
fn table_shape(
    conn: &Connection,
    table: &PlannedTable,
) -> Result<std::result::Result<TableShape, &'static str>> {
    let context = || format!("reading the schema of SQLite table {:?}", table.sqlite_name);
    let (kind, without_rowid, strict): (String, bool, bool) = conn
        .query_row(
            "SELECT type, wr, strict FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
            [&table.sqlite_name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .with_context(context)?;
    if kind != "table" || without_rowid || strict {
        return Ok(Err("is not an ordinary rowid table"));
    }
    let indexed: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?1",
            [&table.sqlite_name],
            |r| r.get(0),
        )
        .with_context(context)?;
    if indexed {
        return Ok(Err(
            "has an index from its CREATE TABLE (UNIQUE or a non-integer key)",
        ));
    }
    if has_check_constraint(conn, &table.sqlite_name).with_context(context)? {
        return Ok(Err("has a CHECK constraint"));
    }
    let root: u32 = conn
        .query_row(
            "SELECT rootpage FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [&table.sqlite_name],
            |r| r.get(0),
        )
        .with_context(context)?;
    let columns: Vec<(String, bool, i64)> = conn
        .prepare("SELECT type, \"notnull\", hidden FROM pragma_table_xinfo(?1) ORDER BY cid")
        .and_then(|mut s| {
            s.query_map([&table.sqlite_name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()
        })
        .with_context(context)?;
    if columns.len() != table.columns.len() || columns.iter().any(|(_, _, hidden)| *hidden != 0) {
        return Ok(Err("has generated or hidden columns"));
    }
    Ok(Ok(TableShape {
        root,
        affinities: columns
            .iter()
            .map(|(declared, _, _)| Affinity::of_declared_type(declared))
            .collect(),
        not_null: columns.iter().map(|(_, not_null, _)| *not_null).collect(),
    }))
}

/// SQLite compiles a table's CHECK constraints into every INSERT on it: the program of one
/// (compiled, never run) says exactly whether there are any, where the CREATE TABLE text could
/// only be searched for a word that a column name or a comment may hold too. The connection
/// must be read-write: SQLite drops CHECK constraints when it reads a schema read-only.
fn has_check_constraint(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    let mut program = conn.prepare(&format!(
        "EXPLAIN INSERT INTO main.{} DEFAULT VALUES",
        quote_ident(table)
    ))?;
    let mut steps = program.query([])?;
    while let Some(step) = steps.next()? {
        let opcode: String = step.get("opcode")?;
        let p1: i64 = step.get("p1")?;
        if opcode == "Halt" && p1 == i64::from(rusqlite::ffi::SQLITE_CONSTRAINT_CHECK) {
            return Ok(true);
        }
    }
    Ok(false)
}

impl PageSink {
    /// Takes over a mirror whose schema `sink` created, or gives the sink back with the
    /// reason the page writer does not apply.
    pub fn take_over(
        sink: SqliteSink,
        tables: &[PlannedTable],
    ) -> Result<std::result::Result<Self, (SqliteSink, String)>> {
        let shapes = match shapes(&sink.conn, Path::new(&sink.path), tables)? {
            Ok(shapes) => shapes,
            Err(reason) => return Ok(Err((sink, reason))),
        };
        let path = std::path::PathBuf::from(&sink.path);
        let page_size: i64 = sink
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .with_context(|| format!("reading the page size of {}", sink.path))?;
        let SqliteSink {
            conn,
            tables: writers,
            ..
        } = sink;
        let context = || format!("handing {} to the page writer", path.display());
        conn.execute_batch("COMMIT").with_context(context)?;
        conn.close()
            .map_err(|(_, e)| Error::new(context(), ErrorKind::Sqlite(e)))?;

        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(context)?;
        let length = file.metadata().with_context(context)?.len();
        let page_size = page_size as usize;
        let pages = (length / page_size as u64) as u32;
        let (exact, exact_file) = exact_text_side(&path)?;
        let tables = writers
            .into_iter()
            .zip(shapes)
            .map(|(writer, shape)| PageTable {
                writer,
                shape: shape.unwrap_or(TableShape {
                    root: 0,
                    affinities: Vec::new(),
                    not_null: Vec::new(),
                }),
                runs: HashMap::new(),
                closed: Vec::new(),
                late: LateCells::default(),
                task_rowids: TaskRowids::default(),
            })
            .collect();
        let converter = Converter::new().with_context(context)?;
        Ok(Ok(PageSink {
            path,
            file: PageFile::new(file, page_size, pages),
            tables,
            converter,
            exact,
            exact_file,
            record: Vec::new(),
            cell: Vec::new(),
        }))
    }

    pub fn write_batch(&mut self, batch: &RowBatch) -> Result<()> {
        let table = &mut self.tables[batch.table];
        let name = table.writer.sqlite_name.clone();
        let context = |row: Option<usize>| match row {
            Some(row) => format!("writing row {} of the batch of table {name:?}", row + 1),
            None => format!("writing table {name:?} to {}", self.path.display()),
        };
        let first_rowid = match table.writer.rowid_column {
            Some(_) => 0,
            None => table
                .task_rowids
                .take(batch.task, batch.rows())
                .map_err(|reason| Error::unsupported(context(None), reason))?,
        };
        let mut fields: Vec<Field<'_>> = Vec::with_capacity(batch.columns);
        // A batch comes from one task: its run is looked up once, not per row.
        let page_size = self.file.page_size;
        let run = table
            .runs
            .entry(batch.task)
            .or_insert_with(|| Run::new(page_size));
        for row in 0..batch.rows() {
            fields.clear();
            let mut key = first_rowid + row as i64;
            for (column, cell) in batch.row(row).iter().enumerate() {
                let value = batch.value_ref(cell);
                let affinity = table.shape.affinities[column];
                let mut field = match apply_affinity(value, affinity) {
                    Affined::Done(field) => field,
                    Affined::AskSqlite => self
                        .converter
                        .convert(value, affinity)
                        .with_context(|| context(Some(row)))?,
                };
                let column_name = &table.writer.column_names[column];
                if table.writer.rowid_column == Some(column) {
                    key = match field {
                        Field::Integer(value) => value,
                        _ => {
                            return Err(Error::unsupported(
                                context(Some(row)),
                                format!("column {column_name:?} is the INTEGER PRIMARY KEY and got {value:?}, not an integer"),
                            ))
                        }
                    };
                    field = Field::Null;
                } else if field == Field::Null && table.shape.not_null[column] {
                    return Err(Error::unsupported(
                        context(Some(row)),
                        format!("NOT NULL constraint failed: column {column_name:?} is NULL"),
                    ));
                }
                fields.push(field);
            }
            self.record.clear();
            encode_record(&fields, &mut self.record);
            build_cell(&mut self.file, key, &self.record, &mut self.cell).with_context(|| context(None))?;
            if run.last_key.is_none_or(|last| key > last) {
                run.push(&mut self.file, key, &self.cell)
                    .with_context(|| context(None))?;
            } else {
                let start = table.late.bytes.len();
                table.late.bytes.extend_from_slice(&self.cell);
                table.late.keys.push((key, start, self.cell.len()));
            }
        }
        if table.late.bytes.len() >= LATE_CELL_BUDGET {
            sort_late_cells(&mut self.file, table).map_err(|e| tree_error(e, &name, &self.path))?;
        }
        let rowid_column = table.writer.rowid_column;
        insert_exact_texts(
            &self.exact,
            &table.writer,
            first_rowid,
            batch,
            &self.path.display().to_string(),
        )?;
        let table = &mut self.tables[batch.table];
        table.writer.inserted += batch.rows() as i64;
        table.writer.rows += batch.rows() as u64;
        debug_assert!(rowid_column == table.writer.rowid_column);
        Ok(())
    }

    /// Builds every tree, writes the header, and reopens the mirror with SQLite.
    pub fn finish(mut self, tables: &[PlannedTable]) -> Result<SqliteSink> {
        let path = self.path.clone();
        for table in &mut self.tables {
            if table.writer.column_names.is_empty() {
                continue;
            }
            let name = table.writer.sqlite_name.clone();
            sort_late_cells(&mut self.file, table).map_err(|e| tree_error(e, &name, &path))?;
            for (_, run) in table.runs.drain() {
                table.closed.push(
                    run.finish(&mut self.file)
                        .map_err(|e| tree_error(e.into(), &name, &path))?,
                );
            }
            let runs = std::mem::take(&mut table.closed);
            build_tree(&mut self.file, runs, table.shape.root).map_err(|e| tree_error(e, &name, &path))?;
        }
        let context = || format!("finishing the pages of {}", path.display());
        let (first_trunk, free_pages) = self.file.write_freelist().with_context(context)?;
        let pages = self.file.pages;
        let file = self.file.into_file().with_context(context)?;
        write_header(&file, pages, first_trunk, free_pages).with_context(context)?;
        drop(file);
        let rows: Vec<u64> = self.tables.iter().map(|t| t.writer.rows).collect();
        let inserted: Vec<i64> = self.tables.iter().map(|t| t.writer.inserted).collect();
        self.exact
            .execute_batch("COMMIT")
            .with_context(|| format!("writing exact numeric texts beside {}", path.display()))?;
        drop(self.exact);
        let sink = SqliteSink::reopen(&path, tables, &rows, &inserted)?;
        sink.conn
            .execute(
                "ATTACH DATABASE ?1 AS exact_side",
                [self.exact_file.to_string_lossy()],
            )
            .and_then(|_| {
                sink.conn.execute_batch(
                    "INSERT INTO main._pgmirror_exact_text SELECT * FROM exact_side._pgmirror_exact_text;
                     COMMIT; DETACH DATABASE exact_side; BEGIN",
                )
            })
            .with_context(|| format!("copying exact numeric texts into {}", path.display()))?;
        record_autoincrement(&sink.conn, tables)?;
        Ok(sink)
    }
}

/// Leaves in `sqlite_sequence` what SQLite's insert path would: for each AUTOINCREMENT table,
/// the largest rowid it was given, recorded only where that exceeds 0, the count it starts
/// from (an empty table has no row).
fn record_autoincrement(conn: &Connection, tables: &[PlannedTable]) -> Result<()> {
    for table in tables {
        let Some(key) = table
            .given
            .as_ref()
            .filter(|given| given.autoincrement)
            .and_then(|given| given.integer_primary_key.as_deref())
        else {
            continue;
        };
        conn.execute(
            &format!(
                "INSERT INTO sqlite_sequence (name, seq) SELECT ?1, max({key}) FROM {table} HAVING max({key}) > 0",
                key = quote_ident(key),
                table = quote_ident(&table.sqlite_name),
            ),
            [&table.sqlite_name],
        )
        .with_context(|| format!("recording the AUTOINCREMENT count of table {:?}", table.sqlite_name))?;
    }
    Ok(())
}

/// A private SQLite file beside the mirror for its exact texts until the mirror is reopened.
fn exact_text_side(mirror: &Path) -> Result<(Connection, tempfile::TempPath)> {
    let context = || format!("creating a scratch file beside {}", mirror.display());
    let directory = mirror
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let scratch = tempfile::Builder::new()
        .prefix(".pgmirror-exact-")
        .tempfile_in(directory)
        .with_context(context)?
        .into_temp_path();
    let conn = Connection::open(&scratch).with_context(context)?;
    // One transaction for the whole export: a statement of its own per exact text would
    // take and release the file's locks and write its pages every time.
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;",
    )
    .and_then(|_| conn.execute_batch(crate::mirror::EXACT_TEXT_SCHEMA))
    .and_then(|_| conn.execute_batch("BEGIN"))
    .with_context(context)?;
    Ok((conn, scratch))
}

fn sort_late_cells(file: &mut PageFile, table: &mut PageTable) -> std::result::Result<(), TreeError> {
    let late = std::mem::take(&mut table.late);
    if late.keys.is_empty() {
        return Ok(());
    }
    let mut keys = late.keys;
    keys.sort_unstable_by_key(|(key, _, _)| *key);
    let mut run = Run::new(file.page_size);
    for (key, start, len) in keys {
        if run.last_key == Some(key) {
            return Err(TreeError::DuplicateKey(key));
        }
        run.push(file, key, &late.bytes[start..start + len])?;
    }
    table.closed.push(run.finish(file)?);
    Ok(())
}

fn tree_error(error: TreeError, table: &str, path: &Path) -> Error {
    let context = format!("writing table {table:?} to {}", path.display());
    match error {
        TreeError::Io(e) => Error::new(context, ErrorKind::Io(e)),
        TreeError::DuplicateKey(key) => Error::unsupported(
            context,
            format!("two rows have the INTEGER PRIMARY KEY value {key} (UNIQUE constraint failed)"),
        ),
        TreeError::Corrupt(_) => Error::new(
            context,
            ErrorKind::Internal(
                "a page read back does not parse; was the file changed while it was written?".into(),
            ),
        ),
    }
}

/// Header fields (fileformat2 §1.3) that change when pages are added behind SQLite's back:
/// the change counter and the version-valid-for number that makes the page count valid.
fn write_header(file: &std::fs::File, pages: u32, first_trunk: u32, free_pages: u32) -> std::io::Result<()> {
    let mut header = [0u8; 100];
    file.read_exact_at(&mut header, 0)?;
    let counter = u32::from_be_bytes([header[24], header[25], header[26], header[27]]).wrapping_add(1);
    header[24..28].copy_from_slice(&counter.to_be_bytes());
    header[28..32].copy_from_slice(&pages.to_be_bytes());
    header[32..36].copy_from_slice(&first_trunk.to_be_bytes());
    header[36..40].copy_from_slice(&free_pages.to_be_bytes());
    header[92..96].copy_from_slice(&counter.to_be_bytes());
    file.write_all_at(&header, 0)
}
