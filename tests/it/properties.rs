//! Property tests on hostile input, without a server: the binary COPY reader on arbitrary,
//! corrupted and truncated streams at any chunking; the CSV field writer against
//! PostgreSQL's CSV reading rules, and `csv import` on arbitrary files; `Mirror::open` on
//! mirrors with damaged metadata or cut short.
//!
//! 256 cases per property unless PROPTEST_CASES says otherwise.

use std::fs::OpenOptions;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use rusqlite::types::Value;
use rusqlite::{params, Connection};

use pgmirror::copy::{CopyError, CopyReader, Row};
use pgmirror::csv::{write_csv_field, CsvImportOptions};
use pgmirror::mirror::{Mirror, ObjectKind, APPLICATION_ID, FORMAT_VERSION};
use pgmirror::pg::ConnectionSpec;
use pgmirror::restore::RestoreMode;

/// A fixed case count, whatever proptest's default becomes; `proptest!` still lets
/// PROPTEST_CASES (and the other PROPTEST_* variables) override it.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Cut points for splitting an input into chunks; repeats make empty chunks, which a
/// network read can hand over too.
fn cut_points() -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..12)
}

fn chunks<'a>(data: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
    at.sort_unstable();
    let mut pieces = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for end in at {
        pieces.push(&data[start..end]);
        start = end;
    }
    pieces.push(&data[start..]);
    pieces
}

// ---------------------------------------------------------------------------------------
// Binary COPY reader
// ---------------------------------------------------------------------------------------

type CopyRow = Vec<Option<Vec<u8>>>;

/// Signature, flags 0 and no header extension, as PostgreSQL writes it.
fn copy_header() -> Vec<u8> {
    let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out
}

fn copy_stream(rows: &[CopyRow]) -> Vec<u8> {
    let mut out = copy_header();
    for row in rows {
        out.extend_from_slice(&(row.len() as i16).to_be_bytes());
        for field in row {
            match field {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(bytes) => {
                    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                    out.extend_from_slice(bytes);
                }
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// A column count and rows of that many fields: NULLs, empty values and arbitrary bytes.
fn copy_rows() -> impl Strategy<Value = (usize, Vec<CopyRow>)> {
    (0usize..6).prop_flat_map(|columns| {
        let field = prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..40));
        (
            Just(columns),
            prop::collection::vec(prop::collection::vec(field, columns), 0..10),
        )
    })
}

/// What a reader made of a stream.
struct Decoded {
    /// (row number, fields) of each row handed out, in order.
    rows: Vec<(u64, CopyRow)>,
    /// `CopyReader::rows()` once feeding stopped.
    counted: u64,
    /// The first error of `feed` or `finish`; feeding stops there, as the exporter does.
    outcome: Result<(), CopyError>,
}

fn decode(columns: usize, pieces: &[&[u8]]) -> Decoded {
    let mut reader = CopyReader::new(columns);
    let mut rows: Vec<(u64, CopyRow)> = Vec::new();
    let mut read_all = || -> Result<(), CopyError> {
        for piece in pieces {
            reader.feed(piece, |row: &Row<'_>| {
                let fields: CopyRow = (0..row.len()).map(|i| row.get(i).map(<[u8]>::to_vec)).collect();
                rows.push((row.number, fields));
                Ok::<(), CopyError>(())
            })?;
        }
        reader.finish()
    };
    let outcome = read_all();
    Decoded {
        rows,
        counted: reader.rows(),
        outcome,
    }
}

/// Whatever the input: rows are numbered 1, 2, … with the reader's count agreeing, and
/// each has the expected number of fields.
fn check_rows(decoded: &Decoded, columns: usize) -> Result<(), TestCaseError> {
    for (i, (number, fields)) in decoded.rows.iter().enumerate() {
        prop_assert_eq!(*number, i as u64 + 1);
        prop_assert_eq!(fields.len(), columns);
    }
    prop_assert_eq!(decoded.counted, decoded.rows.len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes, bare or behind a valid header (so they reach the row parser).
    #[test]
    fn copy_reader_survives_arbitrary_bytes(
        columns in 0usize..5,
        with_header in any::<bool>(),
        body in prop::collection::vec(any::<u8>(), 0..256),
        cuts in cut_points(),
    ) {
        let mut data = if with_header { copy_header() } else { Vec::new() };
        data.extend_from_slice(&body);
        check_rows(&decode(columns, &chunks(&data, &cuts)), columns)?;
    }

    /// A valid stream with a few bytes overwritten: field counts, lengths and the trailer
    /// go wrong in ways random bytes alone seldom reach.
    #[test]
    fn copy_reader_survives_corrupted_streams(
        (columns, rows) in copy_rows(),
        damage in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        cuts in cut_points(),
    ) {
        let mut data = copy_stream(&rows);
        for (at, byte) in &damage {
            let at = at.index(data.len());
            data[at] = *byte;
        }
        check_rows(&decode(columns, &chunks(&data, &cuts)), columns)?;
    }

    #[test]
    fn copy_reader_reads_valid_streams_at_any_chunking(
        (columns, rows) in copy_rows(),
        cuts in cut_points(),
    ) {
        let data = copy_stream(&rows);
        let decoded = decode(columns, &chunks(&data, &cuts));
        check_rows(&decoded, columns)?;
        prop_assert!(decoded.outcome.is_ok(), "{:?}", decoded.outcome);
        let fields: Vec<CopyRow> = decoded.rows.into_iter().map(|(_, fields)| fields).collect();
        prop_assert_eq!(fields, rows);
    }

    /// Every proper prefix of a valid stream ends in an error, so a cut connection is never
    /// taken for a short table; rows handed out before it are whole rows of the stream.
    #[test]
    fn copy_reader_rejects_every_truncation(
        (columns, rows) in copy_rows(),
        cut in any::<Index>(),
        cuts in cut_points(),
    ) {
        let data = copy_stream(&rows);
        let truncated = &data[..cut.index(data.len())];
        let decoded = decode(columns, &chunks(truncated, &cuts));
        check_rows(&decoded, columns)?;
        prop_assert!(
            matches!(decoded.outcome, Err(CopyError::Truncated { .. })),
            "{} of {} bytes: {:?}",
            truncated.len(),
            data.len(),
            decoded.outcome
        );
        let fields: Vec<&CopyRow> = decoded.rows.iter().map(|(_, fields)| fields).collect();
        prop_assert!(fields.len() <= rows.len());
        prop_assert_eq!(fields, rows.iter().take(decoded.rows.len()).collect::<Vec<_>>());
    }
}

// ---------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------

type CsvRecord = Vec<Option<Vec<u8>>>;

/// Bytes that matter to CSV, weighted over arbitrary ones.
const CSV_SPECIAL: &[u8] = b",\"\n\r\\. a";

fn csv_byte() -> impl Strategy<Value = u8> {
    prop_oneof![3 => prop::sample::select(CSV_SPECIAL), 1 => any::<u8>()]
}

/// NULL, the end-of-data marker `\.` as a value, or bytes (often empty or special).
fn csv_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::weighted(
        0.8,
        prop_oneof![1 => Just(b"\\.".to_vec()), 6 => prop::collection::vec(csv_byte(), 0..12)],
    )
}

/// A record as `csv export` writes it: fields joined by commas, a newline at the end.
fn write_record(out: &mut Vec<u8>, record: &[Option<Vec<u8>>]) {
    for (i, field) in record.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_csv_field(out, field.as_deref());
    }
    out.push(b'\n');
}

/// Reads CSV the way COPY ... (FORMAT csv) does, strictly: an unquoted empty field is NULL,
/// `"..."` is a value with `""` for a quote, records end at an unquoted `\n`. Anything COPY
/// would reject or read differently is an error: an unquoted `"` or `\r`, text after a
/// closing quote, a missing final newline, and a record that is the bare `\.` line, which
/// COPY takes for the end of the data.
fn read_pg_csv(data: &[u8]) -> Result<Vec<CsvRecord>, String> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let start = pos;
        let mut record = Vec::new();
        loop {
            if data.get(pos) == Some(&b'"') {
                pos += 1;
                let mut value = Vec::new();
                loop {
                    match data.get(pos) {
                        None => return Err(format!("record at byte {start}: unterminated quoted field")),
                        Some(b'"') if data.get(pos + 1) == Some(&b'"') => {
                            value.push(b'"');
                            pos += 2;
                        }
                        Some(b'"') => {
                            pos += 1;
                            break;
                        }
                        Some(&byte) => {
                            value.push(byte);
                            pos += 1;
                        }
                    }
                }
                record.push(Some(value));
            } else {
                let end = data[pos..]
                    .iter()
                    .position(|b| matches!(b, b',' | b'\n'))
                    .map_or(data.len(), |i| pos + i);
                let raw = &data[pos..end];
                if raw.iter().any(|b| matches!(b, b'"' | b'\r')) {
                    return Err(format!("record at byte {start}: unquoted quote or CR in {raw:?}"));
                }
                record.push((!raw.is_empty()).then(|| raw.to_vec()));
                pos = end;
            }
            match data.get(pos) {
                Some(b',') => pos += 1,
                Some(b'\n') => {
                    pos += 1;
                    break;
                }
                _ => return Err(format!("record at byte {start}: no comma or newline after field")),
            }
        }
        if &data[start..pos] == b"\\.\n" {
            return Err(format!("record at byte {start} is the end-of-data marker"));
        }
        records.push(record);
    }
    Ok(records)
}

proptest! {
    #![proptest_config(config())]

    /// What the CSV writer writes, COPY reads back as the same values: NULL stays NULL, ""
    /// stays the empty string, commas, quotes, CR, LF and `\.` survive.
    #[test]
    fn csv_fields_round_trip_through_pg_csv_rules(
        records in prop::collection::vec(prop::collection::vec(csv_value(), 1..6), 0..8),
    ) {
        let mut data = Vec::new();
        for record in &records {
            write_record(&mut data, record);
        }
        prop_assert_eq!(read_pg_csv(&data), Ok(records));
    }

    /// Arbitrary bytes as the file `csv import` reads: always an error with a message,
    /// never a panic. A header that parses gets as far as connecting, to a Unix socket
    /// directory with no server in it.
    #[test]
    fn csv_import_survives_arbitrary_input(input in prop::collection::vec(csv_byte(), 0..64)) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("input.csv");
        std::fs::write(&file, &input).unwrap();
        let target = ConnectionSpec::parse_with_env(
            &format!("host={} user=prop dbname=prop sslmode=disable", dir.path().display()),
            |_| None,
        )
        .unwrap();
        let options = CsvImportOptions {
            target,
            table: "t".into(),
            input: file.to_str().unwrap().into(),
            mode: RestoreMode::Append,
            empty_as_null: false,
            disable_triggers: false,
        };
        let Err(error) = pgmirror::csv::import(&options) else {
            return Err(TestCaseError::fail("csv import succeeded without a server"));
        };
        prop_assert!(!error.to_string().is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Mirror metadata
// ---------------------------------------------------------------------------------------

const METADATA_TABLES: &[&str] = &[
    "_pgmirror_meta",
    "_pgmirror_tables",
    "_pgmirror_columns",
    "_pgmirror_indexes",
    "_pgmirror_constraints",
    "_pgmirror_sequences",
    "_pgmirror_partitions",
    "_pgmirror_types",
    "_pgmirror_curation",
    "_pgmirror_views",
    "_pgmirror_objects",
];

/// Two data tables (one plain, one partitioned) and at least one row in every metadata
/// table, so every edit below has something to hit.
const MIRROR_CONTENTS: &str = r#"
CREATE TABLE "items" (
  "id" INTEGER PRIMARY KEY NOT NULL,
  "name" TEXT NOT NULL,
  "mood" TEXT
);
CREATE INDEX "items_name_idx" ON "items" ("name");
INSERT INTO items VALUES (1, 'one', 'ok'), (2, '', NULL);
CREATE TABLE "events" (
  "id" INTEGER NOT NULL,
  "at" TEXT NOT NULL
);
INSERT INTO events VALUES (1, '2024-05-01 12:00:00+00');

INSERT INTO _pgmirror_meta VALUES
  ('format_version', '1'), ('tool', 'pgmirror'), ('database', 'shop'), ('interval_style', 'postgres');
INSERT INTO _pgmirror_tables VALUES
  ('events', 'public', 'events', 'partitioned table', 1, 16384, '["public.events_2024"]',
   'CREATE TABLE public.events (
    "id" bigint NOT NULL,
    "at" timestamp with time zone NOT NULL
) PARTITION BY RANGE (at)'),
  ('items', 'public', 'items', 'table', 2, 8192, '[]',
   'CREATE TABLE public.items (
    "id" integer GENERATED BY DEFAULT AS IDENTITY NOT NULL,
    "name" text NOT NULL,
    "mood" public.mood DEFAULT ''ok''::public.mood,
    CONSTRAINT "items_pkey" PRIMARY KEY (id),
    CONSTRAINT "items_name_check" CHECK ((name <> ''x''::text))
)');
INSERT INTO _pgmirror_columns VALUES
  ('events', 1, 'id', 'bigint', 20, -1, 1, NULL, '', '', 'int8', 'INTEGER'),
  ('events', 2, 'at', 'timestamp with time zone', 1184, -1, 1, NULL, '', '', 'timestamptz', 'TEXT'),
  ('items', 1, 'id', 'integer', 23, -1, 1, NULL, 'by default', '', 'int4', 'INTEGER'),
  ('items', 2, 'name', 'text', 25, -1, 1, NULL, '', '', 'text', 'TEXT'),
  ('items', 3, 'mood', 'public.mood', 16390, -1, 0, '''ok''::public.mood', '', '', 'text', 'TEXT');
INSERT INTO _pgmirror_indexes VALUES
  ('items', 'items_pkey', 'CREATE UNIQUE INDEX items_pkey ON public.items USING btree (id)',
   1, 1, NULL, 'rowid', NULL),
  ('items', 'items_name_idx', 'CREATE INDEX items_name_idx ON public.items USING btree (name)',
   0, 0, 'items_name_idx', 'created', NULL);
INSERT INTO _pgmirror_constraints VALUES
  ('items', 'items_pkey', 'p', 'PRIMARY KEY (id)', 1, NULL, 1),
  ('items', 'items_name_check', 'c', 'CHECK ((name <> ''x''::text))', 0, 'not translated', 1);
INSERT INTO _pgmirror_sequences VALUES
  ('public', 'items_id_seq', 'integer', 1, 1, 1, 2147483647, 0, 2, 'public', 'items', 'id', 1);
INSERT INTO _pgmirror_partitions VALUES
  ('events', 0, 'public', 'events', '', '', '', 'RANGE (at)'),
  ('events', 1, 'public', 'events_2024', 'public', 'events',
   'FOR VALUES FROM (''2024-01-01 00:00:00+00'') TO (''2025-01-01 00:00:00+00'')', NULL);
INSERT INTO _pgmirror_types VALUES
  ('public', 'mood', 'enum', 'CREATE TYPE public.mood AS ENUM (''sad'', ''ok'')');
INSERT INTO _pgmirror_curation VALUES ('items', 'where', 'id > 0');
INSERT INTO _pgmirror_views VALUES ('public', 'item_names', 'view', ' SELECT items.name FROM public.items;', NULL, 1);
INSERT INTO _pgmirror_objects VALUES
  (1, 'table', 'public', 'items', 'items', 'CREATE TABLE public.items (id integer NOT NULL, name text NOT NULL)'),
  (2, 'trigger', 'public', 'items_touch', 'items', 'CREATE TRIGGER items_touch BEFORE INSERT ON public.items FOR EACH ROW EXECUTE FUNCTION public.touch()');
"#;

/// The intact mirror's bytes, built once and copied for each case.
fn pristine_mirror() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mirror.db");
        let conn = Connection::open(&path).unwrap();
        // The format markers Mirror::open checks, set as the sink sets them.
        conn.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {FORMAT_VERSION};"
        ))
        .unwrap();
        conn.execute_batch(pgmirror::mirror::METADATA_SCHEMA).unwrap();
        conn.execute_batch(MIRROR_CONTENTS).unwrap();
        drop(conn);
        std::fs::read(&path).unwrap()
    })
}

#[test]
fn hand_built_mirror_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mirror.db");
    std::fs::write(&path, pristine_mirror()).unwrap();
    let mirror = Mirror::open(&path).expect("the hand-built mirror is valid");
    let names: Vec<&str> = mirror.tables.iter().map(|t| t.sqlite_name.as_str()).collect();
    assert_eq!(names, ["events", "items"]);
    let items = mirror.table("items").unwrap();
    assert_eq!(items.columns.len(), 3);
    assert_eq!(items.indexes.len(), 2);
    assert_eq!(items.constraints.len(), 2);
    assert_eq!(items.curation.len(), 1);
    assert_eq!(mirror.table("events").unwrap().partitions.len(), 2);
    assert_eq!(
        (mirror.sequences.len(), mirror.types.len(), mirror.views.len()),
        (1, 1, 1)
    );
    let kinds: Vec<_> = mirror.objects.iter().map(|o| o.kind).collect();
    assert_eq!(kinds, [ObjectKind::Table, ObjectKind::Trigger]);
    assert_eq!(mirror.objects_of(ObjectKind::Trigger, Some(items)).count(), 1);
    for table in &mirror.tables {
        table.loadable_columns().expect("known codecs");
    }
}

/// A value a tampered or damaged mirror could hold where the reader expects another type.
#[derive(Debug, Clone)]
enum Hostile {
    /// Bound as it is: NULL, a blob, an integer, a real or text.
    Value(Value),
    /// Text that is not UTF-8 (SQLite stores whatever bytes it is given).
    BadText(Vec<u8>),
}

fn hostile() -> impl Strategy<Value = Hostile> {
    let integer = prop_oneof![
        Just(i64::MAX),
        Just(i64::MIN),
        Just(1i64 << 40),
        Just(-1i64),
        any::<i64>()
    ];
    prop_oneof![
        Just(Hostile::Value(Value::Null)),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|b| Hostile::Value(Value::Blob(b))),
        integer.prop_map(|i| Hostile::Value(Value::Integer(i))),
        any::<f64>().prop_map(|f| Hostile::Value(Value::Real(f))),
        prop_oneof![Just("x".to_owned()), any::<String>()].prop_map(|s| Hostile::Value(Value::Text(s))),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|mut b| {
            b.insert(0, 0xff);
            Hostile::BadText(b)
        }),
    ]
}

/// One edit to a metadata table; the indexes pick the table, row and column.
#[derive(Debug, Clone)]
enum Edit {
    DeleteRow {
        table: Index,
        row: Index,
    },
    DropTable {
        table: Index,
    },
    SetValue {
        table: Index,
        row: Index,
        column: Index,
        value: Hostile,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => (any::<Index>(), any::<Index>()).prop_map(|(table, row)| Edit::DeleteRow { table, row }),
        1 => any::<Index>().prop_map(|table| Edit::DropTable { table }),
        4 => (any::<Index>(), any::<Index>(), any::<Index>(), hostile())
            .prop_map(|(table, row, column, value)| Edit::SetValue { table, row, column, value }),
    ]
}

/// Column names of `table`; none when an earlier edit dropped it.
fn column_names(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
        .query_map([], |r| r.get(0))?
        .collect()
}

fn rowids(conn: &Connection, table: &str) -> rusqlite::Result<Vec<i64>> {
    conn.prepare(&format!("SELECT rowid FROM {table} ORDER BY rowid"))?
        .query_map([], |r| r.get(0))?
        .collect()
}

/// Rebuilds `table` with untyped, unconstrained columns, so any value fits anywhere: SQLite
/// would refuse a NULL in a NOT NULL column and turn 7 into '7' in a TEXT one.
fn loosen(conn: &Connection, table: &str, columns: &[String]) -> rusqlite::Result<()> {
    let list = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    conn.execute_batch(&format!(
        "CREATE TABLE loose ({list}); INSERT INTO loose SELECT {list} FROM {table};
         DROP TABLE {table}; ALTER TABLE loose RENAME TO {table};"
    ))
}

fn apply(conn: &Connection, edit: &Edit) -> rusqlite::Result<()> {
    match edit {
        Edit::DropTable { table } => {
            conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", table.get(METADATA_TABLES)))?;
        }
        Edit::DeleteRow { table, row } => {
            let table = table.get(METADATA_TABLES);
            if column_names(conn, table)?.is_empty() {
                return Ok(());
            }
            let rowids = rowids(conn, table)?;
            if !rowids.is_empty() {
                let rowid = rowids[row.index(rowids.len())];
                conn.execute(&format!("DELETE FROM {table} WHERE rowid = ?1"), [rowid])?;
            }
        }
        Edit::SetValue {
            table,
            row,
            column,
            value,
        } => {
            let table = table.get(METADATA_TABLES);
            let columns = column_names(conn, table)?;
            if columns.is_empty() {
                return Ok(());
            }
            // Loosen first: the rebuild renumbers rowids.
            loosen(conn, table, &columns)?;
            let rowids = rowids(conn, table)?;
            if rowids.is_empty() {
                return Ok(());
            }
            let rowid = rowids[row.index(rowids.len())];
            let column = &columns[column.index(columns.len())];
            match value {
                Hostile::Value(value) => conn.execute(
                    &format!("UPDATE {table} SET \"{column}\" = ?1 WHERE rowid = ?2"),
                    params![value, rowid],
                )?,
                Hostile::BadText(bytes) => conn.execute(
                    &format!("UPDATE {table} SET \"{column}\" = CAST(?1 AS TEXT) WHERE rowid = ?2"),
                    params![bytes, rowid],
                )?,
            };
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// A damaged mirror: rows deleted, tables dropped, values replaced by NULLs, blobs, huge
    /// integers, reals, stray or non-UTF-8 text, the file cut short. `Mirror::open` answers
    /// Ok or an error naming the file; it never panics.
    #[test]
    fn mirror_open_survives_damaged_metadata(
        edits in prop::collection::vec(edit(), 0..4),
        truncate in prop::option::weighted(0.25, any::<Index>()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mirror.db");
        std::fs::write(&path, pristine_mirror()).unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            // No fsync per edit: the file is thrown away after the case.
            conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY;").unwrap();
            for edit in &edits {
                apply(&conn, edit).expect("applying an edit to an intact file");
            }
        }
        if let Some(at) = truncate {
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            let len = file.metadata().unwrap().len() as usize;
            file.set_len(at.index(len) as u64).unwrap();
        }
        let untouched = edits.is_empty() && truncate.is_none();
        match Mirror::open(&path) {
            Ok(mirror) => {
                for table in &mirror.tables {
                    // An unknown codec is an error for that table, not a panic.
                    if let Err(error) = table.loadable_columns() {
                        prop_assert!(!error.to_string().is_empty());
                    }
                }
            }
            Err(error) => {
                prop_assert!(!untouched, "the intact mirror failed to open: {}", error);
                let message = error.to_string();
                prop_assert!(
                    message.contains(&path.display().to_string()),
                    "the error does not name the file: {:?}",
                    message
                );
            }
        }
    }
}
