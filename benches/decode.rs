//! Micro-benchmarks without a server, on the narrow benchmark shape (bigint, int, double,
//! short text, bool, timestamptz), in rows/s:
//! - `copy_decode_narrow`: binary COPY reading and column conversion into RowBatches;
//! - `sqlite_insert_narrow`: the SQLite writer (SqliteSink) taking those batches;
//! - `numeric_decode`: numeric(12,2) values as numbers (format 3, `decimal(2)`) against
//!   their exact text (format 2's `numeric`), measured side by side.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgmirror::batch::{BatchLimits, RowBatch};
use pgmirror::convert::{Codec, Scalar, SelectAs, TypeInfo};
use pgmirror::copy::{CopyError, CopyReader, Row};
use pgmirror::pg::catalog::{Column, RelationKind};
use pgmirror::plan::{PlannedColumn, PlannedTable, SqliteSchema};
use pgmirror::sink::SqliteSink;

const CODECS: [Codec; 6] = [
    Codec::Scalar(Scalar::Int8),
    Codec::Scalar(Scalar::Int4),
    Codec::Scalar(Scalar::Float8),
    Codec::Scalar(Scalar::Text),
    Codec::Scalar(Scalar::Bool),
    Codec::Scalar(Scalar::Timestamptz),
];

fn narrow_stream(rows: u64) -> Vec<u8> {
    let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
    out.extend_from_slice(&[0; 8]);
    let field = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    for i in 0..rows {
        out.extend_from_slice(&6i16.to_be_bytes());
        field(&mut out, &(i as i64).to_be_bytes());
        field(&mut out, &((i % 1000) as i32).to_be_bytes());
        field(&mut out, &(i as f64 * 0.5).to_be_bytes());
        field(
            &mut out,
            format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).as_bytes(),
        );
        field(&mut out, &[(i % 2) as u8]);
        field(
            &mut out,
            &(700_000_000_000_000i64 + i as i64 * 1_000_000).to_be_bytes(),
        );
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// Reads the stream in network-sized chunks and decodes every row; returns the rows.
fn decode(stream: &[u8], chunk: usize) -> usize {
    let limits = BatchLimits::default();
    let mut reader = CopyReader::new(CODECS.len());
    let mut batch = RowBatch::new(0, CODECS.len(), limits);
    let mut rows = 0;
    for piece in stream.chunks(chunk) {
        reader
            .feed(piece, |row: &Row<'_>| {
                for (index, codec) in CODECS.iter().enumerate() {
                    match row.get(index) {
                        None => batch.push_null(),
                        Some(bytes) => codec.decode_into(bytes, &mut batch)?,
                    }
                }
                if batch.is_full(limits) {
                    rows += batch.rows();
                    batch = RowBatch::new(0, CODECS.len(), limits);
                }
                Ok::<(), CopyError>(())
            })
            .expect("valid stream");
    }
    reader.finish().expect("complete stream");
    rows + batch.rows()
}

fn bench_decode(c: &mut Criterion) {
    let rows = 100_000;
    let stream = narrow_stream(rows);
    let mut group = c.benchmark_group("copy_decode_narrow");
    group.throughput(Throughput::Elements(rows));
    for chunk in [8 << 10, 64 << 10] {
        group.bench_with_input(BenchmarkId::from_parameter(chunk), &chunk, |b, &chunk| {
            b.iter(|| assert_eq!(decode(&stream, chunk), rows as usize));
        });
    }
    group.finish();
}

/// The narrow table as the plan would describe it, for the sink.
fn narrow_table() -> PlannedTable {
    let names = ["id", "n", "x", "s", "b", "t"];
    let columns = names
        .iter()
        .zip(CODECS)
        .enumerate()
        .map(|(i, (name, codec))| PlannedColumn {
            name: (*name).to_owned(),
            codec,
            select_as: SelectAs::Column,
            source: Column {
                attnum: i as i16 + 1,
                name: (*name).to_owned(),
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
        })
        .collect();
    PlannedTable {
        relation_oid: 0,
        schema: "public".into(),
        name: "narrow".into(),
        kind: RelationKind::Table,
        sqlite_name: "narrow".into(),
        columns,
        sqlite: SqliteSchema::default(),
        estimated_rows: 0.0,
        curation: Vec::new(),
        query: None,
        count_query: None,
        counted_rows: None,
        given: None,
    }
}

/// Decoded batches of the narrow stream, as workers hand them to the writer.
fn narrow_batches(rows: u64) -> Vec<RowBatch> {
    let stream = narrow_stream(rows);
    let limits = BatchLimits::default();
    let mut reader = CopyReader::new(CODECS.len());
    let mut batches = vec![RowBatch::new(0, CODECS.len(), limits)];
    reader
        .feed(&stream, |row: &Row<'_>| {
            let batch = batches.last_mut().expect("a batch");
            for (index, codec) in CODECS.iter().enumerate() {
                match row.get(index) {
                    None => batch.push_null(),
                    Some(bytes) => codec.decode_into(bytes, batch)?,
                }
            }
            if batch.is_full(limits) {
                batches.push(RowBatch::new(0, CODECS.len(), limits));
            }
            Ok::<(), CopyError>(())
        })
        .expect("valid stream");
    batches
}

fn bench_insert(c: &mut Criterion) {
    let rows = 200_000;
    let batches = narrow_batches(rows);
    let table = narrow_table();
    let dir = std::env::temp_dir().join(format!("pgmirror-bench-insert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join("narrow.db");
    let mut group = c.benchmark_group("sqlite_insert_narrow");
    group.throughput(Throughput::Elements(rows));
    group.sample_size(10);
    group.bench_function("200k_rows", |b| {
        b.iter(|| {
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, b"").expect("file");
            let mut sink = SqliteSink::create(&path, std::slice::from_ref(&table)).expect("sink");
            for batch in &batches {
                sink.write_batch(batch).expect("write");
            }
            assert_eq!(sink.row_counts(), vec![rows]);
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// numeric's binary send form of a decimal text such as `-1234.56`.
fn numeric_bytes(text: &str) -> Vec<u8> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let whole = format!("{}{whole}", "0".repeat((4 - whole.len() % 4) % 4));
    let padded_fraction = format!("{fraction}{}", "0".repeat((4 - fraction.len() % 4) % 4));
    let group = |chunk: &[u8]| std::str::from_utf8(chunk).unwrap().parse::<u16>().unwrap();
    let mut digits: Vec<u16> = whole.as_bytes().chunks(4).map(group).collect();
    let mut weight = digits.len() as i16 - 1;
    digits.extend(padded_fraction.as_bytes().chunks(4).map(group));
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(digits.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&(if digits.is_empty() { 0 } else { weight }).to_be_bytes());
    bytes.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
    bytes.extend_from_slice(&(fraction.len() as u16).to_be_bytes());
    for digit in digits {
        bytes.extend_from_slice(&digit.to_be_bytes());
    }
    bytes
}

fn bench_numeric(c: &mut Criterion) {
    let values: Vec<Vec<u8>> = (0..100_000u64)
        .map(|i| {
            let cents = (i.wrapping_mul(0x9e37_79b9) % 1_000_000_000) as i64 - 200_000_000;
            numeric_bytes(&format!(
                "{}{}.{:02}",
                if cents < 0 { "-" } else { "" },
                cents.abs() / 100,
                cents.abs() % 100
            ))
        })
        .collect();
    let mut group = c.benchmark_group("numeric_decode");
    group.throughput(Throughput::Elements(values.len() as u64));
    for (name, codec) in [
        ("decimal_2_as_number", Codec::Decimal { scale: Some(2) }),
        ("numeric_as_text", Codec::Scalar(Scalar::Numeric)),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut batch = RowBatch::new(0, 1, BatchLimits::default());
                for value in &values {
                    codec.decode_into(value, &mut batch).expect("valid numeric");
                }
                assert!(batch.exact.is_empty());
                batch.rows()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_insert, bench_numeric);
criterion_main!(benches);
