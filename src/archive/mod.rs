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

use crate::error::{Context, Result};

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
        return Ok(FileKind::Archive(ArchiveFormat::Directory));
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
    } else {
        FileKind::Archive(ArchiveFormat::Plain)
    })
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
