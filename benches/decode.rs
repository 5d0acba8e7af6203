//! Micro-benchmarks without a server, on the narrow benchmark shape (bigint, int, double,
//! short text, bool, timestamptz), in rows/s:
//! - `copy_decode_narrow`: binary COPY reading and column conversion into RowBatches;
//! - `sqlite_insert_narrow`: the SQLite writer (SqliteSink) taking those batches.

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

criterion_group!(benches, bench_decode, bench_insert);
criterion_main!(benches);
