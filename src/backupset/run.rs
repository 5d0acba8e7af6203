//! `backup`: one run that adds a complete, verified backup to the set, or nothing.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{
    ensure_dir, free_bytes, list, now_unix, BackupFile, BackupFileKind, BackupKind, BackupManifest, LastRun,
    TableCount, LAST_RUN, MANIFEST,
};
use crate::archive::{self, manifest::checksum, ArchiveFormat, DumpOptions, PlainCompression};
use crate::compress::write_private_json;
use crate::config::ExportOptions;
use crate::error::{Context, Error, Result};
use crate::pg::ConnectionSpec;

#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub source: ConnectionSpec,
    pub dir: PathBuf,
    pub kind: BackupKind,
    /// zstd level for the mirror file; `None` leaves it uncompressed.
    pub zstd_level: Option<i32>,
    pub jobs: usize,
    pub pg_bin: Option<PathBuf>,
    /// Encrypt every data file to these keys before the backup is published.
    pub recipients: Option<crate::crypt::Recipients>,
}

/// `YYYYmmddTHHMMSSZ`: sorts as it was made, and names its time.
fn backup_id(now: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(now).to_string();
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    format!("{}T{}Z", &digits[..8], &digits[8..14])
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

/// Adds one backup to the set; the outcome is recorded for `status` either way.
pub fn backup(options: &BackupOptions) -> Result<BackupManifest> {
    ensure_dir(&options.dir)?;
    let _lock = crate::lock::Lock::acquire(&options.dir)?;
    remove_abandoned_partials(&options.dir);
    let outcome = run_backup(options);
    record_run(&options.dir, &outcome);
    outcome
}

/// Removes what a backup killed outright (SIGKILL, power loss) left: its partial directory
/// may hold a plaintext mirror of an encrypted set. Safe under the set's lock, which every
/// writer of a partial directory holds.
fn remove_abandoned_partials(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && name.starts_with('.') && name.ends_with(".partial") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

async fn database_identity(source: &ConnectionSpec) -> Result<(String, String, i64)> {
    let client = source.connect().await?;
    let row = client
        .query_one(
            "SELECT current_database()::text AS database, current_setting('server_version') AS version, \
             pg_database_size(current_database()) AS size_bytes",
            &[],
        )
        .await
        .context("reading the database's name and size")?;
    let q = "the database's name and size";
    Ok((
        crate::pg::field(&row, q, "database")?,
        crate::pg::field(&row, q, "version")?,
        crate::pg::field(&row, q, "size_bytes")?,
    ))
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
        .map(|(_, m)| m.size_bytes())
        .unwrap_or(0);
    let factor = if options.kind == BackupKind::Both { 2 } else { 1 };
    let estimate = if previous > 0 {
        previous
    } else {
        database_size.max(0) as u64 * factor
    };
    check_free_space(&options.dir, free_bytes(&options.dir)?, estimate, previous > 0)?;
    let (created, id, final_dir) = fresh_backup_id(&options.dir)?;
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
        let file = seal(file, options.recipients.as_ref())?;
        files.push(describe_file(&file, BackupFileKind::Mirror)?);
        kinds.push(BackupFileKind::Mirror);
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
        let path = seal(path, options.recipients.as_ref())?;
        files.push(describe_file(&path, BackupFileKind::Archive)?);
        kinds.push(BackupFileKind::Archive);
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

/// An id no backup of the set has: ids name their second, so a backup following
/// another within the same second (a scheduled job after a one-shot run) waits for the next.
fn fresh_backup_id(dir: &Path) -> Result<(SystemTime, String, PathBuf)> {
    for _ in 0..3 {
        let created = SystemTime::now();
        let id = backup_id(created);
        let final_dir = dir.join(&id);
        if !final_dir.exists() && !dir.join(format!(".{id}.partial")).exists() {
            return Ok((created, id, final_dir));
        }
        let into_second = created
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_nanos(
            1_000_000_000 - u64::from(into_second),
        ));
    }
    Err(Error::usage(format!(
        "backups in {} keep taking the same id; is the clock stepping back?",
        dir.display()
    )))
}

/// With recipients, the file encrypted as `NAME.age` and its plaintext removed (it existed
/// only inside the 0700 partial directory); else the file as it is.
fn seal(file: PathBuf, recipients: Option<&crate::crypt::Recipients>) -> Result<PathBuf> {
    let Some(recipients) = recipients else {
        return Ok(file);
    };
    let mut name = file.as_os_str().to_owned();
    name.push(".age");
    let sealed = PathBuf::from(name);
    crate::crypt::encrypt_file(&file, &sealed, recipients)?;
    fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
    Ok(sealed)
}

fn describe_file(path: &Path, kind: BackupFileKind) -> Result<BackupFile> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    let (sha256, size_bytes) = checksum(path)?;
    Ok(BackupFile {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        kind,
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
}
