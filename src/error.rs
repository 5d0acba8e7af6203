//! The library's error type: what went wrong (`kind`) and which object it happened to (`context`).

use std::fmt;

use crate::copy::CopyError;

/// A library error. `context` names the object the operation was working on
/// (a table, a column and row, a chunk, a file) so the message needs no guessing.
#[derive(Debug)]
pub struct Error {
    pub context: String,
    pub kind: ErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("{}", describe_postgres(.0))]
    Postgres(#[source] tokio_postgres::Error),
    #[error("{}", describe_sqlite(.0))]
    Sqlite(#[source] rusqlite::Error),
    #[error("{}", describe_io(.0))]
    Io(#[source] std::io::Error),
    #[error("{0}")]
    Copy(#[source] CopyError),
    /// Invalid input from the user: options, connection strings, filters.
    #[error("{0}")]
    Usage(String),
    /// The database's contents or catalog cannot be mirrored as they are.
    #[error("{0}")]
    Unsupported(String),
    /// A bug: a panic caught at a thread or task boundary, with its message.
    #[error("internal error (a bug in pgmirror; please report it): {0}")]
    Internal(String),
    /// The run was stopped because another part of it failed first.
    #[error("cancelled")]
    Cancelled,
    /// The user asked the run to stop (SIGINT, SIGTERM).
    #[error("interrupted; nothing was written")]
    Interrupted,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.context.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.context, self.kind)
        }
    }
}

/// The kind's text already carries its causes (see `describe_postgres`), so the error
/// reports no source: chain printers such as anyhow's `{:#}` would repeat them.
impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(context: impl Into<String>, kind: ErrorKind) -> Self {
        Error {
            context: context.into(),
            kind,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::new("", ErrorKind::Usage(message.into()))
    }

    pub fn unsupported(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::new(context, ErrorKind::Unsupported(message.into()))
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, ErrorKind::Cancelled)
    }

    /// Whether the server could not be reached or dropped the connection: worth another
    /// try later (a restart, a failover, too many connections), unlike a refused statement.
    pub fn is_connection(&self) -> bool {
        match &self.kind {
            ErrorKind::Postgres(e) => match e.code() {
                None => {
                    e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                }
                Some(code) => {
                    let code = code.code();
                    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
                }
            },
            ErrorKind::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }

    /// Whether a file or directory was not there.
    pub fn is_not_found(&self) -> bool {
        matches!(&self.kind, ErrorKind::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }

    /// The server's SQLSTATE, when the server refused something.
    pub fn sqlstate(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Postgres(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// Whether this is what a stop request itself causes: the interruption, the rest of
    /// the run cancelled, a statement cancelled on the server or its connection closed.
    pub fn is_stop(&self) -> bool {
        match &self.kind {
            ErrorKind::Interrupted | ErrorKind::Cancelled => true,
            ErrorKind::Postgres(e) => {
                e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) || e.is_closed()
            }
            _ => false,
        }
    }
}

/// The text a panic was raised with.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `work`, turning a panic into an [`ErrorKind::Internal`] error that names the
/// object being worked on: a bug in one table's work ends the run like any error (exit
/// 2, partial files removed) instead of aborting it.
pub fn catch_panic<T>(context: impl FnOnce() -> String, work: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|payload| {
        Err(Error::new(
            context(),
            ErrorKind::Internal(panic_message(&*payload)),
        ))
    })
}

/// Attaches a description of the object being worked on to lower-level errors.
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<ErrorKind>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::new(context, e.into()))
    }
    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::new(context(), e.into()))
    }
}

impl From<tokio_postgres::Error> for ErrorKind {
    fn from(e: tokio_postgres::Error) -> Self {
        ErrorKind::Postgres(e)
    }
}
impl From<rusqlite::Error> for ErrorKind {
    fn from(e: rusqlite::Error) -> Self {
        ErrorKind::Sqlite(e)
    }
}
impl From<std::io::Error> for ErrorKind {
    fn from(e: std::io::Error) -> Self {
        ErrorKind::Io(e)
    }
}
impl From<CopyError> for ErrorKind {
    fn from(e: CopyError) -> Self {
        ErrorKind::Copy(e)
    }
}

const DISK_FULL_HINT: &str = "(is the disk full, or the file too large for its filesystem?)";

fn describe_io(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::ENOSPC | libc::EFBIG | libc::EDQUOT) => format!("{error} {DISK_FULL_HINT}"),
        _ => error.to_string(),
    }
}

/// SQLite's "disk I/O error" leaves the likeliest cause unsaid.
fn describe_sqlite(error: &rusqlite::Error) -> String {
    use rusqlite::ffi::ErrorCode;
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure) => {
            format!("{error} {DISK_FULL_HINT}")
        }
        _ => error.to_string(),
    }
}

/// tokio-postgres prints server errors as a bare "db error"; the server's
/// message, detail and hint are what a user needs, so spell them out.
pub fn describe_postgres(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" (DETAIL: {detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" (HINT: {hint})"));
        }
        if let Some(context) = db.where_() {
            text.push_str(&format!(" (CONTEXT: {context})"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl From<CopyError> for Error {
    fn from(e: CopyError) -> Self {
        Error::new("", ErrorKind::Copy(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_naming_the_object() {
        let error = catch_panic(
            || "writing table \"people\"".to_owned(),
            || -> Result<()> { panic!("index out of bounds: {}", 7) },
        )
        .unwrap_err();
        assert_eq!(error.context, "writing table \"people\"");
        assert!(
            matches!(&error.kind, ErrorKind::Internal(m) if m == "index out of bounds: 7"),
            "{error}"
        );
        assert_eq!(catch_panic(String::new, || Ok(3)).unwrap(), 3);
    }
}
