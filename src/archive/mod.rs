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

/// What a file's first bytes look like, for the refusal message.
fn describe_head(head: &[u8]) -> String {
    // The head is cut at a fixed length, possibly inside a character: that is still text.
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    match text {
        _ if head.is_empty() => "it is empty".to_owned(),
        Some(text) if !text.contains('\0') => {
            let first: String = text.lines().next().unwrap_or_default().chars().take(60).collect();
            format!("it is text beginning {first:?}")
        }
        _ => {
            let bytes: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("it is binary data beginning with bytes {}", bytes.join(" "))
        }
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
