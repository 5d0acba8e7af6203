//! `status`: what the set holds, how old the newest backup is, the last failure.

use std::path::Path;

use serde::Serialize;

use super::{free_bytes, is_pinned, last_run, list, now_unix, BackupFileKind, LastRun};
use crate::error::Result;

#[derive(Debug, Clone, Serialize)]
pub struct StatusBackup {
    pub id: String,
    pub kind: String,
    pub created: String,
    pub age_seconds: i64,
    pub size_bytes: u64,
    pub verified: bool,
    pub pinned: bool,
    /// The off-site targets holding a complete copy, by name.
    pub offsite: Vec<String>,
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
    /// Each scheduled job's last run that was not skipped (`pgmirror serve`), by job name.
    pub jobs: std::collections::BTreeMap<String, super::history::JobRun>,
    /// Off-site targets whose last copy failed: name, error, time.
    pub offsite_failures: Vec<(String, String, String)>,
}

pub fn status(dir: &Path) -> Result<Status> {
    let now = now_unix();
    let backups = list(dir)?;
    let copies = super::copies::OffsiteRecord::load(dir);
    let mut entries: Vec<StatusBackup> = backups
        .iter()
        .map(|(path, m)| StatusBackup {
            id: m.id.clone(),
            kind: super::kinds_label(&m.kinds),
            created: m.created.clone(),
            age_seconds: now - m.created_unix,
            size_bytes: m.size_bytes(),
            verified: m.verified,
            pinned: is_pinned(path),
            offsite: copies.holders(&m.id),
        })
        .collect();
    entries.reverse();
    let count = |kind: BackupFileKind| backups.iter().filter(|(_, m)| m.kinds.contains(&kind)).count();
    Ok(Status {
        dir: dir.display().to_string(),
        count_mirror: count(BackupFileKind::Mirror),
        count_archive: count(BackupFileKind::Archive),
        total_bytes: entries.iter().map(|b| b.size_bytes).sum(),
        free_bytes: free_bytes(dir)?,
        oldest: entries.last().map(|b| b.created.clone()),
        newest: entries.first().map(|b| b.created.clone()),
        newest_age_seconds: entries.first().map(|b| b.age_seconds),
        newest_verified_age_seconds: super::newest_verified_age_seconds(&backups, now),
        last_failure: last_run(dir).filter(|run| !run.ok),
        offsite_failures: copies
            .targets
            .iter()
            .filter_map(|(name, t)| {
                Some((
                    name.clone(),
                    t.last_error.clone()?,
                    t.last_error_time.clone().unwrap_or_default(),
                ))
            })
            .collect(),
        jobs: super::history::JobHistory::load(dir)
            .jobs
            .into_iter()
            .filter_map(|(job, runs)| {
                Some((
                    job,
                    runs.into_iter()
                        .rev()
                        .find(|r| r.outcome != super::history::Outcome::Skipped)?,
                ))
            })
            .collect(),
        backups: entries,
    })
}
