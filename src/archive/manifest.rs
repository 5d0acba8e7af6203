//! The manifest written beside each archive, and verification against it.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{tools, ArchiveFormat, FileKind};
use crate::error::{Context, Error, Result};

/// pg_dump ends every complete plain dump with this line.
pub const PLAIN_END_MARKER: &str = "-- PostgreSQL database dump complete";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub file: String,
    pub format: ArchiveFormat,
    pub compression: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub database: String,
    pub server_version: String,
    pub pg_dump_version: String,
    pub created: String,
    pub duration_seconds: f64,
    pub tables: Vec<String>,
    pub verified: bool,
    pub verify_method: String,
}

pub fn manifest_path(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

/// sha256 and size of a file, or of a directory's files in name order.
pub fn checksum(path: &Path) -> Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut files = if path.is_dir() {
        // An entry that cannot be listed is an error: skipping it would checksum less than
        // the archive holds.
        let mut names: Vec<PathBuf> = std::fs::read_dir(path)
            .and_then(|entries| entries.map(|e| e.map(|e| e.path())).collect())
            .with_context(|| format!("listing {}", path.display()))?;
        names.sort();
        names
    } else {
        vec![path.to_path_buf()]
    };
    for file in files.drain(..) {
        if path.is_dir() {
            hasher.update(file.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        }
        let mut reader = File::open(&file).with_context(|| format!("reading {}", file.display()))?;
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let read = reader
                .read(&mut buffer)
                .with_context(|| format!("reading {}", file.display()))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            size += read as u64;
        }
    }
    let digest = hasher.finalize();
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), size))
}

/// How a file differs from the size and sha256 recorded for it (empty when it does not).
pub fn compare_checksum(path: &Path, sha256: &str, size_bytes: u64) -> ChecksumFinding {
    match checksum(path) {
        Ok((actual_sha, actual_size)) => {
            let mut differences = Vec::new();
            if actual_size != size_bytes {
                differences.push(format!(
                    "size is {actual_size} bytes, the manifest says {size_bytes}"
                ));
            }
            if actual_sha != sha256 {
                differences.push(format!("sha256 is {actual_sha}, the manifest says {sha256}"));
            }
            ChecksumFinding::Read { differences }
        }
        Err(e) => ChecksumFinding::Unreadable(e.to_string()),
    }
}

/// What comparing a file with its recorded size and sha256 found.
#[derive(Debug)]
pub enum ChecksumFinding {
    /// The file was read to its end; how it differs, if it does.
    Read { differences: Vec<String> },
    /// The file could not be read (missing, permissions, I/O): nothing else can be checked.
    Unreadable(String),
}

impl ChecksumFinding {
    pub fn problems(self) -> Vec<String> {
        match self {
            ChecksumFinding::Read { differences } => differences,
            ChecksumFinding::Unreadable(why) => vec![why],
        }
    }
}

/// Checks that an archive is readable to its end. Returns the tables it holds data for.
pub fn structural_check(
    path: &Path,
    format: ArchiveFormat,
    pg_restore_major: u32,
    pg_bin: Option<&Path>,
) -> Result<Vec<String>> {
    match format {
        ArchiveFormat::Plain => {
            let reader = crate::compress::open_input(&path.display().to_string())?;
            let mut tables = Vec::new();
            // The marker is followed only by comment dashes, blank lines and (since the 2025
            // minor releases) psql's `\unrestrict KEY`.
            let mut complete = false;
            for line in BufReader::new(reader).lines() {
                let line = line.with_context(|| format!("reading {} to its end", path.display()))?;
                if let Some(rest) = line.strip_prefix("COPY ") {
                    tables.push(rest.split(" (").next().unwrap_or(rest).to_owned());
                }
                if line == PLAIN_END_MARKER {
                    complete = true;
                } else if !line.is_empty() && line != "--" && !line.starts_with("\\unrestrict ") {
                    complete = false;
                }
            }
            if !complete {
                return Err(Error::unsupported(
                    format!("checking {}", path.display()),
                    format!("the dump does not end with {PLAIN_END_MARKER:?}: it is truncated"),
                ));
            }
            Ok(tables)
        }
        _ => {
            let pg_restore = tools::find("pg_restore", pg_restore_major, pg_bin)?;
            let mut command = std::process::Command::new(&pg_restore.path);
            command.arg("--list").arg(path);
            let listing = tools::run(command, &format!("pg_restore --list {}", path.display()))?;
            Ok(String::from_utf8_lossy(&listing)
                .lines()
                .filter(|l| !l.starts_with(';') && l.contains(" TABLE DATA "))
                .filter_map(|l| {
                    let after = l.split(" TABLE DATA ").nth(1)?;
                    let mut words = after.split_whitespace();
                    Some(format!("{}.{}", words.next()?, words.next()?))
                })
                .collect())
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub file: String,
    pub kind: String,
    pub problems: Vec<String>,
}

/// Verifies an archive against its manifest and structurally, or a mirror's integrity and
/// row counts. Problems are listed, not raised: an unreadable file is a finding.
pub fn verify(path: &Path, pg_bin: Option<&Path>) -> Result<VerifyReport> {
    if !path.exists() {
        return Err(Error::usage(format!("{} does not exist", path.display())));
    }
    // An encrypted file is checked as its plaintext (its own checksum is the backup
    // manifest's business).
    let shown = path;
    let plain = crate::crypt::Plain::of(path)?;
    let path = plain.path();
    let kind = super::detect(path)?;
    let mut problems = Vec::new();
    match kind {
        FileKind::Mirror => problems.extend(crate::mirror::verify_file(path)),
        FileKind::Archive(detected) => {
            let manifest_file = manifest_path(path);
            let manifest: Option<Manifest> = match std::fs::read(&manifest_file) {
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(manifest) => Some(manifest),
                    Err(e) => {
                        problems.push(format!("manifest {} is unreadable: {e}", manifest_file.display()));
                        None
                    }
                },
                Err(_) => {
                    problems.push(format!(
                        "no manifest {} beside the archive",
                        manifest_file.display()
                    ));
                    None
                }
            };
            let format = manifest.as_ref().map_or(detected, |m| m.format);
            if let Some(manifest) = &manifest {
                problems.extend(compare_checksum(path, &manifest.sha256, manifest.size_bytes).problems());
            }
            let needed = manifest
                .as_ref()
                .and_then(|m| tools::parse_major(&m.pg_dump_version))
                .unwrap_or(0);
            if let Err(e) = structural_check(path, format, needed, pg_bin) {
                problems.push(e.to_string());
            }
        }
    }
    Ok(VerifyReport {
        file: shown.display().to_string(),
        kind: match kind {
            FileKind::Mirror => "mirror".into(),
            FileKind::Archive(format) => format!("{format:?} archive").to_lowercase(),
        },
        problems,
    })
}
