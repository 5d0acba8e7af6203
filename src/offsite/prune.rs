//! The set's retention policy applied to what a target holds: the same rule over the
//! target's own backups, a backup pinned in the local set kept there too.

use std::path::Path;

use serde::Serialize;

use super::{OffsiteConfig, Target};
use crate::backupset::copies::OffsiteRecord;
use crate::backupset::{self, retention, Kept, Policy};
use crate::error::Result;

/// What prune did (or, in a dry run, would do) on one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetPrune {
    pub target: String,
    pub kept: Vec<Kept>,
    pub deleted: Vec<String>,
    pub error: Option<String>,
}

/// Prunes every target; a target that fails is reported, and the others are still pruned.
pub fn prune(
    dir: &Path,
    targets: &[OffsiteConfig],
    policy: Policy,
    dry_run: bool,
) -> Result<Vec<TargetPrune>> {
    let runtime = crate::pg::runtime()?;
    let mut record = OffsiteRecord::load(dir);
    let mut reports = Vec::new();
    for config in targets {
        let mut report = TargetPrune {
            target: config.name.clone(),
            kept: Vec::new(),
            deleted: Vec::new(),
            error: None,
        };
        let outcome = Target::open(config).and_then(|target| {
            runtime.block_on(crate::stop::until_stopped(None, async {
                let remote = target.remote_backups().await?;
                let candidates: Vec<retention::Candidate> = remote
                    .iter()
                    .map(|m| retention::Candidate {
                        name: m.id.clone(),
                        created: m.created_unix,
                        pinned: backupset::is_pinned(&dir.join(&m.id)),
                    })
                    .collect();
                for decision in retention::decide(&candidates, policy) {
                    if decision.keep {
                        report.kept.push(Kept {
                            name: decision.name,
                            reasons: decision.reasons,
                        });
                        continue;
                    }
                    if !dry_run {
                        target.delete_backup(&decision.name).await?;
                    }
                    report.deleted.push(decision.name);
                }
                Ok(())
            }))
        });
        if let Err(error) = outcome {
            report.error = Some(error.to_string());
        }
        if !dry_run {
            if let Some(entry) = record.targets.get_mut(&config.name) {
                entry.complete.retain(|id| !report.deleted.contains(id));
            }
        }
        report.kept.sort_by(|a, b| b.name.cmp(&a.name));
        report.deleted.sort_by(|a, b| b.cmp(a));
        reports.push(report);
    }
    if !dry_run {
        record.save(dir)?;
    }
    Ok(reports)
}
