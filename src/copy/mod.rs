//! PostgreSQL's binary COPY format: the stream reader and per-type decoders.
//! Pure: no I/O, no tokio, no SQLite.

mod reader;
pub mod types;

pub use reader::{CopyReader, Row};

/// What can be wrong with a binary COPY stream or a value inside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    #[error("not a binary COPY stream: bad signature")]
    BadSignature,
    #[error("binary COPY header has unsupported critical flags {0:#x}")]
    UnsupportedFlags(u32),
    #[error("row {row}: expected {expected} fields, the stream has {found}")]
    FieldCount { row: u64, expected: usize, found: i16 },
    #[error("row {row}: field {field} has an invalid length {length}")]
    FieldLength { row: u64, field: usize, length: i32 },
    #[error("binary COPY stream ended early ({context})")]
    Truncated { context: &'static str },
    #[error("data after the end-of-copy marker")]
    TrailingData,
    #[error("malformed {type_name} value: {reason}")]
    Malformed { type_name: &'static str, reason: String },
}

impl CopyError {
    pub fn malformed(type_name: &'static str, reason: impl Into<String>) -> Self {
        CopyError::Malformed {
            type_name,
            reason: reason.into(),
        }
    }
}
