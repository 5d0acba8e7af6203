//! Backup sets: a directory of timestamped backups, each complete or absent, with
//! manifests; status, verification, retention, pins and a lock against concurrent runs.
//!
//! Layout of DIR (0700):
//!   <id>/manifest.json            the backup's manifest, written last
//!   <id>/mirror.db[.zst]          the SQLite mirror (kind mirror)
//!   <id>/<database>.backup(+.manifest.json)   the pg_dump archive (kind archive)
//!   <id>/.pinned                  present while the backup is pinned
//!   .<id>.partial/                a backup being written; never listed, never pruned
//!   .pgmirror.lock                flock'ed by the running backup, prune or pin; its pid inside
//!   .pgmirror-last-run.json       the outcome of the last run, for `status`
//!   .pgmirror-jobs.json           the runs of `pgmirror serve`'s jobs (history.rs)
//!   .pgmirror-offsite.json        which off-site targets hold which backups (copies.rs)
//!
//! One file per job: run.rs (backup), status.rs, prune.rs (with pins and the guide's file
//! names), verify.rs (with the live comparison and the drill); this file has what they
//! share: the manifest and the listing.

pub mod copies;
pub mod history;
mod prune;
pub mod retention;
mod run;
mod status;
mod verify;

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, ErrorKind, Result};
pub use prune::{prune, set_pinned, unmanaged_timestamp, Deleted, Kept, PruneReport};
pub use retention::{Decision, Policy};
pub use run::{backup, BackupOptions};
pub use status::{status, Status, StatusBackup};
pub use verify::{compare_with_live, drill, verify_set, SetVerifyReport};

const MANIFEST: &str = "manifest.json";
const PINNED: &str = ".pinned";
const LAST_RUN: &str = ".pgmirror-last-run.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    Mirror,
    Archive,
    Both,
}

/// What one file of a backup is (stored in the manifest as "mirror" or "archive").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupFileKind {
    Mirror,
    Archive,
}

impl BackupFileKind {
    pub fn name(self) -> &'static str {
        match self {
            BackupFileKind::Mirror => "mirror",
            BackupFileKind::Archive => "archive",
        }
    }
}

/// "mirror", "archive" or "mirror+archive": the kinds of a backup, for people.
pub fn kinds_label(kinds: &[BackupFileKind]) -> String {
    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join("+")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupFile {
    pub name: String,
    pub kind: BackupFileKind,
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableCount {
    pub table: String,
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupManifest {
    pub id: String,
    pub kinds: Vec<BackupFileKind>,
    pub created: String,
    /// Seconds since the Unix epoch, UTC (what retention reads).
    pub created_unix: i64,
    pub source: String,
    pub database: String,
    pub server_version: String,
    pub tool_version: String,
    pub files: Vec<BackupFile>,
    pub tables: Vec<TableCount>,
    pub mirror_seconds: Option<f64>,
    pub archive_seconds: Option<f64>,
    pub verified: bool,
    pub verify_problems: Vec<String>,
}

impl BackupManifest {
    /// The backup's size: all its files.
    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size_bytes).sum()
    }
}

/// Seconds since the newest verified backup was made: what `status --max-age` and
/// `serve`'s `max_age` judge. `backups` oldest first, as [`list`] returns them.
pub fn newest_verified_age_seconds(backups: &[(PathBuf, BackupManifest)], now_unix: i64) -> Option<i64> {
    backups
        .iter()
        .rev()
        .find(|(_, m)| m.verified)
        .map(|(_, m)| now_unix - m.created_unix)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastRun {
    pub time: String,
    pub ok: bool,
    pub error: Option<String>,
    pub backup: Option<String>,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Creates DIR 0700 if it does not exist.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating backup directory {}", dir.display()))
}

/// Free bytes on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::usage(format!("{} contains a NUL byte", dir.display())))?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a plain-data out parameter.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(Error::new(
            format!("reading free space of {}", dir.display()),
            ErrorKind::Io(std::io::Error::last_os_error()),
        ));
    }
    Ok(stats.f_bavail as u64 * stats.f_frsize as u64)
}

/// The backups of a set, oldest first (partial ones excluded).
pub fn list(dir: &Path) -> Result<Vec<(PathBuf, BackupManifest)>> {
    let mut backups = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden || !path.join(MANIFEST).is_file() {
            continue;
        }
        let manifest = match read_manifest(&path) {
            Ok(manifest) => manifest,
            // Pruned between the listing and the read: not part of the set any more.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        backups.push((path, manifest));
    }
    backups.sort_by(|a, b| {
        a.1.created_unix
            .cmp(&b.1.created_unix)
            .then_with(|| a.1.id.cmp(&b.1.id))
    });
    Ok(backups)
}

/// The index of the backup to restore among a set's manifests (oldest first): `wanted`,
/// or the newest verified one. `place` names the set in errors.
pub fn pick_backup(manifests: &[BackupManifest], wanted: Option<&str>, place: &str) -> Result<usize> {
    let newest: Vec<&str> = manifests.iter().rev().take(5).map(|m| m.id.as_str()).collect();
    let found = match wanted {
        Some(id) => manifests.iter().position(|m| m.id == id),
        None => manifests.iter().rposition(|m| m.verified),
    };
    found.ok_or_else(|| {
        let what = match wanted {
            Some(id) => format!("{place} holds no complete backup {id}"),
            None if manifests.is_empty() => format!("{place} holds no complete backup"),
            None => format!("{place} holds no verified backup; --backup ID restores an unverified one"),
        };
        if newest.is_empty() {
            Error::usage(what)
        } else {
            Error::usage(format!("{what} (newest: {})", newest.join(", ")))
        }
    })
}

/// Checks each of a backup's files (in `dir`) against its manifest: size and sha256.
pub fn check_files(dir: &Path, manifest: &BackupManifest) -> Result<()> {
    for file in &manifest.files {
        let path = dir.join(&file.name);
        let why = match crate::archive::manifest::compare_checksum(&path, &file.sha256, file.size_bytes) {
            crate::archive::manifest::ChecksumFinding::Read { differences } if differences.is_empty() => {
                continue
            }
            crate::archive::manifest::ChecksumFinding::Read { differences } => {
                format!("{}: the file is damaged or was changed", differences.join("; "))
            }
            crate::archive::manifest::ChecksumFinding::Unreadable(why) => why,
        };
        return Err(Error::unsupported(format!("checking {}", path.display()), why));
    }
    Ok(())
}

/// The manifest of the backup in directory `backup`.
pub fn read_manifest(backup: &Path) -> Result<BackupManifest> {
    let path = backup.join(MANIFEST);
    let context = || format!("reading {}", path.display());
    let text = fs::read(&path).with_context(context)?;
    parse_manifest(&text, context)
}

/// A manifest read from anywhere (a set, a download): it must name only files of its own
/// backup directory, since its names are joined to local paths.
pub fn parse_manifest(bytes: &[u8], context: impl Fn() -> String) -> Result<BackupManifest> {
    let manifest: BackupManifest =
        serde_json::from_slice(bytes).map_err(|e| Error::unsupported(context(), e.to_string()))?;
    if let Some(bad) = manifest.files.iter().find(|f| !is_plain_file_name(&f.name)) {
        return Err(Error::unsupported(
            context(),
            format!("the manifest names a file {:?} outside its backup", bad.name),
        ));
    }
    Ok(manifest)
}

/// A name that stays inside the directory it is joined to: not empty, not hidden, no
/// separator, no NUL.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/') && !name.contains('\0')
}

pub fn is_pinned(backup: &Path) -> bool {
    backup.join(PINNED).exists()
}

pub fn last_run(dir: &Path) -> Option<LastRun> {
    read_record(dir, LAST_RUN)
}

/// One of the set's JSON records (last run, job runs, off-site copies); `None` when it is
/// missing or unreadable: a record is not worth refusing to run backups for.
fn read_record<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Option<T> {
    serde_json::from_slice(&fs::read(dir.join(name)).ok()?).ok()
}
