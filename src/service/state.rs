//! What the service knows while it runs: the config in force, the job record, counters,
//! what is running and when each job runs next. Health and metrics are read from it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::config::{Alerts, ServiceConfig};
use crate::backupset::history::{JobHistory, JobRun, Outcome};
use crate::backupset::{self, BackupManifest};

pub struct State {
    pub config: ServiceConfig,
    pub alerts: Arc<Alerts>,
    pub history: JobHistory,
    /// Runs since the service started, by job and outcome.
    pub counts: BTreeMap<(String, Outcome), u64>,
    pub running: BTreeSet<String>,
    pub next_runs: BTreeMap<String, DateTime<Utc>>,
    pub started: DateTime<Utc>,
    /// Set while a stale alert has been sent and no fresh backup has appeared since.
    pub stale_alerted: bool,
}

/// What the set holds now, read from disk for each report (another process may add or
/// prune backups).
pub struct SetView {
    pub backups: Vec<(std::path::PathBuf, BackupManifest)>,
    pub error: Option<String>,
}

impl SetView {
    pub fn read(dir: &std::path::Path) -> SetView {
        match backupset::list(dir) {
            Ok(backups) => SetView { backups, error: None },
            // Before the first backup creates it: an empty set, not a problem.
            Err(_) if !dir.exists() => SetView {
                backups: Vec::new(),
                error: None,
            },
            Err(error) => SetView {
                backups: Vec::new(),
                error: Some(error.to_string()),
            },
        }
    }

    /// The newest verified backup's age, as `status --max-age` judges it.
    pub fn newest_age_seconds(&self, now: DateTime<Utc>) -> Option<i64> {
        backupset::newest_verified_age_seconds(&self.backups, now.timestamp())
    }

    pub fn total_bytes(&self) -> u64 {
        self.backups.iter().map(|(_, m)| m.size_bytes()).sum()
    }
}

impl State {
    pub fn new(config: ServiceConfig, now: DateTime<Utc>) -> State {
        let history = JobHistory::load(&config.dir);
        State {
            alerts: Arc::new(config.alerts.clone()),
            config,
            history,
            counts: BTreeMap::new(),
            running: BTreeSet::new(),
            next_runs: BTreeMap::new(),
            started: now,
            stale_alerted: false,
        }
    }

    /// Counts and records a run in memory; the caller saves the record (see
    /// `Service::record`), outside this lock.
    pub fn record(&mut self, run: JobRun) {
        *self.counts.entry((run.job.clone(), run.outcome)).or_default() += 1;
        self.history.record(run);
    }

    /// Why the newest backup is too old, if it is: with no backup at all, the service's own
    /// age counts (a schedule that never fires is a failure too).
    pub fn staleness(&self, set: &SetView, now: DateTime<Utc>) -> Option<String> {
        let max_age = self.config.max_age?;
        if set.error.is_some() {
            // An unreadable set is reported as such, not as "no backup".
            return None;
        }
        let limit = max_age.as_secs() as i64;
        match set.newest_age_seconds(now) {
            Some(age) if age > limit => Some(format!(
                "the newest verified backup is {} old, older than max_age {}",
                human_seconds(age),
                humantime::format_duration(max_age)
            )),
            None if (now - self.started).num_seconds() > limit => Some(format!(
                "no verified backup in the set after {} of service (max_age {})",
                human_seconds((now - self.started).num_seconds()),
                humantime::format_duration(max_age)
            )),
            _ => None,
        }
    }

    /// Why the service is unhealthy: a job whose last run failed, a stale set. Empty when healthy.
    pub fn health_problems(&self, set: &SetView, now: DateTime<Utc>) -> Vec<String> {
        let mut problems: Vec<String> = self
            .config
            .jobs
            .iter()
            .filter_map(|job| {
                let run = self.history.last_completed(&job.name)?;
                (run.outcome == Outcome::Failure).then(|| {
                    format!(
                        "job {} failed at {}: {}",
                        job.name,
                        run.started,
                        run.error.as_deref().unwrap_or("no error recorded")
                    )
                })
            })
            .collect();
        problems.extend(self.staleness(set, now));
        problems.extend(set.error.clone());
        problems
    }

    /// `/metrics`, in the Prometheus text exposition (OpenMetrics) format.
    pub fn metrics(&self, set: &SetView, now: DateTime<Utc>) -> String {
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct RunLabels {
            job: String,
            outcome: String,
        }
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct JobLabels {
            job: String,
        }
        let mut registry = Registry::default();
        let runs = Family::<RunLabels, Counter>::default();
        let last_success = Family::<JobLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let duration = Family::<JobLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let newest_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let set_bytes = Gauge::<i64>::default();
        let running = Family::<JobLabels, Gauge>::default();
        for job in &self.config.jobs {
            let labels = JobLabels {
                job: job.name.clone(),
            };
            for outcome in Outcome::ALL {
                let count = self
                    .counts
                    .get(&(job.name.clone(), outcome))
                    .copied()
                    .unwrap_or(0);
                runs.get_or_create(&RunLabels {
                    job: job.name.clone(),
                    outcome: outcome.name().into(),
                })
                .inc_by(count);
            }
            if let Some(run) = self.history.last_success(&job.name) {
                last_success
                    .get_or_create(&labels)
                    .set(run.started_unix as f64 + run.duration_seconds);
            }
            if let Some(run) = self.history.last_completed(&job.name) {
                duration.get_or_create(&labels).set(run.duration_seconds);
            }
            running
                .get_or_create(&labels)
                .set(i64::from(self.running.contains(&job.name)));
        }
        registry.register(
            "pgmirror_job_runs",
            "Job runs since the service started, by outcome",
            runs,
        );
        registry.register(
            "pgmirror_job_last_success_timestamp_seconds",
            "When the job's last successful run ended (Unix time)",
            last_success,
        );
        registry.register(
            "pgmirror_job_duration_seconds",
            "How long the job's last run took",
            duration,
        );
        registry.register("pgmirror_job_running", "1 while the job runs", running);
        if let Some(age) = set.newest_age_seconds(now) {
            newest_age.set(age as f64);
            registry.register(
                "pgmirror_backup_newest_age_seconds",
                "Age of the newest verified backup",
                newest_age,
            );
        }
        set_bytes.set(i64::try_from(set.total_bytes()).unwrap_or(i64::MAX));
        registry.register(
            "pgmirror_backup_set_bytes",
            "Bytes of all backups in the set",
            set_bytes,
        );
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            text = "# metrics could not be encoded\n".into();
        }
        text
    }
}

/// "3h 12m", "2d 4h": the two largest units, for messages.
pub fn human_seconds(seconds: i64) -> String {
    let text = humantime::format_duration(std::time::Duration::from_secs(seconds.max(0) as u64)).to_string();
    text.split(' ').take(2).collect::<Vec<_>>().join(" ")
}
