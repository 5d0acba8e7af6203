//! Micro-benchmark: binary COPY reading and column decoding into RowBatches, without a
//! server, on a synthetic stream of the narrow benchmark shape (bigint, int, double,
//! short text, bool, timestamptz). Throughput is reported in rows/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgmirror::batch::{BatchLimits, RowBatch};
use pgmirror::convert::{Codec, Scalar};
use pgmirror::copy::{CopyError, CopyReader, Row};

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

criterion_group!(benches, bench_decode);
criterion_main!(benches);
