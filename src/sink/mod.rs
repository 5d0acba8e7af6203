//! The SQLite side: data-table DDL, the batched insert loop and finalisation.
//! Knows nothing of tokio or the wire format; it receives RowBatches. `pages` is the
//! page writer that takes over a fresh mirror once SQLite created its schema.

pub mod pages;

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::batch::{Cell, RowBatch};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::mirror::{self, IndexOutcome, Metadata};
use crate::pg::{quote_ident, quote_list};
use crate::plan::PlannedTable;

/// SQLite's default limit on bound parameters per statement (SQLITE_MAX_VARIABLE_NUMBER).
const MAX_PARAMETERS: usize = 32_766;
/// Rows per multi-row INSERT: beyond this, longer statements stop paying off.
const MAX_ROWS_PER_STATEMENT: usize = 256;
/// Rows per transaction; with the journal off a commit is cheap, but it bounds the page cache.
const ROWS_PER_TRANSACTION: u64 = 500_000;

/// Turns off SQLite's memory statistics, whose global mutex is taken on every allocation
/// (bind_text showed it in the writer's profile). Call once at program start, before any
/// SQLite connection exists; later calls are refused by SQLite and change nothing.
pub fn disable_memory_statistics() {
    // SAFETY: sqlite3_config is only valid before SQLite initialises; it returns
    // SQLITE_MISUSE otherwise, which is ignored. The caller runs it before other threads
    // use SQLite.
    unsafe {
        rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::os::raw::c_int);
    }
}

/// The writer of a fresh mirror's data tables: the page writer where it applies.
pub enum DataSink {
    Sqlite(SqliteSink),
    Pages(Box<pages::PageSink>),
}

impl DataSink {
    /// Creates the mirror's schema with SQLite, then hands it to the page writer unless
    /// `writer` asks for the insert loop or a table is one the page writer does not write.
    pub fn create(path: &Path, tables: &[PlannedTable], writer: crate::config::Writer) -> Result<Self> {
        let sink = SqliteSink::create(path, tables)?;
        if writer == crate::config::Writer::Sqlite {
            return Ok(DataSink::Sqlite(sink));
        }
        Ok(match pages::PageSink::take_over(sink, tables)? {
            Ok(pages) => DataSink::Pages(Box::new(pages)),
            Err((sink, reason)) => {
                tracing::info!(%reason, "writing the mirror with SQLite's insert path");
                DataSink::Sqlite(sink)
            }
        })
    }

    pub fn write_batch(&mut self, batch: &RowBatch) -> Result<()> {
        match self {
            DataSink::Sqlite(sink) => sink.write_batch(batch),
            DataSink::Pages(sink) => sink.write_batch(batch),
        }
    }

    /// Which writer writes the data: a table the page writer does not cover makes it SQLite's.
    pub fn writer(&self) -> crate::config::Writer {
        match self {
            DataSink::Sqlite(_) => crate::config::Writer::Sqlite,
            DataSink::Pages(_) => crate::config::Writer::Pages,
        }
    }

    /// Ends the data; the mirror is then open in SQLite for indexes and metadata.
    pub fn finish(self, tables: &[PlannedTable]) -> Result<SqliteSink> {
        match self {
            DataSink::Sqlite(sink) => Ok(sink),
            DataSink::Pages(sink) => sink.finish(tables),
        }
    }
}

struct TableWriter {
    sqlite_name: String,
    column_names: Vec<String>,
    /// The INTEGER PRIMARY KEY column, whose value is the row's rowid.
    rowid_column: Option<usize>,
    /// Whether a reader can select the rowid: by an alias no column takes, or that key.
    rowid_readable: bool,
    /// Rows inserted into the SQLite table: without a rowid column, SQLite numbers a fresh
    /// table's rows 1, 2, ... in insertion order.
    inserted: i64,
    /// Rows per full multi-row statement.
    rows_per_statement: usize,
    multi_row_sql: String,
    single_row_sql: String,
    rows: u64,
}

/// Writes one mirror file. Owned by the writer thread.
pub struct SqliteSink {
    conn: Connection,
    /// For messages: which file a failure is about.
    path: String,
    tables: Vec<TableWriter>,
    rows_since_commit: u64,
}

impl SqliteSink {
    /// Opens `path` (which must already exist, created with the right permissions) and
    /// creates the data tables.
    pub fn create(path: &Path, tables: &[PlannedTable]) -> Result<Self> {
        let context = || format!("creating the mirror {}", path.display());
        let conn = open_for_writing(path)?;
        conn.execute_batch(&format!(
            "PRAGMA application_id = {}; PRAGMA user_version = {};",
            mirror::APPLICATION_ID,
            mirror::FORMAT_VERSION
        ))
        .with_context(context)?;
        conn.execute_batch(mirror::EXACT_TEXT_SCHEMA)
            .with_context(context)?;
        // Tables of a given DDL file are created in the file's order, after any others.
        let mut creation: Vec<&PlannedTable> = tables.iter().collect();
        creation.sort_by_key(|t| t.given.as_ref().map(|g| g.order + 1).unwrap_or(0));
        for table in creation {
            // A table without columns has no SQLite table: its row count is the mirror's record.
            if !table.columns.is_empty() {
                let create = match &table.given {
                    Some(given) => given.create_sql.clone(),
                    None => create_table_sql(table),
                };
                conn.execute_batch(&create)
                    .with_context(|| format!("creating SQLite table {:?}", table.sqlite_name))?;
            }
        }
        Self::begin(conn, path, tables, None)
    }

    /// Opens a mirror whose data tables the page writer filled: `rows` and `inserted` are
    /// its per-table counts.
    pub fn reopen(path: &Path, tables: &[PlannedTable], rows: &[u64], inserted: &[i64]) -> Result<Self> {
        let conn = open_for_writing(path)?;
        Self::begin(conn, path, tables, Some((rows, inserted)))
    }

    fn begin(
        conn: Connection,
        path: &Path,
        tables: &[PlannedTable],
        counts: Option<(&[u64], &[i64])>,
    ) -> Result<Self> {
        conn.set_prepared_statement_cache_capacity(tables.len() * 2 + 8);
        let mut writers: Vec<TableWriter> = tables.iter().map(TableWriter::new).collect();
        if let Some((rows, inserted)) = counts {
            for (writer, (rows, inserted)) in writers.iter_mut().zip(rows.iter().zip(inserted)) {
                writer.rows = *rows;
                writer.inserted = *inserted;
            }
        }
        conn.execute_batch("BEGIN")
            .with_context(|| format!("writing to {}", path.display()))?;
        Ok(SqliteSink {
            conn,
            path: path.display().to_string(),
            tables: writers,
            rows_since_commit: 0,
        })
    }

    pub fn write_batch(&mut self, batch: &RowBatch) -> Result<()> {
        let table = &self.tables[batch.table];
        let context = || format!("writing rows of table {:?} to {}", table.sqlite_name, self.path);
        let rows = batch.rows();
        let full_statements = rows / table.rows_per_statement;
        let mut row = 0;
        if full_statements > 0 {
            let mut statement = self
                .conn
                .prepare_cached(&table.multi_row_sql)
                .with_context(context)?;
            for _ in 0..full_statements {
                bind_rows(&mut statement, batch, row, table.rows_per_statement).with_context(context)?;
                statement.raw_execute().with_context(context)?;
                row += table.rows_per_statement;
            }
        }
        if row < rows {
            let mut statement = self
                .conn
                .prepare_cached(&table.single_row_sql)
                .with_context(context)?;
            while row < rows {
                bind_rows(&mut statement, batch, row, 1).with_context(context)?;
                statement.raw_execute().with_context(context)?;
                row += 1;
            }
        }
        self.write_exact_texts(batch)?;
        self.tables[batch.table].rows += rows as u64;
        self.rows_since_commit += rows as u64;
        if self.rows_since_commit >= ROWS_PER_TRANSACTION {
            self.conn
                .execute_batch("COMMIT; BEGIN")
                .with_context(|| format!("committing to {}", self.path))?;
            self.rows_since_commit = 0;
        }
        Ok(())
    }

    /// Keeps the exact text of the batch's values whose stored number does not give it
    /// back, keyed by the rowid each row was given.
    fn write_exact_texts(&mut self, batch: &RowBatch) -> Result<()> {
        let table = &mut self.tables[batch.table];
        let context = || {
            format!(
                "writing exact values of table {:?} to {}",
                table.sqlite_name, self.path
            )
        };
        let first_rowid = table.inserted + 1;
        table.inserted += batch.rows() as i64;
        if table.rowid_column.is_none() && batch.rows() > 0 && self.conn.last_insert_rowid() != table.inserted
        {
            // A fresh table numbers rows in order; anything else would key texts to wrong rows.
            return Err(Error::new(
                context(),
                ErrorKind::Internal(format!(
                    "SQLite gave the last row rowid {}, expected {}",
                    self.conn.last_insert_rowid(),
                    table.inserted
                )),
            ));
        }
        insert_exact_texts(&self.conn, table, first_rowid, batch, &self.path)
    }

    pub fn row_counts(&self) -> Vec<u64> {
        self.tables.iter().map(|t| t.rows).collect()
    }

    /// Commits the data and builds the indexes, returning what became of each.
    pub fn build_indexes(&mut self, tables: &[PlannedTable]) -> Result<Vec<IndexOutcome>> {
        self.conn
            .execute_batch("COMMIT")
            .with_context(|| format!("committing to {}", self.path))?;
        // A given DDL's index is part of the file it describes: one that fails is an error;
        // so is a row its foreign keys refuse (the load ran with them off).
        for table in tables.iter().filter(|t| t.given.is_some()) {
            for sql in table.given.iter().flat_map(|g| &g.index_sql) {
                self.conn
                    .execute_batch(sql)
                    .with_context(|| format!("creating an index of table {:?}: {sql}", table.sqlite_name))?;
            }
            let context = || format!("checking the foreign keys of table {:?}", table.sqlite_name);
            let dangling: Option<(i64, String)> = self
                .conn
                .query_row(
                    "SELECT rowid, parent FROM pragma_foreign_key_check(?1) LIMIT 1",
                    [&table.sqlite_name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .with_context(context)?;
            if let Some((rowid, parent)) = dangling {
                return Err(Error::unsupported(
                    context(),
                    format!("row {rowid} refers to a row table {parent:?} does not have"),
                ));
            }
        }
        Ok(create_indexes(&self.conn, tables))
    }

    /// Writes the metadata, runs ANALYZE and closes the file.
    pub fn finish(self, metadata: &Metadata<'_>) -> Result<()> {
        let conn = &self.conn;
        let context = |step: &str| format!("{step} {}", self.path);
        conn.execute_batch("BEGIN")
            .and_then(|_| metadata.write(conn))
            .and_then(|_| conn.execute_batch("COMMIT"))
            .with_context(|| context("writing the _pgmirror_ metadata tables of"))?;
        // Sampled (DESIGN §11): a full ANALYZE re-reads every table; the planner needs a few pages.
        conn.execute_batch("PRAGMA analysis_limit = 1000; ANALYZE")
            .with_context(|| context("analyzing"))?;
        // No quick_check here: it re-reads the whole file (15% of a wide export, measured),
        // while every write above already reported its errors. `pgmirror verify` checks
        // integrity on demand.
        let closing = context("closing");
        self.conn
            .close()
            .map_err(|(_, e)| Error::new(closing, ErrorKind::Sqlite(e)))
    }
}

/// Opens a mirror file for one writer thread, with the durability the export does not
/// need turned off (a failed export is removed, never resumed).
fn open_for_writing(path: &Path) -> Result<Connection> {
    let context = || format!("opening the mirror {}", path.display());
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            // One thread owns the connection: SQLite's per-call mutex is pure cost.
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(context)?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA foreign_keys = OFF;
         PRAGMA locking_mode = EXCLUSIVE; PRAGMA cache_size = -32768;",
    )
    .with_context(context)?;
    Ok(conn)
}

/// Keeps the exact text of the batch's values whose stored number does not give it back,
/// keyed by the rowid of each row: `first_rowid` onwards, or its INTEGER PRIMARY KEY.
fn insert_exact_texts(
    conn: &Connection,
    table: &TableWriter,
    first_rowid: i64,
    batch: &RowBatch,
    path: &str,
) -> Result<()> {
    let context = || format!("writing exact values of table {:?} to {path}", table.sqlite_name);
    if batch.exact.is_empty() {
        return Ok(());
    }
    if !table.rowid_readable {
        return Err(Error::unsupported(
            context(),
            "it has columns named rowid, _rowid_ and oid and no integer primary key, so \
             the rowid that keys exact numeric values could not be read back; rename a \
             column with --query",
        ));
    }
    let mut insert = conn
            .prepare_cached(
                "INSERT INTO _pgmirror_exact_text (sqlite_table, row, column_name, exact_text) VALUES (?1, ?2, ?3, ?4)",
            )
            .with_context(context)?;
    for (cell, text) in &batch.exact {
        let (row, column) = (cell / batch.columns, cell % batch.columns);
        let rowid = match table.rowid_column {
            None => first_rowid + row as i64,
            Some(key) => match batch.row(row)[key] {
                Cell::Integer(rowid) => rowid,
                ref other => {
                    return Err(Error::new(
                        context(),
                        ErrorKind::Internal(format!("INTEGER PRIMARY KEY value {other:?}")),
                    ))
                }
            },
        };
        insert
            .execute(rusqlite::params![
                table.sqlite_name,
                rowid,
                table.column_names[column],
                batch.text_of(text)
            ])
            .with_context(context)?;
    }
    Ok(())
}

impl TableWriter {
    fn new(table: &PlannedTable) -> Self {
        let columns = table.columns.len();
        let rows_per_statement = (MAX_PARAMETERS / columns.max(1)).clamp(1, MAX_ROWS_PER_STATEMENT);
        TableWriter {
            sqlite_name: table.sqlite_name.clone(),
            column_names: table.columns.iter().map(|c| c.name.clone()).collect(),
            rowid_column: table
                .columns
                .iter()
                .position(|c| table.sqlite.integer_primary_key.as_deref() == Some(c.name.as_str())),
            rowid_readable: table.sqlite.integer_primary_key.is_some()
                || mirror::rowid_alias(&table.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>())
                    .is_some(),
            inserted: 0,
            rows_per_statement,
            multi_row_sql: insert_sql(&table.sqlite_name, columns, rows_per_statement),
            single_row_sql: insert_sql(&table.sqlite_name, columns, 1),
            rows: table.counted_rows.unwrap_or(0),
        }
    }
}

fn insert_sql(table: &str, columns: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(","));
    format!(
        "INSERT INTO {} VALUES {}",
        quote_ident(table),
        vec![row; rows].join(",")
    )
}

fn bind_rows(
    statement: &mut rusqlite::CachedStatement<'_>,
    batch: &RowBatch,
    first_row: usize,
    rows: usize,
) -> rusqlite::Result<()> {
    let mut parameter = 1;
    for row in first_row..first_row + rows {
        for cell in batch.row(row) {
            statement.raw_bind_parameter(parameter, batch.value_of(cell))?;
            parameter += 1;
        }
    }
    Ok(())
}

fn create_table_sql(table: &PlannedTable) -> String {
    let mut lines: Vec<String> = table
        .columns
        .iter()
        .map(|column| {
            let mut line = format!("{} {}", quote_ident(&column.name), column.codec.sqlite_type());
            if table.sqlite.integer_primary_key.as_deref() == Some(column.name.as_str()) {
                line.push_str(" PRIMARY KEY");
            }
            // A column redacted to NULL cannot keep its NOT NULL.
            if column.source.not_null && column.redaction != Some(crate::plan::Redaction::Null) {
                line.push_str(" NOT NULL");
            }
            line
        })
        .collect();
    for fk in &table.sqlite.foreign_keys {
        lines.push(format!(
            "CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})",
            quote_ident(&fk.name),
            quote_list(&fk.columns),
            quote_ident(&fk.target_table),
            quote_list(&fk.target_columns)
        ));
    }
    format!(
        "CREATE TABLE {} (\n  {}\n)",
        quote_ident(&table.sqlite_name),
        lines.join(",\n  ")
    )
}

/// Builds every translated index; one that SQLite rejects (a unique index over values that
/// PostgreSQL compares differently) is reported, not fatal.
fn create_indexes(conn: &Connection, tables: &[PlannedTable]) -> Vec<IndexOutcome> {
    let mut outcomes = Vec::new();
    for (position, table) in tables.iter().enumerate() {
        for index in &table.sqlite.indexes {
            let columns = quote_list(&index.columns);
            let sql = format!(
                "CREATE {}INDEX {} ON {} ({columns})",
                if index.unique { "UNIQUE " } else { "" },
                quote_ident(&index.name),
                quote_ident(&table.sqlite_name)
            );
            outcomes.push(IndexOutcome {
                table: position,
                source_name: index.source_name.clone(),
                failure: conn.execute_batch(&sql).err().map(|e| e.to_string()),
            });
        }
    }
    outcomes
}
