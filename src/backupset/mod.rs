//! Backup sets: a directory of timestamped backups, each complete or absent, with
//! manifests; status, verification, retention, pins and a lock against concurrent runs.
//!
//! Layout of DIR (0700):
//!   <id>/manifest.json            the backup's manifest, written last
//!   <id>/mirror.db[.zst]          the SQLite mirror (kind mirror)
//!   <id>/<database>.backup(+.manifest.json)   the pg_dump archive (kind archive)
//!   <id>/.pinned                  present while the backup is pinned
//!   .<id>.partial/                a backup being written; never listed, never pruned
//!   .pgmirror.lock                the running backup's pid
//!   .pgmirror-last-run.json       the outcome of the last run, for `status`

mod lock;
pub mod retention;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::archive::{self, manifest::checksum, ArchiveFormat, DumpOptions, PlainCompression};
use crate::compress::write_private_json;
use crate::config::ExportOptions;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::ConnectionSpec;
pub use retention::{Decision, Policy};

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

#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub source: ConnectionSpec,
    pub dir: PathBuf,
    pub kind: BackupKind,
    /// zstd level for the mirror file; `None` leaves it uncompressed.
    pub zstd_level: Option<i32>,
    pub jobs: usize,
    pub pg_bin: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupFile {
    pub name: String,
    pub kind: String,
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
    pub kinds: Vec<String>,
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

/// `YYYYmmddTHHMMSSZ`: sorts as it was made, and names its time.
fn backup_id(now: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(now).to_string();
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    format!("{}T{}Z", &digits[..8], &digits[8..14])
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
        let text = fs::read(path.join(MANIFEST))
            .with_context(|| format!("reading {}", path.join(MANIFEST).display()))?;
        let manifest: BackupManifest = serde_json::from_slice(&text).map_err(|e| {
            Error::unsupported(
                format!("reading {}", path.join(MANIFEST).display()),
                e.to_string(),
            )
        })?;
        backups.push((path, manifest));
    }
    backups.sort_by(|a, b| {
        a.1.created_unix
            .cmp(&b.1.created_unix)
            .then_with(|| a.1.id.cmp(&b.1.id))
    });
    Ok(backups)
}

pub fn is_pinned(backup: &Path) -> bool {
    backup.join(PINNED).exists()
}

fn record_run(dir: &Path, outcome: &Result<BackupManifest>) {
    let run = LastRun {
        time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        ok: outcome.is_ok(),
        error: outcome.as_ref().err().map(|e| e.to_string()),
        backup: outcome.as_ref().ok().map(|m| m.id.clone()),
    };
    let _ = write_private_json(&dir.join(LAST_RUN), &run);
}

pub fn last_run(dir: &Path) -> Option<LastRun> {
    serde_json::from_slice(&fs::read(dir.join(LAST_RUN)).ok()?).ok()
}

/// Adds one backup to the set; the outcome is recorded for `status` either way.
pub fn backup(options: &BackupOptions) -> Result<BackupManifest> {
    ensure_dir(&options.dir)?;
    let _lock = lock::Lock::acquire(&options.dir)?;
    let outcome = run_backup(options);
    record_run(&options.dir, &outcome);
    outcome
}

async fn database_identity(source: &ConnectionSpec) -> Result<(String, String, i64)> {
    let client = source.connect().await?;
    let row = client
        .query_one(
            "SELECT current_database()::text, current_setting('server_version'), pg_database_size(current_database())",
            &[],
        )
        .await
        .context("reading the database's name and size")?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Refuses to start a backup that would not fit, before any work.
fn check_free_space(dir: &Path, free: u64, estimate: u64, from_previous: bool) -> Result<()> {
    if free >= estimate {
        return Ok(());
    }
    Err(Error::unsupported(
        format!("backing up into {}", dir.display()),
        format!(
            "not enough free space: {} free, about {} needed (the {}); free space or prune first",
            indicatif::HumanBytes(free),
            indicatif::HumanBytes(estimate),
            if from_previous {
                "previous backup's size"
            } else {
                "database's size"
            }
        ),
    ))
}

fn run_backup(options: &BackupOptions) -> Result<BackupManifest> {
    let runtime = crate::pg::runtime()?;
    let (database, server_version, database_size) = runtime.block_on(database_identity(&options.source))?;
    drop(runtime);
    // Free space first: the previous backup's size, else the database's (twice for both kinds).
    let previous: u64 = list(&options.dir)?
        .last()
        .map(|(_, m)| m.files.iter().map(|f| f.size_bytes).sum())
        .unwrap_or(0);
    let factor = if options.kind == BackupKind::Both { 2 } else { 1 };
    let estimate = if previous > 0 {
        previous
    } else {
        database_size.max(0) as u64 * factor
    };
    check_free_space(&options.dir, free_bytes(&options.dir)?, estimate, previous > 0)?;
    let created = SystemTime::now();
    let id = backup_id(created);
    let final_dir = options.dir.join(&id);
    if final_dir.exists() {
        return Err(Error::usage(format!(
            "backup {id} already exists; wait a second and run again"
        )));
    }
    let pending = crate::publish::Pending::dir(&final_dir, options.dir.join(format!(".{id}.partial")))?;
    let partial_dir = pending.path().to_path_buf();

    let mut files = Vec::new();
    let mut tables = Vec::new();
    let mut kinds = Vec::new();
    let mut problems = Vec::new();
    let (mut mirror_seconds, mut archive_seconds) = (None, None);
    if matches!(options.kind, BackupKind::Mirror | BackupKind::Both) {
        let started = Instant::now();
        let plain = partial_dir.join("mirror.db");
        let mut export = ExportOptions::new(options.source.clone(), plain.clone());
        export.jobs = options.jobs;
        let summary = crate::pipeline::export(&export)?;
        tables = summary
            .table_rows
            .iter()
            .map(|t| TableCount {
                table: t.table.clone(),
                rows: t.rows,
            })
            .collect();
        let report = archive::verify(&plain, options.pg_bin.as_deref())?;
        problems.extend(report.problems);
        let file = match options.zstd_level {
            Some(level) => {
                let compressed = partial_dir.join("mirror.db.zst");
                compress_file(&plain, &compressed, level)?;
                fs::remove_file(&plain).with_context(|| format!("removing {}", plain.display()))?;
                compressed
            }
            None => plain,
        };
        files.push(describe_file(&file, "mirror")?);
        kinds.push("mirror".to_owned());
        mirror_seconds = Some(started.elapsed().as_secs_f64());
    }
    if matches!(options.kind, BackupKind::Archive | BackupKind::Both) {
        let started = Instant::now();
        let path = partial_dir.join(format!("{database}.backup"));
        let dump = DumpOptions {
            source: options.source.clone(),
            output: Some(path.clone()),
            dir: None,
            format: ArchiveFormat::Custom,
            compress: None,
            plain_compression: PlainCompression::None,
            schema_only: false,
            data_only: false,
            tables: Vec::new(),
            exclude_tables: Vec::new(),
            exclude_table_data: Vec::new(),
            jobs: None,
            pg_bin: options.pg_bin.clone(),
        };
        // dump() verifies with pg_restore --list before it renames the archive into place.
        archive::dump(&dump)?;
        files.push(describe_file(&path, "archive")?);
        kinds.push("archive".to_owned());
        archive_seconds = Some(started.elapsed().as_secs_f64());
    }
    let manifest = BackupManifest {
        id: id.clone(),
        kinds,
        created: humantime::format_rfc3339_seconds(created).to_string(),
        created_unix: created
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_else(|_| now_unix()),
        source: options.source.redacted(),
        database,
        server_version,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        files,
        tables,
        mirror_seconds,
        archive_seconds,
        verified: problems.is_empty(),
        verify_problems: problems,
    };
    // The manifest last, then the rename: a backup is there whole or not at all.
    write_private_json(&partial_dir.join(MANIFEST), &manifest)?;
    pending.commit()?;
    Ok(manifest)
}

fn describe_file(path: &Path, kind: &str) -> Result<BackupFile> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    let (sha256, size_bytes) = checksum(path)?;
    Ok(BackupFile {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        kind: kind.to_owned(),
        sha256,
        size_bytes,
    })
}

fn compress_file(from: &Path, to: &Path, level: i32) -> Result<()> {
    let context = || format!("compressing {} into {}", from.display(), to.display());
    let input = fs::File::open(from).with_context(context)?;
    let output = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(to)
        .with_context(context)?;
    let mut encoder = zstd::Encoder::new(output, level).with_context(context)?;
    std::io::copy(&mut std::io::BufReader::new(input), &mut encoder).with_context(context)?;
    encoder.finish().and_then(|f| f.sync_all()).with_context(context)
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusBackup {
    pub id: String,
    pub kind: String,
    pub created: String,
    pub age_seconds: i64,
    pub size_bytes: u64,
    pub verified: bool,
    pub pinned: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub dir: String,
    /// Newest first.
    pub backups: Vec<StatusBackup>,
    pub count_mirror: usize,
    pub count_archive: usize,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub oldest: Option<String>,
    pub newest: Option<String>,
    pub newest_age_seconds: Option<i64>,
    pub newest_verified_age_seconds: Option<i64>,
    pub last_failure: Option<LastRun>,
}

pub fn status(dir: &Path) -> Result<Status> {
    let now = now_unix();
    let backups = list(dir)?;
    let mut entries: Vec<StatusBackup> = backups
        .iter()
        .map(|(path, m)| StatusBackup {
            id: m.id.clone(),
            kind: m.kinds.join("+"),
            created: m.created.clone(),
            age_seconds: now - m.created_unix,
            size_bytes: m.files.iter().map(|f| f.size_bytes).sum(),
            verified: m.verified,
            pinned: is_pinned(path),
        })
        .collect();
    entries.reverse();
    let count = |kind: &str| {
        backups
            .iter()
            .filter(|(_, m)| m.kinds.iter().any(|k| k == kind))
            .count()
    };
    Ok(Status {
        dir: dir.display().to_string(),
        count_mirror: count("mirror"),
        count_archive: count("archive"),
        total_bytes: entries.iter().map(|b| b.size_bytes).sum(),
        free_bytes: free_bytes(dir)?,
        oldest: entries.last().map(|b| b.created.clone()),
        newest: entries.first().map(|b| b.created.clone()),
        newest_age_seconds: entries.first().map(|b| b.age_seconds),
        newest_verified_age_seconds: entries.iter().find(|b| b.verified).map(|b| b.age_seconds),
        last_failure: last_run(dir).filter(|run| !run.ok),
        backups: entries,
    })
}

/// Pins or unpins a backup: pinned backups are never pruned.
pub fn set_pinned(dir: &Path, id: &str, pinned: bool) -> Result<()> {
    let backup = dir.join(id);
    // An id is one directory entry of DIR: never a path that leads elsewhere.
    let one_entry = Path::new(id).file_name() == Some(std::ffi::OsStr::new(id));
    if !one_entry || id.starts_with('.') || !backup.join(MANIFEST).is_file() {
        return Err(Error::usage(format!("{} holds no backup {id:?}", dir.display())));
    }
    // A prune running now must not delete the backup between our check and the marker.
    let _lock = lock::Lock::acquire(dir)?;
    let marker = backup.join(PINNED);
    let result = if pinned {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&marker)
            .map(|_| ())
    } else if marker.exists() {
        fs::remove_file(&marker)
    } else {
        Ok(())
    };
    result.with_context(|| format!("{} backup {id}", if pinned { "pinning" } else { "unpinning" }))
}

/// One entry that prune may keep or delete.
#[derive(Debug, Clone)]
struct Prunable {
    candidate: retention::Candidate,
    /// What a deletion removes.
    paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub name: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub kept: Vec<Kept>,
    pub deleted: Vec<Deleted>,
    pub dry_run: bool,
}

/// The `_YYYYmmdd_HHMMSS` timestamp of the backup guide's file names, as Unix seconds (UTC).
/// Parsed on bytes: a file name may hold any characters.
pub fn unmanaged_timestamp(name: &str) -> Option<i64> {
    fn number(digits: &[u8]) -> Option<u32> {
        digits.iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    }
    name.as_bytes().windows(16).find_map(|window| {
        if window[0] != b'_' || window[9] != b'_' {
            return None;
        }
        let (date, time) = (&window[1..9], &window[10..16]);
        let (year, month, day) = (number(&date[..4])?, number(&date[4..6])?, number(&date[6..8])?);
        let (hour, minute, second) = (number(&time[..2])?, number(&time[2..4])?, number(&time[4..6])?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        Some(
            retention::days_from_civil(i64::from(year), month, day) * 86_400
                + i64::from(hour * 3600 + minute * 60 + second),
        )
    })
}

fn prunables(dir: &Path, include_unmanaged: bool) -> Result<Vec<Prunable>> {
    let mut entries: Vec<Prunable> = list(dir)?
        .into_iter()
        .map(|(path, m)| Prunable {
            candidate: retention::Candidate {
                name: m.id.clone(),
                created: m.created_unix,
                pinned: is_pinned(&path),
            },
            paths: vec![path],
        })
        .collect();
    if include_unmanaged {
        for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.')
                || !path.is_file()
                || name.ends_with(".manifest.json")
                || name.ends_with(".partial")
            {
                continue;
            }
            let Some(created) = unmanaged_timestamp(&name) else {
                continue;
            };
            let mut paths = vec![path.clone()];
            let manifest = PathBuf::from(format!("{}.manifest.json", path.display()));
            if manifest.is_file() {
                paths.push(manifest);
            }
            entries.push(Prunable {
                candidate: retention::Candidate {
                    name,
                    created,
                    pinned: false,
                },
                paths,
            });
        }
    }
    Ok(entries)
}

/// Applies the retention policy. With `dry_run` nothing is deleted; the report is the same.
pub fn prune(dir: &Path, policy: Policy, include_unmanaged: bool, dry_run: bool) -> Result<PruneReport> {
    let _lock = if dry_run {
        None
    } else {
        Some(lock::Lock::acquire(dir)?)
    };
    let entries = prunables(dir, include_unmanaged)?;
    let candidates: Vec<retention::Candidate> = entries.iter().map(|e| e.candidate.clone()).collect();
    let decisions = retention::decide(&candidates, policy);
    let mut report = PruneReport {
        kept: Vec::new(),
        deleted: Vec::new(),
        dry_run,
    };
    for (entry, decision) in entries.iter().zip(decisions) {
        if decision.keep {
            report.kept.push(Kept {
                name: decision.name,
                reasons: decision.reasons,
            });
            continue;
        }
        if !dry_run {
            for path in &entry.paths {
                let removed = if path.is_dir() {
                    fs::remove_dir_all(path)
                } else {
                    fs::remove_file(path)
                };
                removed.with_context(|| format!("deleting {}", path.display()))?;
            }
        }
        report.deleted.push(Deleted { name: decision.name });
    }
    report.kept.sort_by(|a, b| b.name.cmp(&a.name));
    report.deleted.sort_by(|a, b| b.name.cmp(&a.name));
    Ok(report)
}

#[derive(Debug, Clone, Serialize)]
pub struct SetVerifyReport {
    pub dir: String,
    pub backups: usize,
    pub problems: Vec<String>,
}

/// Verifies every backup of the set: files against the manifest, then each file's own
/// checks (mirror integrity and row counts, archive structure).
pub fn verify_set(dir: &Path, pg_bin: Option<&Path>) -> Result<SetVerifyReport> {
    let backups = list(dir)?;
    let mut problems = Vec::new();
    for (path, manifest) in &backups {
        for file in &manifest.files {
            let location = path.join(&file.name);
            let name = format!("{}/{}", manifest.id, file.name);
            let mismatches = archive::manifest::compare_checksum(&location, &file.sha256, file.size_bytes);
            let unreadable = mismatches
                .iter()
                .any(|m| !m.starts_with("size is") && !m.starts_with("sha256 is"));
            problems.extend(mismatches.into_iter().map(|m| format!("{name}: {m}")));
            if unreadable {
                continue;
            }
            match archive::verify(&location, pg_bin) {
                Ok(report) => problems.extend(report.problems.into_iter().map(|p| format!("{name}: {p}"))),
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        if let Some(problem) = mirror_counts_problem(path, manifest) {
            problems.push(format!("{}: {problem}", manifest.id));
        }
    }
    Ok(SetVerifyReport {
        dir: dir.display().to_string(),
        backups: backups.len(),
        problems,
    })
}

/// How the mirror's own table counts disagree with the backup manifest's, if they do; a
/// mirror that cannot be opened is a finding too, never a match.
fn mirror_counts_problem(path: &Path, manifest: &BackupManifest) -> Option<String> {
    let file = manifest.files.iter().find(|f| f.kind == "mirror")?;
    let mirror = match crate::mirror::Mirror::open(&path.join(&file.name)) {
        Ok(mirror) => mirror,
        Err(e) => return Some(format!("cannot open the mirror to compare its row counts: {e}")),
    };
    let differs = manifest.tables.iter().any(|expected| {
        mirror
            .table(&expected.table)
            .is_none_or(|t| t.row_count != expected.rows as i64)
    });
    differs.then(|| "the mirror's row counts differ from the backup manifest".to_owned())
}

/// The newest backup holding a mirror, with the mirror's path.
fn newest_mirror(dir: &Path) -> Result<(BackupManifest, PathBuf)> {
    list(dir)?
        .into_iter()
        .rev()
        .find_map(|(path, m)| {
            let file = m.files.iter().find(|f| f.kind == "mirror")?.name.clone();
            Some((m, path.join(file)))
        })
        .ok_or_else(|| Error::usage(format!("{} holds no backup with a mirror", dir.display())))
}

/// Row counts of the newest mirror against the live database, table by table.
pub fn compare_with_live(dir: &Path, source: &ConnectionSpec) -> Result<Vec<String>> {
    let (manifest, path) = newest_mirror(dir)?;
    let mirror = crate::mirror::Mirror::open(&path)?;
    let runtime = crate::pg::runtime()?;
    runtime.block_on(crate::stop::until_stopped(None, async {
        let client = source.connect().await?;
        let mut problems = Vec::new();
        for table in mirror
            .tables
            .iter()
            .filter(|t| t.kind != "query" && t.curation.is_empty())
        {
            let only = if table.kind == "partitioned table" {
                ""
            } else {
                "ONLY "
            };
            let sql = format!(
                "SELECT count(*) FROM {only}{}",
                crate::pg::qualified(&table.schema, &table.name)
            );
            match client.query_one(&sql, &[]).await {
                Ok(row) => {
                    let live: i64 = row.get(0);
                    if live != table.row_count {
                        problems.push(format!(
                            "{}: table {} has {live} rows live, {} in the backup (it may have changed since)",
                            manifest.id,
                            table.display_name(),
                            table.row_count
                        ));
                    }
                }
                Err(e) => problems.push(format!(
                    "{}: table {}: {}",
                    manifest.id,
                    table.display_name(),
                    crate::error::describe_postgres(&e)
                )),
            }
        }
        Ok(problems)
    }))
}

/// The backup guide's "test restores regularly": restores the newest mirror into a scratch
/// database (tables created there) and checks every table's row count.
pub fn drill(dir: &Path, scratch: &ConnectionSpec) -> Result<Vec<String>> {
    let (manifest, path) = newest_mirror(dir)?;
    let options = crate::restore::RestoreOptions {
        from: path,
        target: scratch.clone(),
        filter: crate::config::TableFilter::default(),
        mode: crate::restore::RestoreMode::Replace,
        create: true,
        force: true,
        quiet: true,
    };
    let summary = match crate::restore::restore(&options) {
        Ok(summary) => summary,
        Err(e) => return Ok(vec![format!("{}: the test restore failed: {e}", manifest.id)]),
    };
    Ok(manifest
        .tables
        .iter()
        .filter_map(|expected| {
            // Mirror names drop the `public.` that restore's summary shows.
            let shown = if expected.table.contains('.') {
                expected.table.clone()
            } else {
                format!("public.{}", expected.table)
            };
            let restored = summary.tables.iter().find(|t| t.table == shown);
            match restored {
                Some(t) if t.rows == expected.rows => None,
                Some(t) => Some(format!(
                    "{}: table {} restored {} rows, the backup holds {}",
                    manifest.id, t.table, t.rows, expected.rows
                )),
                None => Some(format!(
                    "{}: table {} was not restored",
                    manifest.id, expected.table
                )),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_that_would_not_fit_is_refused_with_both_sizes() {
        let dir = Path::new("/backups");
        assert!(check_free_space(dir, 10 << 30, 1 << 30, true).is_ok());
        let message = check_free_space(dir, 100 << 20, 2 << 30, false)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("100.00 MiB free") && message.contains("2.00 GiB needed"),
            "{message}"
        );
        assert!(
            message.contains("database's size") && message.contains("/backups"),
            "{message}"
        );
    }

    #[test]
    fn the_guides_file_names_carry_their_time() {
        assert_eq!(
            unmanaged_timestamp("prompts_20240101_020304.backup"),
            Some(retention::days_from_civil(2024, 1, 1) * 86_400 + 2 * 3600 + 3 * 60 + 4)
        );
        assert_eq!(unmanaged_timestamp("notes.txt"), None);
        assert_eq!(unmanaged_timestamp("x_20241301_000000.backup"), None, "month 13");
    }

    #[test]
    fn file_names_with_multibyte_characters_parse_without_panicking() {
        let expected = Some(retention::days_from_civil(2024, 1, 1) * 86_400 + 2 * 3600);
        assert_eq!(unmanaged_timestamp("prompts_é_20240101_020000.backup"), expected);
        assert_eq!(unmanaged_timestamp("ü€_20240101_020000"), expected);
        for name in [
            "notizen-übersicht.txt",
            "€€€€€€€€€€€€€€€€",
            "é_2024é101_020000",
            "\u{fffd}x_\u{fffd}",
        ] {
            assert_eq!(unmanaged_timestamp(name), None, "{name}");
        }
    }
}
