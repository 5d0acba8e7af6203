//! Native archives: pg_dump and pg_restore wrapped — the only place pgmirror starts another
//! program — with version checks, the password in the child's environment, partial files
//! renamed on success, a checksum manifest, and verification after writing.

mod dump;
pub mod manifest;
mod restore;
pub mod tools;

pub use dump::PlainCompression;
pub use dump::{dump, DumpOptions, DumpSummary};
pub use manifest::{verify, Manifest, VerifyReport};
pub use restore::{restore_archive, ArchiveRestoreOptions, ArchiveRestoreSummary};

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// pg_dump's output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveFormat {
    Custom,
    Directory,
    Tar,
    Plain,
}

impl ArchiveFormat {
    fn flag(self) -> &'static str {
        match self {
            ArchiveFormat::Custom => "--format=custom",
            ArchiveFormat::Directory => "--format=directory",
            ArchiveFormat::Tar => "--format=tar",
            ArchiveFormat::Plain => "--format=plain",
        }
    }
}

/// What a file given to `restore` or `verify` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A pgmirror SQLite mirror (possibly zstd-compressed).
    Mirror,
    Archive(ArchiveFormat),
}

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
const CUSTOM_MAGIC: &[u8] = b"PGDMP";

/// Recognises a file by its content (and a directory by its toc.dat).
pub fn detect(path: &Path) -> Result<FileKind> {
    if path.is_dir() {
        if path.join("toc.dat").is_file() {
            return Ok(FileKind::Archive(ArchiveFormat::Directory));
        }
        return Err(Error::usage(format!(
            "{} is a directory without toc.dat: not a pg_dump directory archive",
            path.display()
        )));
    }
    let mut head = vec![0u8; 512];
    let mut reader = crate::compress::open_input(&path.display().to_string())?;
    let mut filled = 0;
    while filled < head.len() {
        let read = reader
            .read(&mut head[filled..])
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    head.truncate(filled);
    if head.starts_with(b"age-encryption.org/v1\n") {
        return Err(Error::usage(format!(
            "{} is encrypted (age): give --identity FILE to read it",
            path.display()
        )));
    }
    Ok(if head.starts_with(SQLITE_MAGIC) {
        FileKind::Mirror
    } else if head.starts_with(CUSTOM_MAGIC) {
        FileKind::Archive(ArchiveFormat::Custom)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        FileKind::Archive(ArchiveFormat::Tar)
    } else if is_plain_dump(&head) {
        FileKind::Archive(ArchiveFormat::Plain)
    } else {
        // Anything else would be fed to psql as SQL: a mistyped path must not run.
        return Err(Error::usage(format!(
            "{} is neither a pgmirror mirror nor a pg_dump archive (custom, directory, tar, or a plain \
             dump with pg_dump's header): {}",
            path.display(),
            describe_head(&head)
        )));
    })
}

/// pg_dump's plain output opens with this comment (pg_dumpall's with "cluster dump").
const PLAIN_HEADERS: [&str; 2] = [
    "-- PostgreSQL database dump",
    "-- PostgreSQL database cluster dump",
];

fn is_plain_dump(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    text.lines()
        .take_while(|line| line.starts_with("--") || line.trim().is_empty())
        .any(|line| PLAIN_HEADERS.contains(&line.trim_end()))
}

/// What a file's first bytes look like, for the refusal message. Never its content: a
/// mistyped path may name a file of secrets (`.pgpass`, `.env`).
fn describe_head(head: &[u8]) -> String {
    // The head is cut at a fixed length, possibly inside a character: that is still text.
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    if head.is_empty() {
        "it is empty".to_owned()
    } else if text && !head.contains(&0) {
        "it is text without pg_dump's header".to_owned()
    } else {
        "it is binary data of no known kind".to_owned()
    }
}

/// A pg_dump/pg_restore name pattern for a table name as the user wrote it (case-sensitive,
/// optionally `schema.table`): quoted so pg_dump does not fold it to lower case. Patterns
/// with `*` or `?` are passed as they are, with pg_dump's own rules.
pub fn table_pattern(written: &str) -> String {
    if written.contains(['*', '?']) {
        return written.to_owned();
    }
    match written.split_once('.') {
        Some((schema, table)) => crate::pg::qualified(schema, table),
        None => crate::pg::quote_ident(written),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_dumps_are_recognised_by_their_header() {
        let pg15 = b"--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15.18\n";
        let restricted =
            b"--\n-- PostgreSQL database dump\n--\n\n\\restrict AbC123\n\nSET statement_timeout = 0;\n";
        let crlf = b"--\r\n-- PostgreSQL database dump\r\n--\r\n";
        let cluster = b"--\n-- PostgreSQL database cluster dump\n--\n";
        for head in [&pg15[..], restricted, crlf, cluster] {
            assert!(is_plain_dump(head), "{}", String::from_utf8_lossy(head));
        }
        let not_dumps: [&[u8]; 4] = [
            b"DROP TABLE important;\n",
            b"-- my notes\nSELECT 1;\n-- PostgreSQL database dump\n",
            b"",
            b"\xff\xd8\xff\xe0",
        ];
        for head in not_dumps {
            assert!(!is_plain_dump(head), "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn the_refusal_never_quotes_the_file() {
        let secret = b"localhost:5432:*:app:S3cret-pass\n";
        let described = describe_head(secret);
        assert_eq!(described, "it is text without pg_dump's header");
        assert_eq!(
            describe_head(b"\xff\xd8\xff\xe0\0\x10JF"),
            "it is binary data of no known kind"
        );
        assert_eq!(describe_head(b""), "it is empty");
    }
}
