//! `prune` and pins: the retention policy applied to the set (and, with
//! --include-unmanaged, to the backup guide's own timestamped files).

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{is_pinned, list, retention, Policy, MANIFEST, PINNED};
use crate::error::{Context, Error, Result};

/// Pins or unpins a backup: pinned backups are never pruned.
pub fn set_pinned(dir: &Path, id: &str, pinned: bool) -> Result<()> {
    let backup = dir.join(id);
    // An id is one directory entry of DIR: never a path that leads elsewhere.
    let one_entry = Path::new(id).file_name() == Some(std::ffi::OsStr::new(id));
    if !one_entry || id.starts_with('.') || !backup.join(MANIFEST).is_file() {
        return Err(Error::usage(format!("{} holds no backup {id:?}", dir.display())));
    }
    // A prune running now must not delete the backup between our check and the marker.
    let _lock = crate::lock::Lock::acquire(dir)?;
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
        Some(crate::lock::Lock::acquire(dir)?)
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

#[cfg(test)]
mod tests {
    use super::*;

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
