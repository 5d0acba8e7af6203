//! The closed set of column codecs: how each PostgreSQL type travels in binary COPY
//! and which SQLite value it becomes. DESIGN.md §5 is the table this file implements.

use std::fmt::Write;

use serde::Serialize;

use crate::batch::RowBatch;
use crate::copy::{types, CopyError};

/// How one column is selected, decoded and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    Int2,
    Int4,
    Int8,
    Oid,
    Bool,
    Float4,
    Float8,
    /// numeric, and money selected as `::numeric`.
    Numeric,
    /// text-like types whose binary form is their UTF-8 text (text, varchar, char(n), name, enums),
    /// and every type selected in its text output form.
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
    /// An array whose elements have a native codec: JSON text when one-dimensional
    /// with lower bound 1, PostgreSQL's array literal otherwise.
    Array(Element),
}

/// Element codecs of arrays (no nested arrays in PostgreSQL's type system).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Element {
    Int2,
    Int4,
    Int8,
    Oid,
    Bool,
    Float4,
    Float8,
    Numeric,
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
    /// pg_type.typtype of the base type ('b' base, 'e' enum, 'c' composite, 'r' range, ...).
    pub typtype: u8,
    /// For arrays: the element type, domains resolved, with its own typtype.
    pub element: Option<(u32, u8)>,
}

/// The codec and select expression for a column of the given type.
pub fn choose_codec(info: TypeInfo) -> (Codec, SelectAs) {
    if let Some((element_oid, element_typtype)) = info.element {
        return match element_codec(element_oid, element_typtype) {
            Some(element) => (Codec::Array(element), SelectAs::Column),
            None => (Codec::Text, SelectAs::TextOutput),
        };
    }
    if info.base_oid == oids::MONEY {
        return (Codec::Numeric, SelectAs::CastToNumeric);
    }
    match element_codec(info.base_oid, info.typtype) {
        Some(element) => (element.as_scalar(), SelectAs::Column),
        None => (Codec::Text, SelectAs::TextOutput),
    }
}

fn element_codec(oid: u32, typtype: u8) -> Option<Element> {
    if typtype == b'e' {
        // An enum's binary form is its label.
        return Some(Element::Text);
    }
    Some(match oid {
        oids::INT2 => Element::Int2,
        oids::INT4 => Element::Int4,
        oids::INT8 => Element::Int8,
        oids::OID => Element::Oid,
        oids::BOOL => Element::Bool,
        oids::FLOAT4 => Element::Float4,
        oids::FLOAT8 => Element::Float8,
        oids::NUMERIC => Element::Numeric,
        oids::TEXT | oids::VARCHAR | oids::BPCHAR | oids::NAME => Element::Text,
        oids::BYTEA => Element::Bytea,
        oids::UUID => Element::Uuid,
        oids::JSON => Element::Json,
        oids::JSONB => Element::Jsonb,
        oids::DATE => Element::Date,
        oids::TIMESTAMP => Element::Timestamp,
        oids::TIMESTAMPTZ => Element::Timestamptz,
        oids::TIME => Element::Time,
        oids::TIMETZ => Element::Timetz,
        _ => return None,
    })
}

impl Element {
    fn as_scalar(self) -> Codec {
        match self {
            Element::Int2 => Codec::Int2,
            Element::Int4 => Codec::Int4,
            Element::Int8 => Codec::Int8,
            Element::Oid => Codec::Oid,
            Element::Bool => Codec::Bool,
            Element::Float4 => Codec::Float4,
            Element::Float8 => Codec::Float8,
            Element::Numeric => Codec::Numeric,
            Element::Text => Codec::Text,
            Element::Bytea => Codec::Bytea,
            Element::Uuid => Codec::Uuid,
            Element::Json => Codec::Json,
            Element::Jsonb => Codec::Jsonb,
            Element::Date => Codec::Date,
            Element::Timestamp => Codec::Timestamp,
            Element::Timestamptz => Codec::Timestamptz,
            Element::Time => Codec::Time,
            Element::Timetz => Codec::Timetz,
        }
    }
}

impl Codec {
    /// The declared SQLite column type (an affinity name), so any tool reads the file naturally.
    pub fn sqlite_type(self) -> &'static str {
        match self {
            Codec::Int2 | Codec::Int4 | Codec::Int8 | Codec::Oid | Codec::Bool => "INTEGER",
            Codec::Float4 | Codec::Float8 => "REAL",
            Codec::Bytea => "BLOB",
            _ => "TEXT",
        }
    }

    pub fn is_integer(self) -> bool {
        self.sqlite_type() == "INTEGER"
    }

    /// The name recorded in the mirror's metadata (`int4`, `array:numeric`, ...).
    pub fn name(self) -> String {
        match self {
            Codec::Array(element) => format!("array:{}", snake_name(&element)),
            other => snake_name(&other),
        }
    }

    /// Decodes one non-NULL binary value and appends its SQLite form to the batch.
    pub fn decode_into(self, bytes: &[u8], batch: &mut RowBatch) -> Result<(), CopyError> {
        match self {
            Codec::Int2 => batch.push_integer(types::int2(bytes)?),
            Codec::Int4 => batch.push_integer(types::int4(bytes)?),
            Codec::Int8 => batch.push_integer(types::int8(bytes)?),
            Codec::Oid => batch.push_integer(types::oid(bytes)?),
            Codec::Bool => batch.push_integer(types::bool(bytes)? as i64),
            Codec::Float4 => push_float(batch, types::float4(bytes)?),
            Codec::Float8 => push_float(batch, types::float8(bytes)?),
            Codec::Numeric => batch.push_text_with(|out| types::write_numeric(out, bytes))?,
            Codec::Text => batch.push_str(types::utf8(bytes, "text")?),
            Codec::Json => batch.push_str(types::utf8(bytes, "json")?),
            Codec::Jsonb => batch.push_str(types::jsonb_text(bytes)?),
            Codec::Bytea => batch.push_blob(bytes),
            Codec::Uuid => batch.push_text_with(|out| types::write_uuid(out, bytes))?,
            Codec::Date => batch.push_text_with(|out| types::write_date(out, bytes))?,
            Codec::Timestamp => batch.push_text_with(|out| types::write_timestamp(out, bytes, false))?,
            Codec::Timestamptz => batch.push_text_with(|out| types::write_timestamp(out, bytes, true))?,
            Codec::Time => batch.push_text_with(|out| types::write_time(out, bytes))?,
            Codec::Timetz => batch.push_text_with(|out| types::write_timetz(out, bytes))?,
            Codec::Array(element) => batch.push_text_with(|out| write_array(out, element, bytes))?,
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

/// SQLite turns a bound NaN into NULL, so non-finite floats are stored as PostgreSQL's text.
fn push_float(batch: &mut RowBatch, value: f64) {
    match types::non_finite_float_text(value) {
        Some(text) => batch.push_str(text),
        None => batch.push_real(value),
    }
}

/// An array element in the form both renderings start from.
enum Scalar<'a> {
    Null,
    /// A number written bare in both JSON and array literals.
    Number(String),
    Bool(bool),
    Str(std::borrow::Cow<'a, str>),
}

fn element_scalar(element: Element, bytes: Option<&[u8]>) -> Result<Scalar<'_>, CopyError> {
    let Some(bytes) = bytes else {
        return Ok(Scalar::Null);
    };
    let number = |value: i64| Scalar::Number(value.to_string());
    let float = |value: f64| match types::non_finite_float_text(value) {
        Some(text) => Scalar::Str(text.into()),
        None => Scalar::Number(format!("{value:?}")),
    };
    let formatted =
        |write: &dyn Fn(&mut String) -> Result<(), CopyError>| -> Result<Scalar<'static>, CopyError> {
            let mut out = String::new();
            write(&mut out)?;
            Ok(Scalar::Str(out.into()))
        };
    Ok(match element {
        Element::Int2 => number(types::int2(bytes)?),
        Element::Int4 => number(types::int4(bytes)?),
        Element::Int8 => number(types::int8(bytes)?),
        Element::Oid => number(types::oid(bytes)?),
        Element::Bool => Scalar::Bool(types::bool(bytes)?),
        Element::Float4 => float(types::float4(bytes)?),
        Element::Float8 => float(types::float8(bytes)?),
        Element::Numeric => formatted(&|out| types::write_numeric(out, bytes))?,
        Element::Text => Scalar::Str(types::utf8(bytes, "text")?.into()),
        Element::Json => Scalar::Str(types::utf8(bytes, "json")?.into()),
        Element::Jsonb => Scalar::Str(types::jsonb_text(bytes)?.into()),
        Element::Bytea => formatted(&|out| {
            types::write_bytea_hex(out, bytes);
            Ok(())
        })?,
        Element::Uuid => formatted(&|out| types::write_uuid(out, bytes))?,
        Element::Date => formatted(&|out| types::write_date(out, bytes))?,
        Element::Timestamp => formatted(&|out| types::write_timestamp(out, bytes, false))?,
        Element::Timestamptz => formatted(&|out| types::write_timestamp(out, bytes, true))?,
        Element::Time => formatted(&|out| types::write_time(out, bytes))?,
        Element::Timetz => formatted(&|out| types::write_timetz(out, bytes))?,
    })
}

/// One-dimensional arrays with lower bound 1 (and empty arrays) become a JSON array;
/// any other shape becomes PostgreSQL's array literal, which never parses as JSON.
fn write_array(out: &mut String, element: Element, bytes: &[u8]) -> Result<(), CopyError> {
    let array = types::parse_array(bytes)?;
    let scalars = array
        .elements
        .iter()
        .map(|value| element_scalar(element, *value))
        .collect::<Result<Vec<_>, _>>()?;
    match array.dims.as_slice() {
        [] => out.push_str("[]"),
        [(_, 1)] => write_json_array(out, &scalars),
        dims => write_array_literal(out, dims, &scalars),
    }
    Ok(())
}

fn write_json_array(out: &mut String, scalars: &[Scalar<'_>]) {
    out.push('[');
    for (i, scalar) in scalars.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match scalar {
            Scalar::Null => out.push_str("null"),
            Scalar::Number(text) => out.push_str(text),
            Scalar::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Scalar::Str(text) => out.push_str(&serde_json::Value::from(text.as_ref()).to_string()),
        }
    }
    out.push(']');
}

fn write_array_literal(out: &mut String, dims: &[(i32, i32)], scalars: &[Scalar<'_>]) {
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
    next: &mut impl Iterator<Item = &'s Scalar<'a>>,
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
                Some(Scalar::Null) | None => out.push_str("NULL"),
                Some(Scalar::Number(text)) => out.push_str(text),
                Some(Scalar::Bool(value)) => out.push(if *value { 't' } else { 'f' }),
                Some(Scalar::Str(text)) => {
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
