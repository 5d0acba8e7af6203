//! The closed set of column codecs: how each PostgreSQL type travels in binary COPY
//! and which SQLite value it becomes. DESIGN.md §5 is the table this file implements.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::batch::RowBatch;
use crate::copy::{types, CopyError};

pub mod decimal;

/// How one column is selected, decoded and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Scalar(Scalar),
    /// An array whose elements have a native codec: JSON text when one-dimensional
    /// with lower bound 1, PostgreSQL's array literal otherwise.
    Array(Scalar),
    /// numeric and money as numbers (format 3, `convert::decimal`), given back with
    /// `scale` fraction digits when the column has a fixed scale.
    Decimal {
        scale: Option<u16>,
    },
}

/// The types decoded natively, as columns or as array elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scalar {
    Int2,
    Int4,
    Int8,
    Oid,
    Bool,
    Float4,
    Float8,
    /// numeric as its exact text: array elements, and columns of format 1 and 2 mirrors
    /// (money too, selected as `::numeric`). Columns are [`Codec::Decimal`] since format 3.
    Numeric,
    /// text-like types whose binary form is their UTF-8 text (text, varchar, char(n), name,
    /// enums), and every type selected as `::text`.
    Text,
    Bytea,
    Uuid,
    Json,
    Jsonb,
    Date,
    Timestamp,
    Timestamptz,
    Time,
    Timetz,
}

/// How the column is written in the COPY's select list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectAs {
    Column,
    CastToNumeric,
    TextOutput,
    /// inet through its output function: `inet::text` adds `/32` to a host address.
    InetOutput,
}

/// Well-known type OIDs from pg_type.dat; stable across PostgreSQL versions.
pub mod oids {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const MONEY: u32 = 790;
    pub const INET: u32 = 869;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const TIMETZ: u32 = 1266;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// What the catalog says about a column's type, with domains resolved to their base.
#[derive(Debug, Clone, Copy)]
pub struct TypeInfo {
    pub base_oid: u32,
    /// The column's type modifier, or the innermost domain's that has one; -1 for none.
    pub typmod: i32,
    /// pg_type.typtype of the base type ('b' base, 'e' enum, 'c' composite, 'r' range, ...).
    pub typtype: u8,
    /// For arrays: the element type, domains resolved, with its own typtype.
    pub element: Option<(u32, u8)>,
}

/// The codec and select expression for a column of the given type; `money_scale` is
/// the fraction digits of the server's money (`scale(0::money::numeric)`).
pub fn choose_codec(info: TypeInfo, money_scale: u16) -> (Codec, SelectAs) {
    if let Some((element_oid, element_typtype)) = info.element {
        return match scalar_codec(element_oid, element_typtype) {
            Some(element) => (Codec::Array(element), SelectAs::Column),
            None => (Codec::Scalar(Scalar::Text), SelectAs::TextOutput),
        };
    }
    if info.base_oid == oids::MONEY {
        let scale = Some(money_scale);
        return (Codec::Decimal { scale }, SelectAs::CastToNumeric);
    }
    if info.base_oid == oids::NUMERIC {
        let scale = numeric_scale(info.typmod);
        return (Codec::Decimal { scale }, SelectAs::Column);
    }
    if info.base_oid == oids::INET {
        return (Codec::Scalar(Scalar::Text), SelectAs::InetOutput);
    }
    match scalar_codec(info.base_oid, info.typtype) {
        Some(scalar) => (Codec::Scalar(scalar), SelectAs::Column),
        None => (Codec::Scalar(Scalar::Text), SelectAs::TextOutput),
    }
}

/// The fixed display scale of `numeric(p,s)` from its type modifier; `None` when the
/// numeric is unconstrained. A negative scale (`numeric(5,-2)`) rounds to tens and shows
/// no fraction digits.
fn numeric_scale(typmod: i32) -> Option<u16> {
    // PostgreSQL 15: typmod = (precision << 16 | scale as 11-bit two's complement) + VARHDRSZ.
    const VARHDRSZ: i32 = 4;
    if typmod < VARHDRSZ {
        return None;
    }
    let scale = (((typmod - VARHDRSZ) & 0x7ff) ^ 1024) - 1024;
    Some(u16::try_from(scale.max(0)).unwrap_or(0))
}

fn scalar_codec(oid: u32, typtype: u8) -> Option<Scalar> {
    if typtype == b'e' {
        // An enum's binary form is its label.
        return Some(Scalar::Text);
    }
    Some(match oid {
        oids::INT2 => Scalar::Int2,
        oids::INT4 => Scalar::Int4,
        oids::INT8 => Scalar::Int8,
        oids::OID => Scalar::Oid,
        oids::BOOL => Scalar::Bool,
        oids::FLOAT4 => Scalar::Float4,
        oids::FLOAT8 => Scalar::Float8,
        oids::NUMERIC => Scalar::Numeric,
        oids::TEXT | oids::VARCHAR | oids::BPCHAR | oids::NAME => Scalar::Text,
        oids::BYTEA => Scalar::Bytea,
        oids::UUID => Scalar::Uuid,
        oids::JSON => Scalar::Json,
        oids::JSONB => Scalar::Jsonb,
        oids::DATE => Scalar::Date,
        oids::TIMESTAMP => Scalar::Timestamp,
        oids::TIMESTAMPTZ => Scalar::Timestamptz,
        oids::TIME => Scalar::Time,
        oids::TIMETZ => Scalar::Timetz,
        _ => return None,
    })
}

impl Codec {
    /// The declared SQLite column type (an affinity name), so any tool reads the file naturally.
    pub fn sqlite_type(self) -> &'static str {
        match self {
            Codec::Scalar(Scalar::Int2 | Scalar::Int4 | Scalar::Int8 | Scalar::Oid | Scalar::Bool) => {
                "INTEGER"
            }
            Codec::Scalar(Scalar::Float4 | Scalar::Float8) => "REAL",
            Codec::Decimal { .. } => "NUMERIC",
            Codec::Scalar(Scalar::Bytea) => "BLOB",
            _ => "TEXT",
        }
    }

    pub fn is_integer(self) -> bool {
        self.sqlite_type() == "INTEGER"
    }

    /// The name recorded in the mirror's metadata (`int4`, `array:numeric`, `decimal(2)`).
    pub fn name(self) -> String {
        match self {
            Codec::Scalar(scalar) => snake_name(&scalar),
            Codec::Array(element) => format!("array:{}", snake_name(&element)),
            Codec::Decimal { scale: None } => DECIMAL.to_owned(),
            Codec::Decimal { scale: Some(scale) } => format!("{DECIMAL}({scale})"),
        }
    }

    /// Decodes one non-NULL binary value and appends its SQLite form to the batch.
    pub fn decode_into(self, bytes: &[u8], batch: &mut RowBatch) -> Result<(), CopyError> {
        match self {
            Codec::Scalar(scalar) => scalar.decode_into(bytes, batch),
            Codec::Array(element) => batch.push_text_with(|out| write_array(out, element, bytes)),
            Codec::Decimal { scale } => push_decimal(batch, bytes, scale),
        }
    }
}

/// The codec name of [`Codec::Decimal`].
const DECIMAL: &str = "decimal";

/// A numeric as its number, its exact text kept in the batch only when the number does
/// not give it back (NaN is its text).
fn push_decimal(batch: &mut RowBatch, bytes: &[u8], scale: Option<u16>) -> Result<(), CopyError> {
    push_decimal_text(batch, scale, |out| types::write_numeric(out, bytes))
}

/// [`push_decimal`] for a number whose exact text `write` produces.
fn push_decimal_text(
    batch: &mut RowBatch,
    scale: Option<u16>,
    write: impl FnOnce(&mut String) -> Result<(), CopyError>,
) -> Result<(), CopyError> {
    let start = batch.text.len();
    if let Err(e) = write(&mut batch.text) {
        batch.text.truncate(start);
        return Err(e);
    }
    let exact = start..batch.text.len();
    let (stored, needs_exact) = decimal::store(&batch.text[exact.clone()], scale);
    if needs_exact {
        batch.note_exact_text(exact.clone());
    } else if stored != decimal::StoredDecimal::NaN {
        batch.text.truncate(start);
    }
    match stored {
        decimal::StoredDecimal::Integer(value) => batch.push_integer(value),
        decimal::StoredDecimal::Real(value) => batch.push_real(value),
        decimal::StoredDecimal::NaN if needs_exact => batch.push_str("NaN"),
        decimal::StoredDecimal::NaN => batch.push_text_range(exact),
    }
    Ok(())
}

/// Decodes one non-NULL value in its type's binary send form, as logical decoding's binary
/// mode sends it, into exactly what export stores for it: where export selects the column
/// as it is, the COPY bytes are these bytes; money, which export reads as `::numeric`,
/// arrives as its int8 count of the smallest unit. Columns export reads as text have no
/// binary form pgmirror decodes, and are an error.
pub fn decode_sent_into(
    codec: Codec,
    select_as: SelectAs,
    bytes: &[u8],
    batch: &mut RowBatch,
) -> Result<(), CopyError> {
    match (select_as, codec) {
        (SelectAs::Column, _) => codec.decode_into(bytes, batch),
        (SelectAs::CastToNumeric, Codec::Decimal { scale }) => {
            let units = types::int8(bytes)?;
            push_decimal_text(batch, scale, |out| {
                write_scaled_integer(out, units, scale.unwrap_or(0));
                Ok(())
            })
        }
        _ => Err(CopyError::malformed(
            "streamed",
            "export reads this column as text, which logical decoding's binary mode does not send",
        )),
    }
}

/// `units / 10^scale` in plain notation with exactly `scale` fraction digits (money's numeric).
fn write_scaled_integer(out: &mut String, units: i64, scale: u16) {
    let digits = units.unsigned_abs().to_string();
    let scale = scale as usize;
    if units < 0 {
        out.push('-');
    }
    if digits.len() <= scale {
        out.push('0');
        if scale > 0 {
            out.push('.');
            out.extend(std::iter::repeat_n('0', scale - digits.len()));
            out.push_str(&digits);
        }
        return;
    }
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    out.push_str(whole);
    if scale > 0 {
        out.push('.');
        out.push_str(fraction);
    }
}

impl Scalar {
    fn decode_into(self, bytes: &[u8], batch: &mut RowBatch) -> Result<(), CopyError> {
        match self {
            Scalar::Int2 => batch.push_integer(types::int2(bytes)?),
            Scalar::Int4 => batch.push_integer(types::int4(bytes)?),
            Scalar::Int8 => batch.push_integer(types::int8(bytes)?),
            Scalar::Oid => batch.push_integer(types::oid(bytes)?),
            Scalar::Bool => batch.push_integer(types::bool(bytes)? as i64),
            Scalar::Float4 => push_float(batch, decimal::float4_stored(types::float4(bytes)? as f32)),
            Scalar::Float8 => push_float(batch, types::float8(bytes)?),
            Scalar::Numeric => batch.push_text_with(|out| types::write_numeric(out, bytes))?,
            Scalar::Text => batch.push_str(types::utf8(bytes, "text")?),
            Scalar::Json => batch.push_str(types::utf8(bytes, "json")?),
            Scalar::Jsonb => batch.push_str(types::jsonb_text(bytes)?),
            Scalar::Bytea => batch.push_blob(bytes),
            Scalar::Uuid => batch.push_text_with(|out| types::write_uuid(out, bytes))?,
            Scalar::Date => batch.push_text_with(|out| types::write_date(out, bytes))?,
            Scalar::Timestamp => batch.push_text_with(|out| types::write_timestamp(out, bytes, false))?,
            Scalar::Timestamptz => batch.push_text_with(|out| types::write_timestamp(out, bytes, true))?,
            Scalar::Time => batch.push_text_with(|out| types::write_time(out, bytes))?,
            Scalar::Timetz => batch.push_text_with(|out| types::write_timetz(out, bytes))?,
        }
        Ok(())
    }
}

fn snake_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::from("unknown"),
    }
}

/// SQLite turns a bound NaN into NULL, so NaN is stored as PostgreSQL's text, which sorts
/// after every number as PostgreSQL sorts it; ±Infinity is SQLite's ±Inf. A REAL column
/// keeps -0 as 0, so PostgreSQL's `-0` is kept as exact text.
fn push_float(batch: &mut RowBatch, value: f64) {
    if value.is_nan() {
        batch.push_str("NaN");
        return;
    }
    if value == 0.0 && value.is_sign_negative() {
        let start = batch.text.len();
        batch.text.push_str("-0");
        batch.note_exact_text(start..batch.text.len());
    }
    batch.push_real(value);
}

impl Codec {
    /// Whether values of this codec may have an exact text in `_pgmirror_exact_text`.
    pub fn keeps_exact_text(self) -> bool {
        matches!(
            self,
            Codec::Decimal { .. } | Codec::Scalar(Scalar::Float4 | Scalar::Float8)
        )
    }
}

/// Whether a cell still holds the number its kept exact text was stored as: an edit of the
/// data table after export leaves the two disagreeing, and the exact text is then stale.
pub fn exact_text_agrees(codec: Codec, exact: &str, cell: rusqlite::types::ValueRef<'_>) -> bool {
    use rusqlite::types::ValueRef;
    match codec {
        Codec::Decimal { .. } => decimal::cell_agrees(exact, cell),
        Codec::Scalar(Scalar::Float4 | Scalar::Float8) => match (exact.parse::<f64>(), cell) {
            (Ok(value), ValueRef::Real(stored)) => value == stored,
            (Ok(value), ValueRef::Integer(stored)) => value == stored as f64,
            _ => false,
        },
        _ => false,
    }
}

/// An array element in the form both renderings start from.
enum ElementValue<'a> {
    Null,
    /// A number written bare in both JSON and array literals.
    Number(String),
    Bool(bool),
    Str(std::borrow::Cow<'a, str>),
}

fn element_value(element: Scalar, bytes: Option<&[u8]>) -> Result<ElementValue<'_>, CopyError> {
    let Some(bytes) = bytes else {
        return Ok(ElementValue::Null);
    };
    let number = |value: i64| ElementValue::Number(value.to_string());
    let float = |value: f64, single: bool| match types::non_finite_float_text(value) {
        Some(text) => ElementValue::Str(text.into()),
        None => {
            let mut text = String::new();
            types::write_pg_float(&mut text, value, single);
            ElementValue::Number(text)
        }
    };
    let formatted =
        |write: &dyn Fn(&mut String) -> Result<(), CopyError>| -> Result<ElementValue<'static>, CopyError> {
            let mut out = String::new();
            write(&mut out)?;
            Ok(ElementValue::Str(out.into()))
        };
    Ok(match element {
        Scalar::Int2 => number(types::int2(bytes)?),
        Scalar::Int4 => number(types::int4(bytes)?),
        Scalar::Int8 => number(types::int8(bytes)?),
        Scalar::Oid => number(types::oid(bytes)?),
        Scalar::Bool => ElementValue::Bool(types::bool(bytes)?),
        Scalar::Float4 => float(types::float4(bytes)?, true),
        Scalar::Float8 => float(types::float8(bytes)?, false),
        Scalar::Numeric => formatted(&|out| types::write_numeric(out, bytes))?,
        Scalar::Text => ElementValue::Str(types::utf8(bytes, "text")?.into()),
        Scalar::Json => ElementValue::Str(types::utf8(bytes, "json")?.into()),
        Scalar::Jsonb => ElementValue::Str(types::jsonb_text(bytes)?.into()),
        Scalar::Bytea => formatted(&|out| {
            types::write_bytea_hex(out, bytes);
            Ok(())
        })?,
        Scalar::Uuid => formatted(&|out| types::write_uuid(out, bytes))?,
        Scalar::Date => formatted(&|out| types::write_date(out, bytes))?,
        Scalar::Timestamp => formatted(&|out| types::write_timestamp(out, bytes, false))?,
        Scalar::Timestamptz => formatted(&|out| types::write_timestamp(out, bytes, true))?,
        Scalar::Time => formatted(&|out| types::write_time(out, bytes))?,
        Scalar::Timetz => formatted(&|out| types::write_timetz(out, bytes))?,
    })
}

/// One-dimensional arrays with lower bound 1 (and empty arrays) become a JSON array;
/// any other shape becomes PostgreSQL's array literal, which never parses as JSON.
fn write_array(out: &mut String, element: Scalar, bytes: &[u8]) -> Result<(), CopyError> {
    let array = types::parse_array(bytes)?;
    if let ([(_, 1)], Scalar::Int2 | Scalar::Int4 | Scalar::Int8 | Scalar::Oid) =
        (array.dims.as_slice(), element)
    {
        // The common integer array, written straight into the output: no value per element.
        out.push('[');
        for (i, value) in array.elements.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match value {
                None => out.push_str("null"),
                Some(bytes) => {
                    let number = match element {
                        Scalar::Int2 => types::int2(bytes)?,
                        Scalar::Int4 => types::int4(bytes)?,
                        Scalar::Oid => types::oid(bytes)?,
                        _ => types::int8(bytes)?,
                    };
                    let _ = write!(out, "{number}");
                }
            }
        }
        out.push(']');
        return Ok(());
    }
    let scalars = array
        .elements
        .iter()
        .map(|value| element_value(element, *value))
        .collect::<Result<Vec<_>, _>>()?;
    match array.dims.as_slice() {
        [] => out.push_str("[]"),
        [(_, 1)] => write_json_array(out, &scalars),
        dims => write_array_literal(out, dims, &scalars),
    }
    Ok(())
}

fn write_json_array(out: &mut String, scalars: &[ElementValue<'_>]) {
    out.push('[');
    for (i, scalar) in scalars.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match scalar {
            ElementValue::Null => out.push_str("null"),
            ElementValue::Number(text) => out.push_str(text),
            ElementValue::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            ElementValue::Str(text) => out.push_str(&serde_json::Value::from(text.as_ref()).to_string()),
        }
    }
    out.push(']');
}

fn write_array_literal(out: &mut String, dims: &[(i32, i32)], scalars: &[ElementValue<'_>]) {
    if dims.iter().any(|&(_, lower)| lower != 1) {
        for &(length, lower) in dims {
            let _ = write!(out, "[{}:{}]", lower, lower as i64 + length as i64 - 1);
        }
        out.push('=');
    }
    let mut next = scalars.iter();
    write_literal_level(out, dims, &mut next);
}

fn write_literal_level<'s, 'a: 's>(
    out: &mut String,
    dims: &[(i32, i32)],
    next: &mut impl Iterator<Item = &'s ElementValue<'a>>,
) {
    let Some(((length, _), inner)) = dims.split_first() else {
        return;
    };
    out.push('{');
    for i in 0..*length {
        if i > 0 {
            out.push(',');
        }
        if inner.is_empty() {
            match next.next() {
                Some(ElementValue::Null) | None => out.push_str("NULL"),
                Some(ElementValue::Number(text)) => out.push_str(text),
                Some(ElementValue::Bool(value)) => out.push(if *value { 't' } else { 'f' }),
                Some(ElementValue::Str(text)) if !needs_quotes(text) => out.push_str(text),
                Some(ElementValue::Str(text)) => {
                    out.push('"');
                    for c in text.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                }
            }
        } else {
            write_literal_level(out, inner, next);
        }
    }
    out.push('}');
}

/// `fmt::Write` into the byte buffer a COPY or CSV field is built in.
struct ByteSink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteSink<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// Whether PostgreSQL's array output quotes this element: when it is empty, reads as NULL,
/// or holds a quote, backslash, brace, the delimiter or white space.
fn needs_quotes(text: &str) -> bool {
    text.is_empty()
        || text.eq_ignore_ascii_case("null")
        || text.bytes().any(|b| {
            matches!(
                b,
                b'"' | b'\\' | b'{' | b'}' | b',' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c
            )
        })
}

/// A time zone suffix as PostgreSQL prints it: the mirror keeps `+HH:MM` (SQLite's date
/// functions need the minutes), PostgreSQL leaves out `:00` (`+00`, `+05:30`).
fn pg_zone_text(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    // A BC timestamptz ends in its era: `0001-01-01 00:00:00+00:00 BC`.
    if let Some(before_era) = text.strip_suffix(b" BC") {
        let mut printed = pg_zone_text(before_era).into_owned();
        printed.extend_from_slice(b" BC");
        return printed.into();
    }
    std::borrow::Cow::Borrowed(match text {
        // An offset with seconds (`-00:30:15`) has no sign six bytes from the end.
        [.., b'+' | b'-', h1, h2, b':', b'0', b'0'] if h1.is_ascii_digit() && h2.is_ascii_digit() => {
            &text[..text.len() - 3]
        }
        _ => text,
    })
}

/// money as PostgreSQL prints it in the C and en_US locales (`-$1,234.56`), from the
/// numeric text the mirror holds; `None` for a locale that prints it otherwise, or text
/// that is not a number with at most two decimals.
pub fn pg_money_text(numeric: &str, lc_monetary: &str) -> Option<String> {
    let c_like = lc_monetary == "C"
        || lc_monetary.starts_with("C.")
        || lc_monetary == "POSIX"
        || lc_monetary.starts_with("en_US");
    if !c_like {
        return None;
    }
    let (negative, unsigned) = match numeric.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, numeric),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) || fraction.len() > 2 {
        return None;
    }
    let mut text = String::with_capacity(numeric.len() + 8);
    if negative {
        text.push('-');
    }
    text.push('$');
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            text.push(',');
        }
        text.push(digit);
    }
    text.push('.');
    text.push_str(fraction);
    text.extend(std::iter::repeat_n('0', 2 - fraction.len()));
    Some(text)
}

impl Codec {
    /// The inverse of [`Codec::name`], for codecs recorded in a mirror.
    pub fn from_name(name: &str) -> Option<Codec> {
        if name == DECIMAL {
            return Some(Codec::Decimal { scale: None });
        }
        if let Some(scale) = name
            .strip_prefix(DECIMAL)
            .and_then(|rest| rest.strip_prefix('('))
            .and_then(|rest| rest.strip_suffix(')'))
        {
            return scale
                .parse()
                .ok()
                .map(|scale| Codec::Decimal { scale: Some(scale) });
        }
        let scalar =
            |text: &str| serde_json::from_value::<Scalar>(serde_json::Value::String(text.to_owned())).ok();
        match name.strip_prefix("array:") {
            Some(element) => scalar(element).map(Codec::Array),
            None => scalar(name).map(Codec::Scalar),
        }
    }
}

/// Appends a mirror value as a field of PostgreSQL's text COPY format (tab-separated,
/// `\N` for NULL, backslash escapes), in the text form the column's type reads back.
pub fn write_copy_text(codec: Codec, value: rusqlite::types::ValueRef<'_>, out: &mut Vec<u8>) {
    if let rusqlite::types::ValueRef::Null = value {
        out.extend_from_slice(b"\\N");
        return;
    }
    // Written in place; only a value that needs escaping is copied once more.
    let start = out.len();
    write_pg_text(codec, value, out);
    if out[start..]
        .iter()
        .any(|b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t'))
    {
        let raw = out.split_off(start);
        escape_copy_text(&raw, out);
    }
}

/// Appends a non-NULL mirror value in PostgreSQL's text input form for the column's type
/// (unescaped): booleans `t`/`f`, bytea `\x..`, JSON arrays as array literals.
pub fn write_pg_text(codec: Codec, value: rusqlite::types::ValueRef<'_>, out: &mut Vec<u8>) {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => {}
        ValueRef::Integer(i) if codec == Codec::Scalar(Scalar::Bool) => {
            out.push(if i != 0 { b't' } else { b'f' })
        }
        ValueRef::Integer(_) | ValueRef::Real(_) if matches!(codec, Codec::Decimal { .. }) => {
            if let (Codec::Decimal { scale }, Some(stored)) = (codec, decimal::from_cell(value)) {
                decimal::write_text(&mut ByteSink(out), stored, scale);
            }
        }
        ValueRef::Integer(i) => {
            let _ = std::io::Write::write_fmt(out, format_args!("{i}"));
        }
        // Written straight into `out`: this runs for every value a restore sends.
        ValueRef::Real(f) => {
            types::write_pg_float(&mut ByteSink(out), f, codec == Codec::Scalar(Scalar::Float4))
        }
        ValueRef::Blob(bytes) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\x");
            for byte in bytes {
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0x0f)]);
            }
        }
        ValueRef::Text(text) => match codec {
            // NaN, a kept exact text, or a format 1 or 2 mirror's numeric text.
            Codec::Decimal { .. } => out.extend_from_slice(text),
            Codec::Array(element) => match json_array_to_literal(text, element) {
                Some(literal) => out.extend_from_slice(literal.as_bytes()),
                None => out.extend_from_slice(text),
            },
            Codec::Scalar(Scalar::Timetz | Scalar::Timestamptz) => out.extend_from_slice(&pg_zone_text(text)),
            _ => out.extend_from_slice(text),
        },
    }
}

fn escape_copy_text(text: &[u8], out: &mut Vec<u8>) {
    for &byte in text {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(byte),
        }
    }
}

/// A mirror's JSON array as PostgreSQL's array literal; `None` when the text is already a
/// literal (multi-dimensional, or lower bounds other than 1).
fn json_array_to_literal(text: &[u8], scalar: Scalar) -> Option<String> {
    if text.first() != Some(&b'[') {
        return None;
    }
    let serde_json::Value::Array(elements) = serde_json::from_slice(text).ok()? else {
        return None;
    };
    let values: Vec<ElementValue<'_>> = elements
        .iter()
        .map(|element| match element {
            serde_json::Value::Null => ElementValue::Null,
            serde_json::Value::Bool(b) => ElementValue::Bool(*b),
            // serde_json prints floats its own way (`1e100`): as PostgreSQL does instead.
            serde_json::Value::Number(n) => match (scalar, n.as_f64()) {
                (Scalar::Float4 | Scalar::Float8, Some(value)) => {
                    let mut text = String::new();
                    types::write_pg_float(&mut text, value, scalar == Scalar::Float4);
                    ElementValue::Number(text)
                }
                _ => ElementValue::Number(n.to_string()),
            },
            serde_json::Value::String(s) => match scalar {
                Scalar::Timetz | Scalar::Timestamptz => ElementValue::Str(
                    String::from_utf8_lossy(&pg_zone_text(s.as_bytes()))
                        .into_owned()
                        .into(),
                ),
                _ => ElementValue::Str(s.as_str().into()),
            },
            other => ElementValue::Str(other.to_string().into()),
        })
        .collect();
    let mut literal = String::new();
    write_array_literal(&mut literal, &[(values.len() as i32, 1)], &values);
    Some(literal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::types::ValueRef;

    fn field(codec: Codec, value: ValueRef<'_>) -> String {
        let mut out = Vec::new();
        write_copy_text(codec, value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn codec_names_round_trip() {
        for codec in [
            Codec::Scalar(Scalar::Timestamptz),
            Codec::Array(Scalar::Numeric),
            Codec::Scalar(Scalar::Text),
            Codec::Decimal { scale: None },
            Codec::Decimal { scale: Some(2) },
        ] {
            assert_eq!(Codec::from_name(&codec.name()), Some(codec));
        }
        assert_eq!(Codec::Decimal { scale: Some(2) }.name(), "decimal(2)");
        for nonsense in [
            "array:nonsense",
            "decimal(",
            "decimal(-1)",
            "decimal(2",
            "decimals",
        ] {
            assert_eq!(Codec::from_name(nonsense), None, "{nonsense}");
        }
    }

    #[test]
    fn numeric_type_modifiers_give_the_display_scale() {
        // atttypmod as PostgreSQL 15 records it for each declaration.
        for (typmod, declared, scale) in [
            (-1, "numeric", None),
            (786_438, "numeric(12,2)", Some(2)),
            (655_364, "numeric(10,0)", Some(0)),
            (196_614, "numeric(3,2)", Some(2)),
            (329_730, "numeric(5,-2)", Some(0)),
            (65_537_004, "numeric(1000,1000)", Some(1000)),
        ] {
            assert_eq!(numeric_scale(typmod), scale, "{declared}");
        }
    }

    #[test]
    fn decimals_are_written_with_their_scale() {
        let money = Codec::Decimal { scale: Some(2) };
        assert_eq!(field(money, ValueRef::Integer(-12)), "-12.00");
        assert_eq!(field(money, ValueRef::Real(0.5)), "0.50");
        assert_eq!(field(money, ValueRef::Real(f64::INFINITY)), "Infinity");
        assert_eq!(field(money, ValueRef::Text(b"NaN")), "NaN");
        let plain = Codec::Decimal { scale: None };
        assert_eq!(field(plain, ValueRef::Real(1e21)), "1000000000000000000000");
        assert_eq!(field(plain, ValueRef::Real(-1.5e-7)), "-0.00000015");
        // A kept exact text (or a format 2 mirror's) is written as it is.
        assert_eq!(field(plain, ValueRef::Text(b"1.50")), "1.50");
    }

    #[test]
    fn mirror_values_become_copy_text() {
        let text = Codec::Scalar(Scalar::Text);
        assert_eq!(field(text, ValueRef::Null), "\\N");
        assert_eq!(field(text, ValueRef::Text(b"")), "");
        assert_eq!(field(text, ValueRef::Text(b"a\tb\\c\nd")), "a\\tb\\\\c\\nd");
        assert_eq!(field(Codec::Scalar(Scalar::Bool), ValueRef::Integer(1)), "t");
        assert_eq!(field(Codec::Scalar(Scalar::Float8), ValueRef::Real(0.1)), "0.1");
        assert_eq!(
            field(Codec::Scalar(Scalar::Bytea), ValueRef::Blob(&[0, 255])),
            "\\\\x00ff"
        );
        let array = Codec::Array(Scalar::Text);
        // The literal {"a,b",NULL,"q\"d",""} with its backslash doubled for COPY.
        assert_eq!(
            field(array, ValueRef::Text(br#"["a,b",null,"q\"d",""]"#)),
            r#"{"a,b",NULL,"q\\"d",""}"#
        );
        assert_eq!(
            field(Codec::Array(Scalar::Int4), ValueRef::Text(b"[0:1]={7,8}")),
            "[0:1]={7,8}"
        );
        assert_eq!(field(Codec::Array(Scalar::Int4), ValueRef::Text(b"[]")), "{}");
    }

    #[test]
    fn money_is_written_as_the_c_locale_prints_it_and_only_there() {
        assert_eq!(
            pg_money_text("-1234567.89", "C.UTF-8").as_deref(),
            Some("-$1,234,567.89")
        );
        assert_eq!(pg_money_text("0", "C").as_deref(), Some("$0.00"));
        assert_eq!(pg_money_text("123.4", "en_US.UTF-8").as_deref(), Some("$123.40"));
        assert_eq!(
            pg_money_text("12.34", "de_DE.UTF-8"),
            None,
            "other locales print it otherwise"
        );
        for not_money in ["", "-", "1.234", "1e5", "12,34", "NaN", "--1"] {
            assert_eq!(pg_money_text(not_money, "C"), None, "{not_money:?}");
        }
    }

    #[test]
    fn zones_lose_zero_minutes_as_postgresql_prints_them() {
        for (stored, printed) in [
            ("2000-01-01 00:00:00+00:00", "2000-01-01 00:00:00+00"),
            ("12:00:00.5-05:00", "12:00:00.5-05"),
            ("12:00:00+05:30", "12:00:00+05:30"),
            ("12:00:00-00:30:15", "12:00:00-00:30:15"),
            ("infinity", "infinity"),
            ("4713-01-01 00:00:00+00:00 BC", "4713-01-01 00:00:00+00 BC"),
            ("", ""),
        ] {
            assert_eq!(&*pg_zone_text(stored.as_bytes()), printed.as_bytes(), "{stored}");
        }
    }

    #[test]
    fn array_elements_are_quoted_only_where_postgresql_quotes_them() {
        for bare in ["a", "☃", "[]", "1.5", "x-y"] {
            assert!(!needs_quotes(bare), "{bare}");
        }
        for quoted in ["", "NULL", "null", "a b", "a,b", "{}", "\\", "\"", "tab\there"] {
            assert!(needs_quotes(quoted), "{quoted:?}");
        }
    }
}
