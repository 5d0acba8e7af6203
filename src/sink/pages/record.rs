//! SQLite's record format (fileformat2 §2.1): varints, serial types, and the column
//! affinity an INSERT would apply, so a page-written row reads back exactly as one
//! SQLite inserted would.

use std::borrow::Cow;

use rusqlite::types::{Value, ValueRef};

/// A column's type affinity (SQLite datatype3 §3.1), from its declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

impl Affinity {
    /// The rules of datatype3 §3.1, applied in their order.
    pub fn of_declared_type(declared: &str) -> Affinity {
        let upper = declared.to_ascii_uppercase();
        if upper.contains("INT") {
            Affinity::Integer
        } else if ["CHAR", "CLOB", "TEXT"].iter().any(|t| upper.contains(t)) {
            Affinity::Text
        } else if upper.contains("BLOB") || upper.trim().is_empty() {
            Affinity::Blob
        } else if ["REAL", "FLOA", "DOUB"].iter().any(|t| upper.contains(t)) {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }

    fn sql_name(self) -> &'static str {
        match self {
            Affinity::Integer => "INTEGER",
            Affinity::Text => "TEXT",
            Affinity::Blob => "BLOB",
            Affinity::Real => "REAL",
            Affinity::Numeric => "NUMERIC",
        }
    }
}

/// One value as it is stored: after affinity.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(Cow<'a, [u8]>),
    Blob(Cow<'a, [u8]>),
}

/// Applies affinity where the rule is simple and exact; the rest (text that may read as a
/// number, a real turned into text) is left to SQLite itself through `Converter`.
pub enum Affined<'a> {
    Done(Field<'a>),
    AskSqlite,
}

pub fn apply_affinity(value: ValueRef<'_>, affinity: Affinity) -> Affined<'_> {
    use Affinity as A;
    Affined::Done(match value {
        ValueRef::Null => Field::Null,
        ValueRef::Blob(bytes) => Field::Blob(Cow::Borrowed(bytes)),
        // sqlite3_bind_double stores NaN as NULL.
        ValueRef::Real(real) if real.is_nan() => Field::Null,
        // Under REAL affinity SQLite too stores an integer as one (it reads back as a real).
        ValueRef::Integer(integer) => match affinity {
            A::Text => Field::Text(Cow::Owned(integer.to_string().into_bytes())),
            A::Integer | A::Numeric | A::Real | A::Blob => Field::Integer(integer),
        },
        ValueRef::Real(real) => match affinity {
            // Also REAL: SQLite stores an integral real as an integer to save space, so
            // -0.0 reads back as 0.0 from either writer.
            A::Integer | A::Numeric | A::Real => match integral(real) {
                Some(integer) => Field::Integer(integer),
                None => Field::Real(real),
            },
            A::Text => return Affined::AskSqlite,
            A::Blob => Field::Real(real),
        },
        ValueRef::Text(text) => match affinity {
            A::Text | A::Blob => Field::Text(Cow::Borrowed(text)),
            // Dates, uuids, JSON, arrays: text that cannot be a number stays text.
            _ if !may_be_number(text) => Field::Text(Cow::Borrowed(text)),
            _ => return Affined::AskSqlite,
        },
    })
}

/// Whether SQLite's numeric affinity could turn `text` into a number: a superset of what
/// sqlite3AtoF accepts whole (spaces, a sign, digits and points, an exponent, spaces), so
/// a `false` is exact and a `true` is left to SQLite. Asking SQLite costs three statements,
/// too many for every date or uuid of a NUMERIC column.
fn may_be_number(text: &[u8]) -> bool {
    let is_space = |byte: &u8| matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let start = text.iter().position(|b| !is_space(b)).unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |last| last + 1);
    let mut rest = without_sign(&text[start..end]);
    let mantissa = rest
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .count();
    let has_digit = rest[..mantissa].iter().any(u8::is_ascii_digit);
    rest = &rest[mantissa..];
    if let Some(exponent) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let exponent = without_sign(exponent);
        rest = &exponent[exponent.iter().take_while(|b| b.is_ascii_digit()).count()..];
    }
    has_digit && rest.is_empty()
}

fn without_sign(text: &[u8]) -> &[u8] {
    text.strip_prefix(b"+")
        .or_else(|| text.strip_prefix(b"-"))
        .unwrap_or(text)
}

/// sqlite3VdbeIntegerAffinity: a real that is exactly an integer strictly inside i64's
/// range is stored as that integer.
fn integral(real: f64) -> Option<i64> {
    // `as` saturates, like SQLite's doubleToInt64 clamps.
    let integer = real as i64;
    (real == integer as f64 && integer > i64::MIN && integer < i64::MAX).then_some(integer)
}

/// Lets SQLite apply the affinity rules that are not worth re-implementing (text to
/// number parsing, real to text formatting), on rare values, in a private in-memory
/// database.
pub struct Converter {
    conn: rusqlite::Connection,
}

impl Converter {
    pub fn new() -> rusqlite::Result<Self> {
        let conn = rusqlite::Connection::open_in_memory()?;
        conn.execute_batch(
            "CREATE TABLE v (integer INTEGER, text TEXT, blob BLOB, real REAL, numeric NUMERIC)",
        )?;
        Ok(Converter { conn })
    }

    pub fn convert(&self, value: ValueRef<'_>, affinity: Affinity) -> rusqlite::Result<Field<'static>> {
        let column = affinity.sql_name();
        self.conn
            .prepare_cached(&format!("INSERT INTO v ({column}) VALUES (?1)"))?
            .execute([rusqlite::types::ToSqlOutput::Borrowed(value)])?;
        let stored: Value = self
            .conn
            .prepare_cached(&format!("SELECT {column} FROM v"))?
            .query_row([], |row| row.get(0))?;
        self.conn.prepare_cached("DELETE FROM v")?.execute([])?;
        Ok(match stored {
            Value::Null => Field::Null,
            Value::Integer(integer) => Field::Integer(integer),
            Value::Real(real) => Field::Real(real),
            Value::Text(text) => Field::Text(Cow::Owned(text.into_bytes())),
            Value::Blob(blob) => Field::Blob(Cow::Owned(blob)),
        })
    }
}

/// Appends `value` as a SQLite varint (big-endian 7-bit groups; a 9th byte of 8 bits).
#[inline(always)]
pub fn put_varint(out: &mut Vec<u8>, value: u64) {
    // Serial types of short values, header sizes and small keys: one byte, inlined.
    if value < 0x80 {
        out.push(value as u8);
    } else {
        put_long_varint(out, value);
    }
}

#[inline(never)]
fn put_long_varint(out: &mut Vec<u8>, value: u64) {
    if value >> 56 != 0 {
        let mut bytes = [0u8; 9];
        bytes[8] = value as u8;
        let mut rest = value >> 8;
        for byte in bytes[..8].iter_mut().rev() {
            *byte = (rest as u8 & 0x7f) | 0x80;
            rest >>= 7;
        }
        out.extend_from_slice(&bytes);
        return;
    }
    // Groups from the last one back; every one but the last has the continuation bit.
    let mut groups = [0u8; 8];
    let mut start = groups.len() - 1;
    groups[start] = (value & 0x7f) as u8;
    let mut rest = value >> 7;
    while rest != 0 {
        start -= 1;
        groups[start] = (rest & 0x7f) as u8 | 0x80;
        rest >>= 7;
    }
    out.extend_from_slice(&groups[start..]);
}

pub fn varint_len(value: u64) -> usize {
    if value >> 56 != 0 {
        return 9;
    }
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Reads a varint; `None` when `bytes` ends inside it.
pub fn get_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().enumerate().take(9) {
        if index == 8 {
            return Some(((value << 8) | *byte as u64, 9));
        }
        value = (value << 7) | (*byte & 0x7f) as u64;
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

/// The serial type of an integer and its byte width (schema format 4: 0 and 1 take none).
fn integer_serial(value: i64) -> (u64, usize) {
    match value {
        0 => (8, 0),
        1 => (9, 0),
        -128..=127 => (1, 1),
        -32_768..=32_767 => (2, 2),
        -8_388_608..=8_388_607 => (3, 3),
        -2_147_483_648..=2_147_483_647 => (4, 4),
        -140_737_488_355_328..=140_737_488_355_327 => (5, 6),
        _ => (6, 8),
    }
}

/// Bytes of the record's body the field takes.
fn field_len(field: &Field<'_>) -> usize {
    match field {
        Field::Null => 0,
        Field::Integer(value) => integer_serial(*value).1,
        Field::Real(_) => 8,
        Field::Text(bytes) | Field::Blob(bytes) => bytes.len(),
    }
}

fn serial_type(field: &Field<'_>) -> u64 {
    match field {
        Field::Null => 0,
        Field::Integer(value) => integer_serial(*value).0,
        Field::Real(_) => 7,
        Field::Text(text) => text.len() as u64 * 2 + 13,
        Field::Blob(blob) => blob.len() as u64 * 2 + 12,
    }
}

/// Appends the record of `fields` (header, then body) to `out`.
pub fn encode_record(fields: &[Field<'_>], out: &mut Vec<u8>) {
    let types_len: usize = fields.iter().map(|f| varint_len(serial_type(f))).sum();
    // The header size counts its own varint.
    let mut size_len = 1;
    while varint_len((types_len + size_len) as u64) > size_len {
        size_len += 1;
    }
    let header_len = types_len + size_len;
    let body_len: usize = fields.iter().map(field_len).sum();
    out.reserve(header_len + body_len);
    put_varint(out, header_len as u64);
    for field in fields {
        put_varint(out, serial_type(field));
    }
    for field in fields {
        match field {
            Field::Null => {}
            Field::Integer(value) => {
                let (_, width) = integer_serial(*value);
                out.extend_from_slice(&value.to_be_bytes()[8 - width..]);
            }
            Field::Real(value) => out.extend_from_slice(&value.to_bits().to_be_bytes()),
            Field::Text(bytes) | Field::Blob(bytes) => out.extend_from_slice(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        let mut values = vec![
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::MAX,
            i64::MIN as u64,
            (-1i64) as u64,
        ];
        for bits in 1..64 {
            values.push((1u64 << bits) - 1);
            values.push(1u64 << bits);
        }
        for value in values {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
            assert_eq!(get_varint(&out), Some((value, out.len())), "{value}");
            assert_eq!(get_varint(&out[..out.len() - 1]), None, "{value} cut short");
        }
    }

    #[test]
    fn text_that_cannot_be_a_number_is_not_asked_about() {
        for text in [
            "2024-01-01",
            "12:30:00",
            "{1,2}",
            "a1",
            "",
            " ",
            "1-2",
            "e5",
            ".",
            "+",
            "1e5x",
        ] {
            assert!(!may_be_number(text.as_bytes()), "{text:?}");
        }
        for text in ["1", " -1 ", "+.5", "1.", "1e5", "1E-5", "\t42\n", "1.2.3"] {
            assert!(may_be_number(text.as_bytes()), "{text:?}");
        }
        // A `false` is final, so it must agree with SQLite itself on every one of these.
        let converter = Converter::new().unwrap();
        for text in ["2024-01-01", "12:30:00", "0x1F", "1e", "1e+", " 7 ", "-0", "١٢"] {
            let stored = converter
                .convert(ValueRef::Text(text.as_bytes()), Affinity::Numeric)
                .unwrap();
            let stays_text = matches!(stored, Field::Text(_));
            if !may_be_number(text.as_bytes()) {
                assert!(stays_text, "{text:?} became {stored:?} in SQLite");
            }
        }
    }

    proptest::proptest! {
        // Texts of the characters a number is made of, in any order: a `false` must still
        // mean SQLite keeps the text.
        #[test]
        fn a_text_not_taken_for_a_number_stays_text_in_sqlite(text in r"[ \t\n\x0b\x0c\r+.eE0-9x\x00é-]{0,8}") {
            let converter = Converter::new().unwrap();
            let stored = converter
                .convert(ValueRef::Text(text.as_bytes()), Affinity::Numeric)
                .unwrap();
            if !may_be_number(text.as_bytes()) {
                proptest::prop_assert!(matches!(stored, Field::Text(_)), "{:?} became {:?} in SQLite", text, stored);
            }
        }
    }

    #[test]
    fn affinity_follows_the_declared_type_rules() {
        for (declared, affinity) in [
            ("INTEGER", Affinity::Integer),
            ("bigint", Affinity::Integer),
            ("VARCHAR(10)", Affinity::Text),
            ("", Affinity::Blob),
            ("DOUBLE PRECISION", Affinity::Real),
            ("NUMERIC", Affinity::Numeric),
            ("DATETIME", Affinity::Numeric),
            ("FLOATING POINT", Affinity::Integer),
        ] {
            assert_eq!(Affinity::of_declared_type(declared), affinity, "{declared}");
        }
    }

    #[test]
    fn header_size_counts_its_own_varint() {
        // 126 one-byte serial types: the header is exactly 127 bytes, one varint byte.
        let fields = vec![Field::Null; 126];
        let mut out = Vec::new();
        encode_record(&fields, &mut out);
        assert_eq!(out[0], 127);
        // 127 of them: 128 bytes would need a 2-byte size varint, so the header is 129.
        let fields = vec![Field::Null; 127];
        let mut out = Vec::new();
        encode_record(&fields, &mut out);
        assert_eq!(get_varint(&out), Some((129, 2)));
        assert_eq!(out.len(), 129);
    }
}
