//! RowBatch: the unit that travels from a source worker to the SQLite writer.
//! Values live in one flat vector; text and blob bytes in two arenas, so a batch
//! costs a handful of allocations however many rows it holds.

use std::ops::Range;

/// One SQLite value of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(Range<usize>),
    Blob(Range<usize>),
}

/// Rows of one table, ready for the writer.
#[derive(Debug)]
pub struct RowBatch {
    /// Index of the target table in the export plan.
    pub table: usize,
    /// Index of the COPY task the rows came from: the page writer keeps a task's rows,
    /// which arrive mostly in key order, in one run.
    pub task: usize,
    pub columns: usize,
    pub cells: Vec<Cell>,
    pub text: String,
    pub blobs: Vec<u8>,
    /// (cell index, range of `text`): the exact text of a number that does not give it back
    /// (`convert::decimal`), for the mirror's `_pgmirror_exact_text`.
    pub exact: Vec<(usize, Range<usize>)>,
    /// Bytes of the COPY stream these rows came from, for progress reporting.
    pub source_bytes: u64,
}

/// Limits on a batch: whichever is reached first closes it.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub rows: usize,
    pub bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        // 40k rows beat 10k by ~5% on the 5M-row narrow benchmark (fewer channel hand-offs);
        // the byte cap keeps batches of wide rows small.
        BatchLimits {
            rows: 40_000,
            bytes: 4 << 20,
        }
    }
}

impl RowBatch {
    pub fn new(table: usize, columns: usize, limits: BatchLimits) -> Self {
        RowBatch {
            table,
            task: 0,
            columns,
            // Sized once to what the limits allow, so the vector never doubles past them.
            cells: Vec::with_capacity(
                columns
                    * limits
                        .rows
                        .min(limits.bytes / (std::mem::size_of::<Cell>() * columns.max(1)))
                        .max(1),
            ),
            text: String::new(),
            blobs: Vec::new(),
            exact: Vec::new(),
            source_bytes: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.cells.len().checked_div(self.columns).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn payload_bytes(&self) -> usize {
        self.text.len() + self.blobs.len() + self.cells.len() * std::mem::size_of::<Cell>()
    }

    pub fn is_full(&self, limits: BatchLimits) -> bool {
        self.rows() >= limits.rows || self.payload_bytes() >= limits.bytes
    }

    pub fn row(&self, index: usize) -> &[Cell] {
        &self.cells[index * self.columns..(index + 1) * self.columns]
    }

    /// A cell as the value SQLite binds.
    pub fn value_of<'a>(&'a self, cell: &Cell) -> rusqlite::types::ToSqlOutput<'a> {
        rusqlite::types::ToSqlOutput::Borrowed(self.value_ref(cell))
    }

    pub fn value_ref<'a>(&'a self, cell: &Cell) -> rusqlite::types::ValueRef<'a> {
        use rusqlite::types::ValueRef;
        match cell {
            Cell::Null => ValueRef::Null,
            Cell::Integer(value) => ValueRef::Integer(*value),
            Cell::Real(value) => ValueRef::Real(*value),
            Cell::Text(range) => ValueRef::Text(self.text_of(range).as_bytes()),
            Cell::Blob(range) => ValueRef::Blob(self.blob_of(range)),
        }
    }

    /// Empties the batch for reuse, keeping its allocations.
    pub fn clear(&mut self) {
        self.cells.clear();
        self.text.clear();
        self.blobs.clear();
        self.exact.clear();
        self.source_bytes = 0;
    }

    pub fn text_of(&self, range: &Range<usize>) -> &str {
        &self.text[range.clone()]
    }

    pub fn blob_of(&self, range: &Range<usize>) -> &[u8] {
        &self.blobs[range.clone()]
    }

    pub fn push_null(&mut self) {
        self.cells.push(Cell::Null);
    }

    pub fn push_integer(&mut self, value: i64) {
        self.cells.push(Cell::Integer(value));
    }

    pub fn push_real(&mut self, value: f64) {
        self.cells.push(Cell::Real(value));
    }

    pub fn push_blob(&mut self, bytes: &[u8]) {
        let start = self.blobs.len();
        self.blobs.extend_from_slice(bytes);
        self.cells.push(Cell::Blob(start..self.blobs.len()));
    }

    pub fn push_str(&mut self, text: &str) {
        let start = self.text.len();
        self.text.push_str(text);
        self.cells.push(Cell::Text(start..self.text.len()));
    }

    /// A text cell over bytes already written to the arena.
    pub fn push_text_range(&mut self, range: Range<usize>) {
        self.cells.push(Cell::Text(range));
    }

    /// Records `range` of the text arena as the exact text of the cell pushed next.
    pub fn note_exact_text(&mut self, range: Range<usize>) {
        self.exact.push((self.cells.len(), range));
    }

    /// Writes a text value in place through `write` (no temporary string).
    pub fn push_text_with<E>(&mut self, write: impl FnOnce(&mut String) -> Result<(), E>) -> Result<(), E> {
        let start = self.text.len();
        let result = write(&mut self.text);
        if result.is_err() {
            self.text.truncate(start);
            return result;
        }
        self.cells.push(Cell::Text(start..self.text.len()));
        Ok(())
    }
}
