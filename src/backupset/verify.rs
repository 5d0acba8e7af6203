//! `verify --dir`: every backup against its manifest and its own checks; `--source`
//! compares the newest mirror with the live database, `--drill` restores it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{list, BackupFileKind, BackupManifest};
use crate::archive::manifest::ChecksumFinding;
use crate::archive::{self};
use crate::error::{Error, Result};
use crate::pg::catalog::RelationKind;
use crate::pg::ConnectionSpec;

#[derive(Debug, Clone, Serialize)]
pub struct SetVerifyReport {
    pub dir: String,
    pub backups: usize,
    pub problems: Vec<String>,
    /// Encrypted files whose contents were not checked (no identity given): their
    /// checksums were.
    pub not_decrypted: Vec<String>,
}

/// Verifies every backup of the set: files against the manifest, then each file's own
/// checks (mirror integrity and row counts, archive structure).
pub fn verify_set(dir: &Path, pg_bin: Option<&Path>) -> Result<SetVerifyReport> {
    let backups = list(dir)?;
    let mut problems = Vec::new();
    let mut not_decrypted = Vec::new();
    for (path, manifest) in &backups {
        for file in &manifest.files {
            let location = path.join(&file.name);
            let name = format!("{}/{}", manifest.id, file.name);
            match archive::manifest::compare_checksum(&location, &file.sha256, file.size_bytes) {
                ChecksumFinding::Read { differences } => {
                    problems.extend(differences.into_iter().map(|m| format!("{name}: {m}")))
                }
                // Nothing more can be learnt from a file that cannot be read.
                ChecksumFinding::Unreadable(why) => {
                    problems.push(format!("{name}: {why}"));
                    continue;
                }
            }
            if !crate::crypt::have_identity() && crate::crypt::is_encrypted(&location).unwrap_or(false) {
                not_decrypted.push(name);
                continue;
            }
            match archive::verify(&location, pg_bin) {
                Ok(report) => problems.extend(report.problems.into_iter().map(|p| format!("{name}: {p}"))),
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        let mirror_sealed = manifest.files.iter().any(|f| {
            f.kind == BackupFileKind::Mirror
                && !crate::crypt::have_identity()
                && crate::crypt::is_encrypted(&path.join(&f.name)).unwrap_or(false)
        });
        if mirror_sealed {
            continue;
        }
        if let Some(problem) = mirror_counts_problem(path, manifest) {
            problems.push(format!("{}: {problem}", manifest.id));
        }
    }
    Ok(SetVerifyReport {
        dir: dir.display().to_string(),
        backups: backups.len(),
        problems,
        not_decrypted,
    })
}

/// How the mirror's own table counts disagree with the backup manifest's, if they do; a
/// mirror that cannot be opened is a finding too, never a match.
fn mirror_counts_problem(path: &Path, manifest: &BackupManifest) -> Option<String> {
    let file = manifest.files.iter().find(|f| f.kind == BackupFileKind::Mirror)?;
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
            let file = m
                .files
                .iter()
                .find(|f| f.kind == BackupFileKind::Mirror)?
                .name
                .clone();
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
            .filter(|t| t.kind != RelationKind::Query && t.curation.is_empty())
        {
            let only = if table.kind == RelationKind::PartitionedTable {
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
    // A missing identity is the caller's mistake, not a finding about the set.
    if !crate::crypt::have_identity() && crate::crypt::is_encrypted(&path)? {
        return Err(Error::usage(format!(
            "the drill restores {}, which is encrypted: give --identity FILE",
            path.display()
        )));
    }
    let options = crate::restore::RestoreOptions {
        from: path,
        target: scratch.clone(),
        filter: crate::config::TableFilter::default(),
        mode: crate::restore::RestoreMode::Replace,
        create: true,
        force: true,
        disable_triggers: false,
        quiet: true,
    };
    let summary = match crate::restore::restore(&options) {
        Ok(summary) => summary,
        // A stop is not a finding about the backup.
        Err(e) if e.is_stop() => return Err(e),
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
