//! The record of scheduled job runs (`pgmirror serve`), kept in the set's directory so
//! `status`, the status page and a restarted service all read the same outcomes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::compress::write_private_json;
use crate::error::Result;

const HISTORY: &str = ".pgmirror-jobs.json";
/// Runs kept per job: enough for the status page's charts and a week of hourly runs.
const KEPT_PER_JOB: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    /// Due while the previous run still went.
    Skipped,
    /// Stopped by the service's shutdown after its grace period.
    Cancelled,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Skipped => "skipped",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// Whether the job's work ran to an end: skips and shutdown cancellations did not, and
    /// say nothing about whether the job works.
    pub fn completed(self) -> bool {
        matches!(self, Outcome::Success | Outcome::Failure)
    }

    pub const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Skipped,
        Outcome::Cancelled,
    ];
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRun {
    pub job: String,
    /// What the job does: backup, prune, verify, sync or sql.
    pub run: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub started_unix: i64,
    pub duration_seconds: f64,
    pub outcome: Outcome,
    pub error: Option<String>,
    /// The backup a backup job added.
    pub backup: Option<String>,
    pub size_bytes: Option<u64>,
    /// A one-line summary: rows affected, backups deleted, transactions applied...
    pub detail: Option<String>,
}

/// Each job's runs, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobHistory {
    pub jobs: BTreeMap<String, Vec<JobRun>>,
}

impl JobHistory {
    /// The recorded history; empty when there is none or it cannot be read (a record is
    /// not worth refusing to run backups for).
    pub fn load(dir: &Path) -> JobHistory {
        super::read_record(dir, HISTORY).unwrap_or_default()
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        write_private_json(&dir.join(HISTORY), self)
    }

    /// Adds a run; past the limit the oldest skip goes first, so a job that is skipped
    /// again and again keeps its real outcomes.
    pub fn record(&mut self, run: JobRun) {
        let runs = self.jobs.entry(run.job.clone()).or_default();
        runs.push(run);
        while runs.len() > KEPT_PER_JOB {
            let oldest = runs
                .iter()
                .position(|r| r.outcome == Outcome::Skipped)
                .unwrap_or(0);
            runs.remove(oldest);
        }
    }

    /// The job's last run that ran to an end (see [`Outcome::completed`]).
    pub fn last_completed(&self, job: &str) -> Option<&JobRun> {
        self.jobs
            .get(job)?
            .iter()
            .rev()
            .find(|run| run.outcome.completed())
    }

    pub fn last_success(&self, job: &str) -> Option<&JobRun> {
        self.jobs
            .get(job)?
            .iter()
            .rev()
            .find(|run| run.outcome == Outcome::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcome: Outcome, at: i64) -> JobRun {
        JobRun {
            job: "j".into(),
            run: "backup".into(),
            started: at.to_string(),
            started_unix: at,
            duration_seconds: 1.0,
            outcome,
            error: None,
            backup: None,
            size_bytes: None,
            detail: None,
        }
    }

    #[test]
    fn skips_never_push_out_the_last_real_outcome() {
        let mut history = JobHistory::default();
        history.record(run(Outcome::Failure, 0));
        for at in 1..=(KEPT_PER_JOB as i64 * 2) {
            history.record(run(Outcome::Skipped, at));
        }
        history.record(run(Outcome::Cancelled, 10_000));
        assert_eq!(history.jobs["j"].len(), KEPT_PER_JOB);
        let last = history.last_completed("j").unwrap();
        assert_eq!((last.outcome, last.started_unix), (Outcome::Failure, 0));
        assert!(history.last_success("j").is_none());
    }
}
