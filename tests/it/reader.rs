//! The binary COPY reader on a captured stream, without a server.

use std::path::Path;

use pgmirror::copy::{CopyError, CopyReader, Row};

/// fixtures/copy/every_type.bin: `\copy (SELECT * FROM every_type WHERE id <= 4 ORDER BY id)
/// TO ... (FORMAT binary)` of fixtures/types.sql, captured from PostgreSQL 15.
const COLUMNS: usize = 42;

fn captured() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/copy/every_type.bin"))
        .expect("fixture")
}

type Rows = Vec<Vec<Option<Vec<u8>>>>;

fn read(data: &[u8], columns: usize, chunk: usize) -> Result<Rows, CopyError> {
    let mut reader = CopyReader::new(columns);
    let mut rows = Vec::new();
    for piece in data.chunks(chunk) {
        reader.feed(piece, |row: &Row<'_>| {
            rows.push((0..row.len()).map(|i| row.get(i).map(<[u8]>::to_vec)).collect());
            Ok::<(), CopyError>(())
        })?;
    }
    reader.finish()?;
    Ok(rows)
}

#[test]
fn captured_stream_reads_identically_at_every_chunk_size() {
    let data = captured();
    let whole = read(&data, COLUMNS, data.len()).expect("whole stream");
    assert_eq!(whole.len(), 4);
    let ids: Vec<i32> = whole
        .iter()
        .map(|row| i32::from_be_bytes(row[0].clone().unwrap().try_into().unwrap()))
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    assert!(
        whole[0][1..].iter().all(Option::is_none),
        "row 1 is all NULL but its id"
    );
    assert_eq!(
        whole[1][11].as_deref(),
        Some(&b""[..]),
        "row 2's c_text is the empty string, not NULL"
    );
    for chunk in [1, 7, 19, 64] {
        assert_eq!(
            read(&data, COLUMNS, chunk).expect("chunked"),
            whole,
            "chunk size {chunk}"
        );
    }
}

#[test]
fn truncated_stream_is_an_error_at_every_cut() {
    let data = captured();
    for cut in [0, 5, 18, 19, 25, data.len() / 2, data.len() - 2, data.len() - 1] {
        let error = read(&data[..cut], COLUMNS, 7).expect_err("truncated stream must fail");
        assert!(
            matches!(error, CopyError::Truncated { .. }),
            "cut at {cut}: {error}"
        );
    }
}

#[test]
fn bad_signature_is_rejected() {
    let mut data = captured();
    data[0] = b'X';
    assert_eq!(read(&data, COLUMNS, 64), Err(CopyError::BadSignature));
}

#[test]
fn wrong_field_count_names_the_row() {
    let data = captured();
    let error = read(&data, COLUMNS + 1, 19).expect_err("field count mismatch");
    assert_eq!(
        error,
        CopyError::FieldCount {
            row: 1,
            expected: COLUMNS + 1,
            found: COLUMNS as i16
        }
    );
    assert!(error.to_string().contains("row 1"));
}

#[test]
fn corrupt_field_length_is_an_error_not_a_panic() {
    let mut data = captured();
    // The first field length of the first row sits right after the header and field count.
    data[21..25].copy_from_slice(&i32::MAX.to_be_bytes());
    let error = read(&data, COLUMNS, 64).expect_err("a length past the end never completes");
    assert!(matches!(error, CopyError::Truncated { .. }), "{error}");
    data[21..25].copy_from_slice(&(-2i32).to_be_bytes());
    assert!(matches!(
        read(&data, COLUMNS, 64),
        Err(CopyError::FieldLength { .. })
    ));
}
