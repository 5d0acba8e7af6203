//! Incremental reader for the binary COPY stream: feed it network chunks of any
//! size; it hands out complete rows and keeps at most one partial row buffered.

use std::ops::Range;

use super::CopyError;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
const HEADER_FIXED_LEN: usize = 19;
/// Bits 16-31 of the header flags are critical: a reader must reject what it does not know.
const CRITICAL_FLAGS_MASK: u32 = 0xffff_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Rows,
    Done,
}

/// One decoded row: borrowed field slices, `None` for SQL NULL.
pub struct Row<'a> {
    buf: &'a [u8],
    fields: &'a [Option<Range<usize>>],
    /// 1-based row number within the stream, for error messages.
    pub number: u64,
}

impl<'a> Row<'a> {
    pub fn len(&self) -> usize {
        self.fields.len()
    }
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
    pub fn get(&self, index: usize) -> Option<&'a [u8]> {
        self.fields[index].clone().map(|r| &self.buf[r])
    }
}

/// Push parser over a binary COPY stream with a known number of columns.
pub struct CopyReader {
    state: State,
    expected_fields: usize,
    pending: Vec<u8>,
    fields: Vec<Option<Range<usize>>>,
    rows: u64,
}

impl CopyReader {
    pub fn new(expected_fields: usize) -> Self {
        CopyReader {
            state: State::Header,
            expected_fields,
            pending: Vec::new(),
            fields: Vec::with_capacity(expected_fields),
            rows: 0,
        }
    }

    /// Rows read so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Consumes a chunk, calling `on_row` for each row it completes.
    pub fn feed<E, F>(&mut self, chunk: &[u8], mut on_row: F) -> Result<(), E>
    where
        E: From<CopyError>,
        F: FnMut(&Row<'_>) -> Result<(), E>,
    {
        if self.pending.is_empty() {
            // Fast path: parse straight from the chunk, keep only the incomplete tail.
            let consumed = self.parse(chunk, &mut on_row)?;
            self.pending.extend_from_slice(&chunk[consumed..]);
        } else {
            self.pending.extend_from_slice(chunk);
            let pending = std::mem::take(&mut self.pending);
            let result = self.parse(&pending, &mut on_row);
            self.pending = pending;
            let consumed = result?;
            self.pending.drain(..consumed);
        }
        Ok(())
    }

    /// Call at the end of the stream: anything but a complete stream is an error.
    pub fn finish(&self) -> Result<(), CopyError> {
        match self.state {
            State::Done => Ok(()),
            State::Header => Err(CopyError::Truncated { context: "header" }),
            State::Rows if self.pending.is_empty() => Err(CopyError::Truncated {
                context: "no end-of-copy marker",
            }),
            State::Rows => Err(CopyError::Truncated {
                context: "inside a row",
            }),
        }
    }

    /// Parses as much of `buf` as is complete; returns the number of bytes consumed.
    fn parse<E, F>(&mut self, buf: &[u8], on_row: &mut F) -> Result<usize, E>
    where
        E: From<CopyError>,
        F: FnMut(&Row<'_>) -> Result<(), E>,
    {
        let mut pos = 0;
        loop {
            match self.state {
                State::Header => match parse_header(&buf[pos..])? {
                    Some(len) => {
                        pos += len;
                        self.state = State::Rows;
                    }
                    None => return Ok(pos),
                },
                State::Rows => {
                    let Some(count) = read_i16(buf, pos) else {
                        return Ok(pos);
                    };
                    if count == -1 {
                        self.state = State::Done;
                        pos += 2;
                        continue;
                    }
                    let row_number = self.rows + 1;
                    if count < 0 || count as usize != self.expected_fields {
                        return Err(CopyError::FieldCount {
                            row: row_number,
                            expected: self.expected_fields,
                            found: count,
                        }
                        .into());
                    }
                    match self.parse_fields(buf, pos + 2, row_number)? {
                        Some(end) => {
                            self.rows = row_number;
                            let row = Row {
                                buf,
                                fields: &self.fields,
                                number: row_number,
                            };
                            on_row(&row)?;
                            pos = end;
                        }
                        None => return Ok(pos),
                    }
                }
                State::Done => {
                    if pos < buf.len() {
                        return Err(CopyError::TrailingData.into());
                    }
                    return Ok(pos);
                }
            }
        }
    }

    /// Records the field ranges of the row starting at `pos`; `None` if the row is incomplete.
    fn parse_fields(&mut self, buf: &[u8], mut pos: usize, row: u64) -> Result<Option<usize>, CopyError> {
        self.fields.clear();
        for field in 0..self.expected_fields {
            let Some(length) = read_i32(buf, pos) else {
                return Ok(None);
            };
            pos += 4;
            if length == -1 {
                self.fields.push(None);
                continue;
            }
            if length < 0 {
                return Err(CopyError::FieldLength { row, field, length });
            }
            let end = pos + length as usize;
            if end > buf.len() {
                return Ok(None);
            }
            self.fields.push(Some(pos..end));
            pos = end;
        }
        Ok(Some(pos))
    }
}

/// Returns the header's total length once all of it is in `buf`.
fn parse_header(buf: &[u8]) -> Result<Option<usize>, CopyError> {
    let checked = buf.len().min(SIGNATURE.len());
    if buf[..checked] != SIGNATURE[..checked] {
        return Err(CopyError::BadSignature);
    }
    if buf.len() < HEADER_FIXED_LEN {
        return Ok(None);
    }
    let flags = u32::from_be_bytes([buf[11], buf[12], buf[13], buf[14]]);
    if flags & CRITICAL_FLAGS_MASK != 0 {
        return Err(CopyError::UnsupportedFlags(flags));
    }
    let extension_len = u32::from_be_bytes([buf[15], buf[16], buf[17], buf[18]]) as usize;
    let total = HEADER_FIXED_LEN + extension_len;
    Ok((buf.len() >= total).then_some(total))
}

fn read_i16(buf: &[u8], pos: usize) -> Option<i16> {
    buf.get(pos..pos + 2).map(|b| i16::from_be_bytes([b[0], b[1]]))
}

fn read_i32(buf: &[u8], pos: usize) -> Option<i32> {
    buf.get(pos..pos + 4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
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

    fn read_all(data: &[u8], fields: usize, chunk: usize) -> Result<Vec<Vec<Option<Vec<u8>>>>, CopyError> {
        let mut reader = CopyReader::new(fields);
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
    fn reads_rows_at_every_chunk_size() {
        let big = vec![7u8; 1000];
        let data = stream(&[vec![Some(b"abc"), None], vec![Some(b""), Some(&big)]]);
        for chunk in 1..=data.len() {
            let rows = read_all(&data, 2, chunk).unwrap();
            assert_eq!(rows.len(), 2, "chunk size {chunk}");
            assert_eq!(rows[0][0].as_deref(), Some(&b"abc"[..]));
            assert_eq!(rows[0][1], None);
            assert_eq!(rows[1][0].as_deref(), Some(&b""[..]));
            assert_eq!(rows[1][1].as_deref(), Some(&big[..]));
        }
    }

    #[test]
    fn rejects_negative_length_other_than_null() {
        let mut data = stream(&[vec![Some(b"x")]]);
        data[21..25].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(
            read_all(&data, 1, 64),
            Err(CopyError::FieldLength {
                row: 1,
                field: 0,
                length: -5
            })
        );
    }

    #[test]
    fn rejects_critical_flags_and_trailing_data() {
        let mut data = stream(&[]);
        data[11] = 0x01;
        assert!(matches!(
            read_all(&data, 1, 64),
            Err(CopyError::UnsupportedFlags(_))
        ));
        let mut data = stream(&[]);
        data.push(0);
        assert_eq!(read_all(&data, 1, 64), Err(CopyError::TrailingData));
    }
}
