//! The page writer against SQLite's own insert path: random batches through both, every
//! row read back identically, and the page-written file a database SQLite keeps using.

use std::path::Path;

use proptest::prelude::*;
use rusqlite::types::Value;

use crate::batch::{BatchLimits, RowBatch};
use crate::config::Writer;
use crate::convert::{Codec, Scalar, SelectAs, TypeInfo};
use crate::pg::catalog::{Column, RelationKind};
use crate::plan::{PlannedColumn, PlannedTable, SqliteSchema};
use crate::sink::DataSink;

#[derive(Debug, Clone)]
enum TestValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

const CODECS: [Codec; 5] = [
    Codec::Scalar(Scalar::Int8),
    Codec::Scalar(Scalar::Float8),
    Codec::Decimal { scale: None },
    Codec::Scalar(Scalar::Text),
    Codec::Scalar(Scalar::Bytea),
];

fn planned_table(name: &str, codecs: &[Codec], integer_key: bool) -> PlannedTable {
    let columns = codecs
        .iter()
        .enumerate()
        .map(|(i, codec)| {
            let name = format!("c{i} \"q\" é");
            PlannedColumn {
                name: name.clone(),
                codec: *codec,
                select_as: SelectAs::Column,
                source: Column {
                    attnum: i as i16 + 1,
                    name,
                    type_text: String::new(),
                    type_oid: 0,
                    typmod: -1,
                    not_null: false,
                    default: None,
                    identity: String::new(),
                    generated: String::new(),
                    is_local: true,
                    collation: None,
                    type_info: TypeInfo {
                        base_oid: 0,
                        typmod: -1,
                        typtype: b'b',
                        element: None,
                    },
                },
                redaction: None,
            }
        })
        .collect::<Vec<_>>();
    let sqlite = SqliteSchema {
        integer_primary_key: integer_key.then(|| columns[0].name.clone()),
        ..SqliteSchema::default()
    };
    PlannedTable {
        relation_oid: 0,
        schema: "public".into(),
        name: name.into(),
        kind: RelationKind::Table,
        sqlite_name: name.into(),
        columns,
        sqlite,
        estimated_rows: 0.0,
        curation: Vec::new(),
        query: None,
        count_query: None,
        counted_rows: None,
        given: None,
    }
}

fn integer() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(1),
        Just(-1),
        Just(i64::MIN),
        Just(i64::MAX),
        (0u32..64).prop_flat_map(|bits| {
            let edge = 1i64.wrapping_shl(bits);
            prop_oneof![Just(edge), Just(edge.wrapping_sub(1)), Just(edge.wrapping_neg())]
        }),
        any::<i64>(),
    ]
}

fn real() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0f64),
        Just(-0.0),
        Just(3.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        Just(i64::MAX as f64),
        Just(i64::MIN as f64),
        Just(9007199254740993.0),
        any::<f64>(),
        integer().prop_map(|i| i as f64),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        1 => Just("7".to_owned()),
        1 => Just(" 12 ".to_owned()),
        1 => Just("1e5".to_owned()),
        1 => Just("0x1F".to_owned()),
        1 => Just("NaN".to_owned()),
        1 => Just("Inf".to_owned()),
        1 => Just("-Infinity".to_owned()),
        8 => "[a-z0-9 .é€😀-]{0,40}",
        2 => (0usize..20_000).prop_map(|n| "x".repeat(n)),
        1 => (1usize..4).prop_map(|mb| "é".repeat(mb << 19)),
    ]
}

fn value() -> impl Strategy<Value = TestValue> {
    prop_oneof![
        2 => Just(TestValue::Null),
        3 => integer().prop_map(TestValue::Integer),
        3 => real().prop_map(TestValue::Real),
        3 => text().prop_map(TestValue::Text),
        2 => prop_oneof![
            10 => prop::collection::vec(any::<u8>(), 0..300),
            4 => (0usize..70_000).prop_map(|n| vec![0xa5; n]),
            1 => Just(vec![7u8; 3 << 20]),
        ]
        .prop_map(TestValue::Blob),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    codecs: Vec<Codec>,
    integer_key: bool,
    /// Each row's values (the key column's replaced by `keys` when there is one).
    rows: Vec<Vec<TestValue>>,
    keys: Vec<i64>,
    /// (rows in the batch, task it comes from)
    batches: Vec<(usize, usize)>,
    /// Rows whose first non-key column also gets an exact text.
    exact_rows: Vec<bool>,
}

fn case() -> impl Strategy<Value = Case> {
    (prop::collection::vec(0usize..5, 1..6), any::<bool>(), 0usize..300)
        .prop_flat_map(|(codec_indexes, integer_key, rows)| {
            let mut codecs: Vec<Codec> = codec_indexes.iter().map(|i| CODECS[*i]).collect();
            if integer_key {
                codecs.insert(0, CODECS[0]);
            }
            let columns = codecs.len();
            (
                Just(codecs),
                Just(integer_key),
                prop::collection::vec(prop::collection::vec(value(), columns), rows),
                prop::collection::vec(prop_oneof![integer(), -1000i64..1000, 0i64..100_000], rows),
                prop::collection::vec((1usize..120, 0usize..3), 1..40),
                prop::collection::vec(prop::bool::weighted(0.1), rows),
                any::<bool>(),
            )
        })
        .prop_map(|(codecs, integer_key, rows, keys, batches, exact_rows, sorted)| {
            // Distinct keys: a repeated draw is replaced by one from a range nothing else uses.
            let mut seen = std::collections::HashSet::new();
            let mut keys: Vec<i64> = keys
                .into_iter()
                .enumerate()
                .map(|(i, key)| if seen.insert(key) { key } else { 1 << 40 | i as i64 })
                .collect();
            if sorted {
                keys.sort_unstable();
            }
            Case {
                codecs,
                integer_key,
                rows,
                keys,
                batches,
                exact_rows,
            }
        })
}

fn batches_of(case: &Case) -> Vec<RowBatch> {
    let columns = case.codecs.len();
    let mut batches = Vec::new();
    let mut row = 0;
    let mut shapes = case.batches.iter().cycle();
    while row < case.rows.len() {
        let (size, task) = *shapes.next().unwrap_or(&(1, 0));
        let mut batch = RowBatch {
            task,
            ..RowBatch::new(0, columns, BatchLimits::default())
        };
        for row in row..(row + size).min(case.rows.len()) {
            for (column, value) in case.rows[row].iter().enumerate() {
                if case.integer_key && column == 0 {
                    batch.push_integer(case.keys[row]);
                    continue;
                }
                if case.exact_rows[row] && column == usize::from(case.integer_key) {
                    let start = batch.text.len();
                    batch.text.push_str("1.10");
                    batch.note_exact_text(start..batch.text.len());
                }
                match value {
                    TestValue::Null => batch.push_null(),
                    TestValue::Integer(v) => batch.push_integer(*v),
                    TestValue::Real(v) => batch.push_real(*v),
                    TestValue::Text(v) => batch.push_str(v),
                    TestValue::Blob(v) => batch.push_blob(v),
                }
            }
        }
        row += batch.rows();
        batches.push(batch);
    }
    batches
}

fn write(path: &Path, table: &PlannedTable, batches: &[RowBatch], writer: Writer) -> Result<(), String> {
    std::fs::write(path, b"").map_err(|e| e.to_string())?;
    let tables = std::slice::from_ref(table);
    let mut sink = DataSink::create(path, tables, writer).map_err(|e| e.to_string())?;
    assert_eq!(matches!(sink, DataSink::Pages(_)), writer == Writer::Pages);
    for batch in batches {
        sink.write_batch(batch).map_err(|e| e.to_string())?;
    }
    let mut sink = sink.finish(tables).map_err(|e| e.to_string())?;
    sink.build_indexes(tables).map_err(|e| e.to_string())?;
    Ok(())
}

/// Every row with its rowid, each value with its storage class and exact bits.
fn contents(path: &Path, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(path).expect("open");
    let mut statement = conn.prepare(sql).expect("prepare");
    let columns = statement.column_count();
    statement
        .query_map([], |row| {
            (0..columns)
                .map(|i| {
                    Ok(match row.get::<_, Value>(i)? {
                        Value::Real(r) => format!("real {:016x}", r.to_bits()),
                        other => format!("{other:?}"),
                    })
                })
                .collect()
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

fn integrity(conn: &rusqlite::Connection) -> Vec<String> {
    conn.prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("integrity_check")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn both_writers_store_the_same_rows(case in case()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let table = planned_table("t \"x\" ü", &case.codecs, case.integer_key);
        let batches = batches_of(&case);
        let (pages, sqlite) = (dir.path().join("pages.db"), dir.path().join("sqlite.db"));
        let page_result = write(&pages, &table, &batches, Writer::Pages);
        let sqlite_result = write(&sqlite, &table, &batches, Writer::Sqlite);
        prop_assert_eq!(page_result.is_ok(), sqlite_result.is_ok(), "{:?} vs {:?}", page_result, sqlite_result);
        if page_result.is_err() {
            return Ok(());
        }
        // Without an INTEGER PRIMARY KEY the writers number rows differently (the page
        // writer gives each task its own rowid range): rows compare with their exact texts
        // attached through the rowid, in any order.
        let all_rows = "SELECT *, (SELECT group_concat(column_name || '=' || exact_text, ';') FROM \
             (SELECT column_name, exact_text FROM _pgmirror_exact_text e WHERE e.row = t.rowid ORDER BY 1)) \
             FROM \"t \"\"x\"\" ü\" t";
        let sorted = |path: &Path| {
            let mut rows = contents(path, all_rows);
            rows.sort();
            rows
        };
        prop_assert_eq!(sorted(&pages), sorted(&sqlite));
        // Every exact text belongs to a row, and both files have the same number of them.
        let exact_rows = "SELECT count(*), count(*) FILTER (WHERE row NOT IN (SELECT rowid FROM \"t \"\"x\"\" ü\")) \
             FROM _pgmirror_exact_text";
        let (page_exact, sqlite_exact) = (contents(&pages, exact_rows), contents(&sqlite, exact_rows));
        prop_assert_eq!(&page_exact, &sqlite_exact);
        prop_assert_eq!(&page_exact[0][1], "Integer(0)");
        if case.integer_key {
            let by_rowid = "SELECT rowid, * FROM \"t \"\"x\"\" ü\" ORDER BY rowid";
            prop_assert_eq!(contents(&pages, by_rowid), contents(&sqlite, by_rowid));
        }

        let conn = rusqlite::Connection::open(&pages).expect("open");
        prop_assert_eq!(integrity(&conn), ["ok"]);
        // SQLite goes on using the file: new rows, an index over everything, VACUUM.
        let columns = case.codecs.len();
        let placeholders = vec!["NULL"; columns].join(", ");
        conn.execute_batch(&format!(
            "INSERT INTO \"t \"\"x\"\" ü\" VALUES ({placeholders});
             CREATE INDEX everything ON \"t \"\"x\"\" ü\" ({});
             VACUUM;",
            (0..columns).map(|i| format!("\"c{i} \"\"q\"\" é\"")).collect::<Vec<_>>().join(", ")
        )).expect("using the page-written file");
        prop_assert_eq!(integrity(&conn), ["ok"]);
        let count: i64 = conn.query_row("SELECT count(*) FROM \"t \"\"x\"\" ü\"", [], |r| r.get(0)).expect("count");
        prop_assert_eq!(count as usize, case.rows.len() + 1);
    }
}

#[test]
fn a_duplicate_integer_key_is_refused_by_both_writers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = planned_table("dup", &[CODECS[0], CODECS[3]], true);
    let case = Case {
        codecs: vec![CODECS[0], CODECS[3]],
        integer_key: true,
        rows: vec![vec![TestValue::Null, TestValue::Text("a".into())]; 3],
        keys: vec![5, 9, 5],
        batches: vec![(2, 0), (1, 1)],
        exact_rows: vec![false; 3],
    };
    let batches = batches_of(&case);
    for writer in [Writer::Pages, Writer::Sqlite] {
        let error = write(&dir.path().join("dup.db"), &table, &batches, writer).expect_err("duplicate key");
        assert!(error.contains("UNIQUE"), "{writer:?}: {error}");
    }
}

#[test]
fn a_large_out_of_order_table_builds_a_deep_tree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let codecs = vec![CODECS[0], CODECS[3]];
    let table = planned_table("deep", &codecs, true);
    let rows = 60_000;
    // Two interleaved tasks reading overlapping key ranges, each mostly in order.
    let keys: Vec<i64> = (0..rows as i64)
        .map(|i| if i % 2 == 0 { i } else { rows as i64 * 2 - i })
        .collect();
    let case = Case {
        codecs,
        integer_key: true,
        rows: (0..rows)
            .map(|i| vec![TestValue::Null, TestValue::Text(format!("row {i}"))])
            .collect(),
        keys,
        batches: vec![(500, 0), (500, 1), (7, 0)],
        exact_rows: vec![false; rows],
    };
    let batches = batches_of(&case);
    let (pages, sqlite) = (dir.path().join("pages.db"), dir.path().join("sqlite.db"));
    write(&pages, &table, &batches, Writer::Pages).expect("pages");
    write(&sqlite, &table, &batches, Writer::Sqlite).expect("sqlite");
    let all_rows = "SELECT rowid, * FROM deep ORDER BY rowid";
    assert_eq!(contents(&pages, all_rows), contents(&sqlite, all_rows));
    let conn = rusqlite::Connection::open(&pages).expect("open");
    assert_eq!(integrity(&conn), ["ok"]);
}

#[test]
fn tasks_of_a_table_without_a_key_number_rows_in_ranges_of_their_own() {
    let mut table = super::TaskRowids::default();
    let span = super::TASK_ROWID_SPAN;
    // Batches of two tasks interleave; each task's rowids still ascend without a gap and
    // the first task seen numbers its rows 1..n, as SQLite would.
    assert_eq!(table.take(7, 100), Ok(1));
    assert_eq!(table.take(3, 50), Ok(span + 1));
    assert_eq!(table.take(7, 100), Ok(101));
    assert_eq!(table.take(3, 50), Ok(span + 51));
    assert_eq!(table.take(9, 1), Ok(2 * span + 1));
    // A task cannot spill into the next one's range.
    let full = usize::try_from(span - 150).expect("fits");
    assert_eq!(table.take(7, full - 50), Ok(201));
    assert!(table.take(7, 1).is_err(), "rows past the task's span are refused");
}

#[test]
fn a_file_past_one_gibibyte_skips_the_page_of_the_lock_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.db");
    std::fs::write(&path, b"").expect("create");
    let codecs = [CODECS[0], CODECS[4]];
    let table = planned_table("big", &codecs, true);
    let tables = std::slice::from_ref(&table);
    let mut sink = DataSink::create(&path, tables, Writer::Pages).expect("create the sink");
    assert!(matches!(sink, DataSink::Pages(_)));
    // Blobs of about 1 MiB, each a chain of overflow pages, past the lock bytes at 2^30; then
    // small rows, whose leaves come after that page too.
    let blob = |row: i64| -> Vec<u8> {
        // Each 4 KiB its own byte: a page of a chain out of place reads back different.
        let mut blob = vec![0u8; (1 << 20) + row as usize * 37];
        for (block, bytes) in blob.chunks_mut(4096).enumerate() {
            bytes.fill((block as i64 * 31 + row) as u8);
        }
        blob
    };
    let (large, small) = (1100i64, 5000i64);
    for first in (0..large).step_by(10) {
        let mut batch = RowBatch::new(0, codecs.len(), BatchLimits::default());
        for row in first..(first + 10).min(large) {
            batch.push_integer(row + 1);
            batch.push_blob(&blob(row));
        }
        sink.write_batch(&batch).expect("large rows");
    }
    let mut batch = RowBatch::new(0, codecs.len(), BatchLimits::default());
    for row in large..large + small {
        batch.push_integer(row + 1);
        batch.push_blob(&row.to_be_bytes());
    }
    sink.write_batch(&batch).expect("small rows");
    drop(sink.finish(tables).expect("finish"));
    assert!(std::fs::metadata(&path).expect("size").len() > 1 << 30);

    let conn = rusqlite::Connection::open(&path).expect("open");
    assert_eq!(integrity(&conn), ["ok"]);
    let mut statement = conn
        .prepare("SELECT rowid, \"c1 \"\"q\"\" é\" FROM big ORDER BY rowid")
        .expect("prepare");
    let mut rows = statement.query([]).expect("query");
    let mut expected = 1i64;
    while let Some(row) = rows.next().expect("row") {
        let (rowid, value): (i64, Vec<u8>) = (row.get(0).expect("rowid"), row.get(1).expect("blob"));
        assert_eq!(rowid, expected);
        let row = rowid - 1;
        let wanted = if row < large {
            blob(row)
        } else {
            row.to_be_bytes().to_vec()
        };
        assert!(
            value == wanted,
            "row {rowid}: {} bytes read back differ",
            value.len()
        );
        expected += 1;
    }
    assert_eq!(expected - 1, large + small);
}

#[test]
fn check_constraints_are_found_in_the_insert_program_sqlite_compiles() {
    let conn = rusqlite::Connection::open_in_memory().expect("open");
    conn.execute_batch(
        "CREATE TABLE column_check (id INTEGER PRIMARY KEY, n INTEGER CHECK (n > 0));
         CREATE TABLE table_check (a TEXT NOT NULL, b TEXT, CONSTRAINT ordered CHECK (a < b));
         CREATE TABLE \"q\"\"uoted\" (id INTEGER PRIMARY KEY CHECK (id > 0));
         CREATE TABLE always (a, CHECK (1));
         CREATE TABLE ignored (a, CHECK (a) ON CONFLICT IGNORE);
         CREATE TABLE \"no check\" (checked_at TEXT NOT NULL DEFAULT 'CHECK (1)', \"CHECK\" INTEGER /* CHECK (x) */);",
    )
    .expect("schema");
    for (table, checked) in [
        ("column_check", true),
        ("table_check", true),
        ("q\"uoted", true),
        ("always", true),
        ("ignored", true),
        ("no check", false),
    ] {
        assert_eq!(
            super::has_check_constraint(&conn, table).expect("explain"),
            checked,
            "{table}"
        );
    }
}
