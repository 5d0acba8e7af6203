//! Applying decoded changes to the mirror's tables, each value converted by the same codec
//! export used for its column, so a followed row is stored exactly as a fresh export would
//! store it (exact texts in `_pgmirror_exact_text` included).
//!
//! Rows are found by their replica identity (the key, or every column under REPLICA
//! IDENTITY FULL) and changed through their rowid, one row per change: equal rows of a
//! table without a key stay as many as the source has. A change to a row the mirror does
//! not have means the mirror no longer matches its source; that is an error, never guessed
//! around.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::pgoutput::{self, Datum, OldKind};
use crate::batch::{BatchLimits, Cell, RowBatch};
use crate::convert::{choose_codec, decode_sent_into, Codec, SelectAs};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::mirror::{exact_text_sql, Mirror, MirrorTable};
use crate::pg::catalog::Catalog;
use crate::pg::quote_ident;

/// Row changes applied, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChangeCounts {
    pub transactions: u64,
    /// Transactions not applied: already in the initial copy, or already applied by an
    /// earlier run that stopped before advancing the slot.
    pub skipped_transactions: u64,
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    pub truncates: u64,
    /// Changes not applied because a `--resync` copy of their table holds them.
    pub changes_in_copies: u64,
}

impl ChangeCounts {
    pub fn row_changes(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }

    pub fn add(&mut self, other: &ChangeCounts) {
        self.transactions += other.transactions;
        self.skipped_transactions += other.skipped_transactions;
        self.inserts += other.inserts;
        self.updates += other.updates;
        self.deletes += other.deletes;
        self.truncates += other.truncates;
        self.changes_in_copies += other.changes_in_copies;
    }
}

struct FollowedColumn {
    name: String,
    pg_type: String,
    type_oid: u32,
    typmod: i32,
    codec: Codec,
    select_as: SelectAs,
}

struct FollowedTable {
    sqlite_name: String,
    display_name: String,
    columns: Vec<FollowedColumn>,
    /// How to name the rowid in SQL: a free alias or the INTEGER PRIMARY KEY column.
    rowid: String,
    /// The INTEGER PRIMARY KEY column, whose value is the rowid.
    rowid_column: Option<usize>,
    keeps_exact_text: bool,
    rows: i64,
    rows_changed: bool,
    /// The replica identity columns, from the stream's RELATION message.
    key: Vec<usize>,
    /// Statement texts by shape, built once.
    sql: HashMap<Shape, String>,
}

/// The statements a table's changes use; the columns they name vary with what a change sends.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Shape {
    Insert,
    Delete,
    /// Finding a row's rowid by these columns.
    Find(Vec<usize>),
    /// Setting these columns of the row with a rowid.
    Update(Vec<usize>),
}

impl FollowedTable {
    /// The statement text of `shape`, built the first time it is needed.
    fn statement(&mut self, shape: &Shape) -> &str {
        if !self.sql.contains_key(shape) {
            let text = self.build_statement(shape);
            self.sql.insert(shape.clone(), text);
        }
        &self.sql[shape]
    }

    fn build_statement(&self, shape: &Shape) -> String {
        let (table, rowid) = (quote_ident(&self.sqlite_name), &self.rowid);
        let columns = &self.columns;
        let names = |list: &[usize], suffix: &str| -> Vec<String> {
            list.iter()
                .map(|&i| format!("{}{suffix}", quote_ident(&columns[i].name)))
                .collect()
        };
        match shape {
            Shape::Insert => {
                let all: Vec<usize> = (0..columns.len()).collect();
                format!(
                    "INSERT INTO {table} ({}) VALUES ({})",
                    names(&all, "").join(", "),
                    vec!["?"; all.len()].join(", ")
                )
            }
            Shape::Delete => format!("DELETE FROM {table} WHERE {rowid} = ?1"),
            Shape::Find(matched) => {
                let mut conditions = names(matched, " IS ?");
                let exact = matched
                    .iter()
                    .filter(|&&i| columns[i].codec.keeps_exact_text())
                    .count();
                conditions.extend(std::iter::repeat_n(
                    format!(
                        "(SELECT exact_text FROM _pgmirror_exact_text WHERE sqlite_table = ? AND row = {table}.{rowid} \
                         AND column_name = ?) IS ?"
                    ),
                    exact,
                ));
                format!(
                    "SELECT {rowid} FROM {table} WHERE {} LIMIT 1",
                    conditions.join(" AND ")
                )
            }
            Shape::Update(set) => format!(
                "UPDATE {table} SET {} WHERE {rowid} = ?",
                names(set, " = ?").join(", ")
            ),
        }
    }
}

impl Shape {
    /// The columns a Find or Update names.
    fn columns(&self) -> &[usize] {
        match self {
            Shape::Find(columns) | Shape::Update(columns) => columns,
            Shape::Insert | Shape::Delete => &[],
        }
    }
}

/// Applies changes to one open mirror. The caller owns the SQLite transaction.
pub struct Applier<'m> {
    conn: &'m Connection,
    tables: Vec<FollowedTable>,
    by_name: HashMap<String, usize>,
    by_relation: HashMap<u32, usize>,
    /// Relations the stream described that the mirror does not follow, by oid, for messages.
    unfollowed: HashMap<u32, String>,
    /// Followed relations whose last RELATION message does not fit the mirror: why.
    stale: HashMap<u32, String>,
    /// Row counts and change counts when the open source transaction began.
    saved: Option<(Vec<(i64, bool)>, ChangeCounts)>,
    scratch: RowBatch,
    /// The old row or key of a change, decoded beside the new row.
    identity: RowBatch,
    pub counts: ChangeCounts,
}

/// Where a change sits in the stream, for messages.
#[derive(Clone, Copy)]
pub struct At {
    pub lsn: pgoutput::Lsn,
}

impl<'m> Applier<'m> {
    /// Prepares the followed tables of `mirror`, with each column's codec as export chose it
    /// from the source's types.
    pub fn new(mirror: &'m Mirror, followed: &[String], catalog: &Catalog) -> Result<Self> {
        let mut tables = Vec::new();
        let mut by_name = HashMap::new();
        for name in followed {
            let table = mirror.table(name).ok_or_else(|| {
                Error::unsupported(
                    format!("mirror {}", mirror.path),
                    format!("_pgmirror_sync follows table {name:?}, which the mirror does not have"),
                )
            })?;
            by_name.insert(name.clone(), tables.len());
            tables.push(followed_table(mirror, table, catalog)?);
        }
        Ok(Applier {
            conn: &mirror.conn,
            tables,
            by_name,
            by_relation: HashMap::new(),
            unfollowed: HashMap::new(),
            stale: HashMap::new(),
            saved: None,
            scratch: RowBatch::new(0, 0, BatchLimits { rows: 1, bytes: 0 }),
            identity: RowBatch::new(0, 0, BatchLimits { rows: 1, bytes: 0 }),
            counts: ChangeCounts::default(),
        })
    }

    /// Checks a RELATION message against the mirror's table and learns its key.
    pub fn relation(&mut self, relation: &pgoutput::Relation) -> Result<()> {
        let sqlite_name = crate::mirror::sqlite_table_name(&relation.namespace, &relation.name);
        let shown = format!("{}.{}", relation.namespace, relation.name);
        // A partition's own RELATION comes beside its root's, whose name its changes carry.
        let Some(&index) = self.by_name.get(&sqlite_name) else {
            self.by_relation.remove(&relation.oid);
            self.unfollowed.insert(relation.oid, shown);
            return Ok(());
        };
        self.by_relation.insert(relation.oid, index);
        let table = &mut self.tables[index];
        // Changes made before a --resync's copy come with the old columns and are skipped,
        // so a difference is an error only when a change would be applied with it.
        if let Some(difference) = schema_difference(&table.columns, &relation.columns) {
            self.stale.insert(
                relation.oid,
                format!(
                    "its columns changed on the source since the mirror was made ({difference}); copy it \
                     again and go on: pgmirror sync --resync {}",
                    table.display_name
                ),
            );
            return Ok(());
        }
        let key: Vec<usize> = relation
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_key)
            .map(|(i, _)| i)
            .collect();
        if key.is_empty() {
            self.stale.insert(
                relation.oid,
                format!(
                    "it has no replica identity now, so its changed rows cannot be found; run \
                     ALTER TABLE {} REPLICA IDENTITY FULL (or give it a primary key)",
                    table.display_name
                ),
            );
            return Ok(());
        }
        table.key = key;
        self.stale.remove(&relation.oid);
        Ok(())
    }

    /// The mirror table a relation's changes go to, once its RELATION message came.
    pub fn table_name(&self, relation: u32) -> Option<&str> {
        self.by_relation
            .get(&relation)
            .map(|&index| self.tables[index].sqlite_name.as_str())
    }

    fn table_of(&self, relation: u32) -> Result<usize> {
        if let Some(&index) = self.by_relation.get(&relation) {
            if let Some(problem) = self.stale.get(&relation) {
                return Err(Error::unsupported(
                    format!("table {}", self.tables[index].display_name),
                    problem.clone(),
                ));
            }
            return Ok(index);
        }
        Err(match self.unfollowed.get(&relation) {
            Some(shown) => Error::unsupported(
                format!("table {shown}"),
                format!(
                    "the stream has changes of a table this replica does not follow (renamed, or added to \
                     its publication by hand?); copy it in and go on: pgmirror sync --resync {shown}"
                ),
            ),
            None => Error::new(
                "applying changes",
                ErrorKind::Unsupported(format!(
                    "a change of relation {relation} came before its RELATION message"
                )),
            ),
        })
    }

    /// Marks the start of a source transaction, which [`Self::rollback_transaction`] undoes.
    pub fn begin_transaction(&mut self) -> Result<()> {
        self.conn
            .prepare_cached("SAVEPOINT pgmirror_transaction")
            .and_then(|mut s| s.execute([]))
            .context("starting a source transaction in the mirror")?;
        self.saved = Some((
            self.tables.iter().map(|t| (t.rows, t.rows_changed)).collect(),
            self.counts,
        ));
        Ok(())
    }

    pub fn end_transaction(&mut self) -> Result<()> {
        self.conn
            .prepare_cached("RELEASE pgmirror_transaction")
            .and_then(|mut s| s.execute([]))
            .context("ending a source transaction in the mirror")?;
        self.saved = None;
        Ok(())
    }

    /// Undoes the changes of an unfinished source transaction, if one is open.
    pub fn rollback_transaction(&mut self) -> Result<()> {
        let Some((rows, counts)) = self.saved.take() else {
            return Ok(());
        };
        for (table, (count, changed)) in self.tables.iter_mut().zip(rows) {
            table.rows = count;
            table.rows_changed = changed;
        }
        self.counts = counts;
        self.conn
            .execute_batch("ROLLBACK TO pgmirror_transaction; RELEASE pgmirror_transaction")
            .context("undoing an unfinished source transaction in the mirror")
    }

    pub fn insert(&mut self, relation: u32, new: &[Datum<'_>], at: At) -> Result<()> {
        let index = self.table_of(relation)?;
        let unchanged = self.decode(index, new, at, "inserted row")?;
        if unchanged.iter().any(|&u| u) {
            return Err(self.tables[index].error(at, "an inserted row has a value marked unchanged"));
        }
        let prepared = self
            .conn
            .prepare_cached(self.tables[index].statement(&Shape::Insert));
        let table = &self.tables[index];
        let context = || table.context(at, "inserting a row");
        let mut statement = prepared.with_context(context)?;
        for (i, cell) in self.scratch.cells.iter().enumerate() {
            statement
                .raw_bind_parameter(i + 1, self.scratch.value_of(cell))
                .with_context(context)?;
        }
        statement.raw_execute().with_context(context)?;
        let rowid = self.conn.last_insert_rowid();
        self.write_exact_texts(index, rowid, &unchanged, at)?;
        let table = &mut self.tables[index];
        table.rows += 1;
        table.rows_changed = true;
        self.counts.inserts += 1;
        Ok(())
    }

    pub fn update(
        &mut self,
        relation: u32,
        old: Option<&(OldKind, Vec<Datum<'_>>)>,
        new: &[Datum<'_>],
        at: At,
    ) -> Result<()> {
        let index = self.table_of(relation)?;
        let unchanged = self.decode(index, new, at, "new row")?;
        let shape = Shape::Update((0..unchanged.len()).filter(|&i| !unchanged[i]).collect());
        let set = shape.columns();
        let old_rowid = match old {
            Some((kind, old)) => self.find_row(index, *kind, old, at, set.is_empty())?,
            None => self.find_row(index, OldKind::Key, new, at, set.is_empty())?,
        };
        if !set.is_empty() {
            let prepared = self.conn.prepare_cached(self.tables[index].statement(&shape));
            let table = &self.tables[index];
            let context = || table.context(at, "updating a row");
            let mut statement = prepared.with_context(context)?;
            for (parameter, &column) in set.iter().enumerate() {
                let cell = &self.scratch.cells[column];
                statement
                    .raw_bind_parameter(parameter + 1, self.scratch.value_of(cell))
                    .with_context(context)?;
            }
            statement
                .raw_bind_parameter(set.len() + 1, old_rowid.rowid)
                .with_context(context)?;
            let changed = statement.raw_execute().with_context(context)?;
            if changed == 0 {
                return Err(table.missing_row(
                    at,
                    &describe_identity(table, &self.identity, old_rowid.by.columns()),
                ));
            }
        }
        let table = &self.tables[index];
        let old_rowid = old_rowid.rowid;
        let new_rowid = match table.rowid_column {
            Some(column) if !unchanged[column] => match self.scratch.cells[column] {
                Cell::Integer(rowid) => rowid,
                _ => old_rowid,
            },
            _ => old_rowid,
        };
        if table.keeps_exact_text {
            let context = || table.context(at, "updating the exact values of a row");
            if new_rowid != old_rowid {
                self.conn
                    .prepare_cached(exact_text_sql::MOVE_ROW)
                    .and_then(|mut s| s.execute(params![table.sqlite_name, old_rowid, new_rowid]))
                    .with_context(context)?;
            }
            let mut delete = self
                .conn
                .prepare_cached(exact_text_sql::DELETE_COLUMN)
                .with_context(context)?;
            for &column in set {
                if table.columns[column].codec.keeps_exact_text() {
                    delete
                        .execute(params![table.sqlite_name, new_rowid, table.columns[column].name])
                        .with_context(context)?;
                }
            }
        }
        self.write_exact_texts(index, new_rowid, &unchanged, at)?;
        self.counts.updates += 1;
        Ok(())
    }

    pub fn delete(&mut self, relation: u32, kind: OldKind, old: &[Datum<'_>], at: At) -> Result<()> {
        let index = self.table_of(relation)?;
        let found = self.find_row(index, kind, old, at, false)?;
        let prepared = self
            .conn
            .prepare_cached(self.tables[index].statement(&Shape::Delete));
        let table = &mut self.tables[index];
        let context = || table.context(at, "deleting a row");
        let deleted = prepared
            .and_then(|mut s| s.execute([found.rowid]))
            .with_context(context)?;
        if deleted == 0 {
            return Err(table.missing_row(at, &describe_identity(table, &self.identity, found.by.columns())));
        }
        if table.keeps_exact_text {
            self.conn
                .prepare_cached(exact_text_sql::DELETE_ROW)
                .and_then(|mut s| s.execute(params![table.sqlite_name, found.rowid]))
                .with_context(context)?;
        }
        table.rows -= 1;
        table.rows_changed = true;
        self.counts.deletes += 1;
        Ok(())
    }

    pub fn truncate(&mut self, relations: &[u32], at: At) -> Result<()> {
        for &relation in relations {
            let index = self.table_of(relation)?;
            let table = &mut self.tables[index];
            let context = || table.context(at, "emptying the table (TRUNCATE)");
            self.conn
                .execute_batch(&format!("DELETE FROM {}", quote_ident(&table.sqlite_name)))
                .with_context(context)?;
            self.conn
                .prepare_cached(exact_text_sql::DELETE_TABLE)
                .and_then(|mut s| s.execute([&table.sqlite_name]))
                .with_context(context)?;
            table.rows = 0;
            table.rows_changed = true;
        }
        self.counts.truncates += 1;
        Ok(())
    }

    /// Writes the row counts that changed; inside the transaction that changed them.
    pub fn record_row_counts(&mut self) -> Result<()> {
        for table in self.tables.iter_mut().filter(|t| t.rows_changed) {
            crate::mirror::record_row_count(self.conn, &table.sqlite_name, table.rows)
                .with_context(|| format!("recording the row count of table {}", table.display_name))?;
            table.rows_changed = false;
        }
        Ok(())
    }

    /// Forgets unsaved row counts after a rollback: they are read again from the mirror.
    pub fn reload_row_counts(&mut self) -> Result<()> {
        for table in &mut self.tables {
            table.rows = recorded_rows(self.conn, &table.sqlite_name)?;
            table.rows_changed = false;
        }
        Ok(())
    }

    /// Decodes a tuple into the scratch row; returns which columns were sent as unchanged.
    fn decode(&mut self, index: usize, datums: &[Datum<'_>], at: At, what: &str) -> Result<Vec<bool>> {
        decode_tuple(&self.tables[index], datums, at, what, &mut self.scratch)
    }

    /// The rowid of the row a change is about: by its key, or by every value it had
    /// (REPLICA IDENTITY FULL; the first of equal rows), numbers compared by their exact
    /// text too. A key that is the INTEGER PRIMARY KEY is the rowid itself: then whether
    /// the row exists is left to the statement that changes it, unless `must_exist`.
    fn find_row(
        &mut self,
        index: usize,
        kind: OldKind,
        datums: &[Datum<'_>],
        at: At,
        must_exist: bool,
    ) -> Result<Found> {
        let unchanged = decode_tuple(
            &self.tables[index],
            datums,
            at,
            "changed row's identity",
            &mut self.identity,
        )?;
        let table = &self.tables[index];
        let matched: Vec<usize> = match kind {
            OldKind::Key => table.key.clone(),
            OldKind::Row => (0..table.columns.len()).filter(|&i| !unchanged[i]).collect(),
        };
        if matched.iter().any(|&i| unchanged[i]) || matched.is_empty() {
            return Err(table.error(at, "the changed row's identity has no values to find it by"));
        }
        if let ([key], Some(rowid_column), false) = (matched.as_slice(), table.rowid_column, must_exist) {
            if let (true, Cell::Integer(rowid)) = (*key == rowid_column, &self.identity.cells[*key]) {
                return Ok(Found {
                    rowid: *rowid,
                    by: Shape::Find(matched),
                });
            }
        }
        let exact: Vec<usize> = matched
            .iter()
            .copied()
            .filter(|&i| table.columns[i].codec.keeps_exact_text())
            .collect();
        let shape = Shape::Find(matched);
        let prepared = self.conn.prepare_cached(self.tables[index].statement(&shape));
        let matched = shape.columns();
        let table = &self.tables[index];
        let identity = &self.identity;
        let context = || table.context(at, "finding a changed row");
        let mut statement = prepared.with_context(context)?;
        for (parameter, &column) in matched.iter().enumerate() {
            let cell = &identity.cells[column];
            statement
                .raw_bind_parameter(parameter + 1, identity.value_of(cell))
                .with_context(context)?;
        }
        // Numbers equal as doubles are told apart by the exact text kept beside them.
        let mut parameter = matched.len();
        for &column in &exact {
            let text = identity
                .exact
                .iter()
                .find(|(cell, _)| *cell == column)
                .map(|(_, range)| identity.text_of(range));
            for value in [
                Some(table.sqlite_name.as_str()),
                Some(table.columns[column].name.as_str()),
                text,
            ] {
                parameter += 1;
                statement
                    .raw_bind_parameter(parameter, value)
                    .with_context(context)?;
            }
        }
        let found: Option<i64> = statement
            .raw_query()
            .next()
            .with_context(context)?
            .map(|row| row.get(0))
            .transpose()
            .with_context(context)?;
        match found {
            Some(rowid) => Ok(Found { rowid, by: shape }),
            None => Err(table.missing_row(at, &describe_identity(table, identity, matched))),
        }
    }

    /// Keeps the exact texts the scratch row's numbers need, for the columns it set.
    fn write_exact_texts(&self, index: usize, rowid: i64, unchanged: &[bool], at: At) -> Result<()> {
        let table = &self.tables[index];
        if self.scratch.exact.is_empty() {
            return Ok(());
        }
        let context = || table.context(at, "keeping exact values");
        let mut insert = self
            .conn
            .prepare_cached(exact_text_sql::INSERT)
            .with_context(context)?;
        for (cell, text) in &self.scratch.exact {
            if unchanged[*cell] {
                continue;
            }
            insert
                .execute(params![
                    table.sqlite_name,
                    rowid,
                    table.columns[*cell].name,
                    self.scratch.text_of(text)
                ])
                .with_context(context)?;
        }
        Ok(())
    }
}

/// A row found for a change, and the identity columns it was found by.
struct Found {
    rowid: i64,
    by: Shape,
}

/// `column = value, ...` of the identity a change named, for messages.
fn describe_identity(table: &FollowedTable, identity: &RowBatch, matched: &[usize]) -> String {
    matched
        .iter()
        .map(|&i| {
            format!(
                "{} = {}",
                table.columns[i].name,
                describe_cell(identity, &identity.cells[i])
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes a tuple into `batch` as export would store it; returns which columns were sent
/// as unchanged (TOASTed values the change left as they were).
fn decode_tuple(
    table: &FollowedTable,
    datums: &[Datum<'_>],
    at: At,
    what: &str,
    batch: &mut RowBatch,
) -> Result<Vec<bool>> {
    if datums.len() != table.columns.len() {
        return Err(table.error(
            at,
            &format!(
                "a {what} has {} values, the table {} columns",
                datums.len(),
                table.columns.len()
            ),
        ));
    }
    batch.clear();
    batch.columns = table.columns.len();
    let mut unchanged = vec![false; datums.len()];
    for (i, (datum, column)) in datums.iter().zip(&table.columns).enumerate() {
        match datum {
            Datum::Null => batch.push_null(),
            Datum::UnchangedToast => {
                unchanged[i] = true;
                batch.push_null();
            }
            Datum::Binary(bytes) => {
                decode_sent_into(column.codec, column.select_as, bytes, batch).map_err(|e| {
                    Error::new(
                        format!(
                            "{}, column {:?} ({})",
                            table.context(at, what),
                            column.name,
                            column.pg_type
                        ),
                        ErrorKind::Copy(e),
                    )
                })?
            }
            Datum::Text(_) => {
                return Err(table.error(
                    at,
                    &format!(
                        "column {:?} ({}) arrived as text: its type has no binary form",
                        column.name, column.pg_type
                    ),
                ))
            }
        }
    }
    Ok(unchanged)
}

impl FollowedTable {
    fn missing_row(&self, at: At, shown: &str) -> Error {
        self.error(
            at,
            &format!(
                "the source changed a row the mirror does not have ({shown}): the mirror no longer \
                 matches its source; copy the table again: pgmirror sync --resync {}",
                self.display_name
            ),
        )
    }

    fn context(&self, at: At, what: &str) -> String {
        format!("table {}, change at LSN {}: {what}", self.display_name, at.lsn)
    }

    fn error(&self, at: At, message: &str) -> Error {
        Error::unsupported(
            format!("table {}, change at LSN {}", self.display_name, at.lsn),
            message,
        )
    }
}

/// A value for a message: short, since a row's values may be long or private.
fn describe_cell(batch: &RowBatch, cell: &Cell) -> String {
    const SHOWN: usize = 40;
    match cell {
        Cell::Null => "NULL".into(),
        Cell::Integer(v) => v.to_string(),
        Cell::Real(v) => v.to_string(),
        Cell::Text(range) => {
            let text = batch.text_of(range);
            match text.char_indices().nth(SHOWN) {
                Some((end, _)) => format!("{:?}... ({} bytes)", &text[..end], text.len()),
                None => format!("{text:?}"),
            }
        }
        Cell::Blob(range) => format!("a {}-byte blob", range.len()),
    }
}

fn followed_table(mirror: &Mirror, table: &MirrorTable, catalog: &Catalog) -> Result<FollowedTable> {
    let display_name = table.display_name();
    let mut columns = Vec::new();
    for column in &table.columns {
        let info = catalog.types.info(column.type_oid, column.typmod);
        let (codec, select_as) = choose_codec(info, catalog.server.money_scale);
        if codec.name() != column.codec {
            return Err(Error::unsupported(
                format!("table {display_name}, column {:?}", column.name),
                format!(
                    "the mirror stores it as {}, but its type {} now reads as {}; re-create the replica",
                    column.codec,
                    column.pg_type,
                    codec.name()
                ),
            ));
        }
        columns.push(FollowedColumn {
            name: column.name.clone(),
            pg_type: column.pg_type.clone(),
            type_oid: column.type_oid,
            typmod: column.typmod,
            codec,
            select_as,
        });
    }
    let context = || format!("reading the layout of mirror table {:?}", table.sqlite_name);
    let rowid = crate::mirror::rowid_expression(&mirror.conn, table)
        .with_context(context)?
        .ok_or_else(|| {
            Error::unsupported(
                format!("table {display_name}"),
                "its columns take the names rowid, _rowid_ and oid and it has no integer primary key, \
                 so its rows cannot be addressed",
            )
        })?;
    let rowid_column = crate::mirror::integer_primary_key(&mirror.conn, &table.sqlite_name)
        .with_context(context)?
        .and_then(|name| columns.iter().position(|c| c.name == name));
    Ok(FollowedTable {
        sqlite_name: table.sqlite_name.clone(),
        display_name,
        keeps_exact_text: columns.iter().any(|c| c.codec.keeps_exact_text()),
        columns,
        rowid,
        rowid_column,
        rows: recorded_rows(&mirror.conn, &table.sqlite_name)?,
        rows_changed: false,
        key: Vec::new(),
        sql: HashMap::new(),
    })
}

fn recorded_rows(conn: &Connection, table: &str) -> Result<i64> {
    conn.query_row(
        "SELECT row_count FROM _pgmirror_tables WHERE sqlite_name = ?1",
        [table],
        |r| r.get(0),
    )
    .optional()
    .with_context(|| format!("reading the row count of mirror table {table:?}"))
    .map(|rows| rows.unwrap_or(0))
}

/// How the stream's columns differ from the mirror's, if they do.
fn schema_difference(mirror: &[FollowedColumn], stream: &[pgoutput::RelationColumn]) -> Option<String> {
    let same = mirror.len() == stream.len()
        && mirror.iter().zip(stream).all(|(m, s)| {
            m.name == s.name && m.type_oid == s.type_oid && (m.typmod == s.typmod || s.typmod == -1)
        });
    if same {
        return None;
    }
    let mut parts = Vec::new();
    for s in stream {
        match mirror.iter().find(|m| m.name == s.name) {
            None => parts.push(format!("column {:?} added", s.name)),
            Some(m) if m.type_oid != s.type_oid || (m.typmod != s.typmod && s.typmod != -1) => {
                parts.push(format!("column {:?} changed type (was {})", s.name, m.pg_type))
            }
            Some(_) => {}
        }
    }
    for m in mirror {
        if !stream.iter().any(|s| s.name == m.name) {
            parts.push(format!("column {:?} dropped or renamed", m.name));
        }
    }
    if parts.is_empty() {
        parts.push("columns reordered".into());
    }
    Some(parts.join(", "))
}
