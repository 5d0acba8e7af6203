//! `pgmirror serve`: the one-shot commands (backup, prune, verify, sync, a SQL statement)
//! run on cron schedules, with alerts, health and metrics.
//!
//! One scheduler loop (this file) decides what is due; each run gets a thread of its own
//! (run.rs) and calls the same library code as the one-shot command. A job never overlaps
//! itself (a run due while the previous one goes is skipped and recorded), and jobs
//! writing the same backup directory wait for each other. Outcomes go to the set's job
//! record (backupset::history), the log (tracing), the alert thread (alert.rs) and the
//! HTTP endpoints (http.rs, page.rs), which read state.rs.
//!
//! Shutdown: SIGTERM/SIGINT stop the scheduling; running jobs get the grace period, then
//! the process-wide stop (crate::stop) cancels them, and their partial files are removed
//! as any stopped run removes them. SIGHUP reloads the config; an invalid one is logged and
//! the one in force kept.

mod alert;
pub mod config;
mod http;
mod page;
mod run;
mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

pub use alert::redact_url;
use alert::{Alert, Alerter};
pub use config::{AlertConfig, JobConfig, ServiceConfig};
use config::{AlertEvent, Job};
use state::{SetView, State};

use crate::backupset::history::{JobRun, Outcome};
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: PathBuf,
    pub listen: Option<SocketAddr>,
    /// How long running jobs may go on after SIGTERM before they are cancelled.
    pub grace: Duration,
}

/// How often the scheduler looks at the clock, the signals and the set's age.
const TICK: Duration = Duration::from_millis(100);
const STALE_CHECK_EVERY: Duration = Duration::from_secs(5);
/// A longer --grace is taken as this (an Instant cannot be pushed arbitrarily far).
const MAX_GRACE: Duration = Duration::from_secs(86_400);
/// How long the alerts of the last runs may take to go out at shutdown.
const ALERT_FLUSH: Duration = Duration::from_secs(5);

/// What the scheduler, the job threads and the HTTP thread share.
pub struct Service {
    state: Mutex<State>,
    alerter: Alerter,
    /// One lock per backup directory that jobs write.
    dir_locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    /// Held while the job record is written.
    saving: Mutex<()>,
    shutting_down: AtomicBool,
    finished: AtomicBool,
    host: String,
}

impl Service {
    fn state(&self) -> MutexGuard<'_, State> {
        // A job thread that panicked while holding the lock left consistent data: each
        // update is one insert or one assignment.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn dir(&self) -> PathBuf {
        self.state().config.dir.clone()
    }

    fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst) || crate::stop::shutdown_requested()
    }

    fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    fn dir_lock(&self, dir: &Path) -> Arc<Mutex<()>> {
        let mut locks = self.dir_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(dir.to_path_buf()).or_default().clone()
    }

    /// Records a run (after `also` updates the state under the same lock) and saves the
    /// record outside the state's lock, one save at a time so the file never goes back
    /// to an older record.
    fn record(&self, run: JobRun, also: impl FnOnce(&mut State)) {
        let _saving = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        let (history, dir) = {
            let mut state = self.state();
            also(&mut state);
            state.record(run);
            (state.history.clone(), state.config.dir.clone())
        };
        if let Err(error) = history.save(&dir) {
            tracing::warn!(%error, "the job record could not be saved");
        }
    }

    fn alert(&self, event: AlertEvent, run: Option<&JobRun>, message: String) {
        let alerts = self.state().alerts.clone();
        let alert = Alert {
            event,
            job: run.map(|r| r.job.clone()),
            outcome: run.map(|r| r.outcome.name().to_owned()),
            error: run.and_then(|r| r.error.clone()),
            started: run.map(|r| r.started.clone()),
            duration_seconds: run.map(|r| r.duration_seconds),
            backup_id: run.and_then(|r| r.backup.clone()),
            size_bytes: run.and_then(|r| r.size_bytes),
            host: self.host.clone(),
            message,
        };
        self.alerter.send(&alerts, alert);
    }
}

/// One line per job for `--check`: its schedule and next run times.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobPlan {
    pub name: String,
    pub run: String,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub at_start: bool,
    pub catch_up: bool,
    /// RFC 3339 in the job's zone.
    pub next_runs: Vec<String>,
}

/// `--check`: the config validated, each job's next `count` run times after `now`.
pub fn check(config: &ServiceConfig, now: DateTime<Utc>, count: usize) -> Vec<JobPlan> {
    config
        .jobs
        .iter()
        .map(|job| JobPlan {
            name: job.name.clone(),
            run: job.kind.name().to_owned(),
            schedule: job.schedule.as_ref().map(|s| s.pattern.clone()),
            timezone: job.schedule.as_ref().map(|s| s.timezone.name().to_owned()),
            at_start: job.at_start,
            catch_up: job.catch_up,
            next_runs: job
                .schedule
                .as_ref()
                .map(|s| s.upcoming(now, count).iter().map(|t| t.to_rfc3339()).collect())
                .unwrap_or_default(),
        })
        .collect()
}

/// Whether a `catch_up` job missed its last scheduled time: no run recorded since then.
fn missed_last_run(job: &Job, last_started_unix: Option<i64>, now: DateTime<Utc>) -> bool {
    let Some(previous) = job.schedule.as_ref().and_then(|s| s.previous(now)) else {
        return false;
    };
    last_started_unix.is_none_or(|started| started < previous.timestamp())
}

/// Runs the service until SIGTERM/SIGINT. The caller installs
/// [`crate::stop::install_service_signal_handlers`] and a tracing subscriber.
pub fn serve(options: &ServeOptions) -> Result<()> {
    let config = ServiceConfig::load(&options.config)?;
    crate::backupset::ensure_dir(&config.dir)?;
    let now = Utc::now();
    let (alerter, alert_thread) = Alerter::start();
    let service = Arc::new(Service {
        state: Mutex::new(State::new(config, now)),
        alerter,
        dir_locks: Mutex::default(),
        saving: Mutex::default(),
        shutting_down: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        host: alert::host_name(),
    });
    let http = options
        .listen
        .map(|address| http::start(address, service.clone()))
        .transpose()?;
    let mut threads = Vec::new();
    let first: Vec<Job> = {
        let mut state = service.state();
        schedule_all(&mut state, now);
        let jobs = state.config.jobs.clone();
        tracing::info!(config = %options.config.display(), jobs = jobs.len(), listen = ?options.listen, "service started");
        jobs.into_iter()
            .filter(|job| {
                let last = state.history.last_completed(&job.name).map(|r| r.started_unix);
                job.at_start || (job.catch_up && missed_last_run(job, last, now))
            })
            .collect()
    };
    for job in first {
        threads.extend(launch(&service, job));
    }
    let mut last_stale_check = Instant::now() - STALE_CHECK_EVERY;
    while !service.shutting_down() {
        let now = Utc::now();
        // Bound first: a guard in the loop's head would live through the loop.
        let due = due_jobs(&mut service.state(), now);
        for job in due {
            threads.extend(launch(&service, job));
        }
        // After the due runs started: a reload never drops a run whose time has come.
        if crate::stop::take_reload_request() {
            reload(&service, &options.config);
        }
        if last_stale_check.elapsed() >= STALE_CHECK_EVERY {
            check_staleness(&service, now);
            last_stale_check = Instant::now();
        }
        threads.retain(|t: &std::thread::JoinHandle<()>| !t.is_finished());
        std::thread::sleep(TICK);
    }
    service.shutting_down.store(true, Ordering::SeqCst);
    shut_down(&service, threads, options.grace);
    service.finished.store(true, Ordering::SeqCst);
    if let Some(http) = http {
        let _ = http.join();
    }
    drop(service);
    // Alerts queued by the last runs go out, unless their receiver hangs.
    let deadline = Instant::now() + ALERT_FLUSH;
    while !alert_thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(TICK);
    }
    tracing::info!("service stopped");
    Ok(())
}

fn schedule_all(state: &mut State, now: DateTime<Utc>) {
    state.next_runs = state
        .config
        .jobs
        .iter()
        .filter_map(|job| {
            Some((
                job.name.clone(),
                job.schedule.as_ref()?.next_after(now)?.with_timezone(&Utc),
            ))
        })
        .collect();
}

/// The jobs whose time has come, each rescheduled after now (a clock that jumped past
/// several run times runs the job once).
fn due_jobs(state: &mut State, now: DateTime<Utc>) -> Vec<Job> {
    let mut due = Vec::new();
    for job in &state.config.jobs {
        let Some(at) = state.next_runs.get(&job.name) else {
            continue;
        };
        if *at > now {
            continue;
        }
        match job.schedule.as_ref().and_then(|s| s.next_after(now)) {
            Some(next) => state.next_runs.insert(job.name.clone(), next.with_timezone(&Utc)),
            None => state.next_runs.remove(&job.name),
        };
        due.push(job.clone());
    }
    due
}

/// The next run times of jobs whose name and schedule a reload leaves as they were.
fn unchanged_next_runs(state: &State, new: &ServiceConfig) -> Vec<(String, DateTime<Utc>)> {
    let same = |a: &Job, b: &Job| match (&a.schedule, &b.schedule) {
        (Some(a), Some(b)) => a.pattern == b.pattern && a.timezone == b.timezone,
        _ => false,
    };
    new.jobs
        .iter()
        .filter(|job| {
            state
                .config
                .jobs
                .iter()
                .any(|old| old.name == job.name && same(old, job))
        })
        .filter_map(|job| Some((job.name.clone(), *state.next_runs.get(&job.name)?)))
        .collect()
}

fn reload(service: &Service, path: &Path) {
    match ServiceConfig::load(path) {
        Ok(config) => {
            let mut state = service.state();
            if config.dir != state.config.dir {
                state.history = crate::backupset::history::JobHistory::load(&config.dir);
            }
            state.alerts = Arc::new(config.alerts.clone());
            let kept = unchanged_next_runs(&state, &config);
            state.config = config;
            schedule_all(&mut state, Utc::now());
            state.next_runs.extend(kept);
            tracing::info!(config = %path.display(), jobs = state.config.jobs.len(), "config reloaded");
        }
        Err(error) => {
            tracing::error!(config = %path.display(), %error, "reload failed; keeping the config in force");
        }
    }
}

fn check_staleness(service: &Service, now: DateTime<Utc>) {
    let set = SetView::read(&service.dir());
    let reason = {
        let mut state = service.state();
        let reason = state.staleness(&set, now);
        let first = reason.is_some() && !state.stale_alerted;
        // An unreadable set says nothing about staleness: the spell goes on.
        if set.error.is_none() {
            state.stale_alerted = reason.is_some();
        }
        reason.filter(|_| first)
    };
    if let Some(reason) = reason {
        tracing::warn!(reason = %reason, "backups are stale");
        service.alert(AlertEvent::Stale, None, reason);
    }
}

/// Starts a run of `job` on its own thread, or records a skip when it is still running.
fn launch(service: &Arc<Service>, job: Job) -> Option<std::thread::JoinHandle<()>> {
    let started = Utc::now();
    {
        let mut state = service.state();
        if state.running.contains(&job.name) {
            drop(state);
            tracing::warn!(job = %job.name, run = job.kind.name(), outcome = "skipped", "skipped: the previous run is still going");
            service.record(not_run(&job, started, "the previous run was still going"), |_| {});
            return None;
        }
        state.running.insert(job.name.clone());
    }
    let worker = service.clone();
    let name = job.name.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("pgmirror-job-{}", job.name))
        .spawn(move || {
            // Whatever happens in the run, the job must not stay "running" for ever.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_job(&worker, &job)));
            worker.state().running.remove(&job.name);
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(error) => {
            tracing::error!(job = %name, %error, "could not start a thread for the job");
            service.state().running.remove(&name);
            None
        }
    }
}

/// The record of a run that did not happen.
fn not_run(job: &Job, started: DateTime<Utc>, why: &str) -> JobRun {
    JobRun {
        job: job.name.clone(),
        run: job.kind.name().into(),
        started: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        started_unix: started.timestamp(),
        duration_seconds: 0.0,
        outcome: Outcome::Skipped,
        error: Some(why.into()),
        backup: None,
        size_bytes: None,
        detail: None,
    }
}

fn run_job(service: &Service, job: &Job) {
    let lock = job.kind.set_dir().map(|dir| service.dir_lock(dir));
    // Waits for another job on the same directory (never two at once); the run starts
    // when it has the directory.
    let _using_dir = lock.as_ref().map(|lock| match lock.try_lock() {
        Ok(guard) => guard,
        // A job that panicked holding it left nothing half-done in memory.
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => {
            tracing::info!(job = %job.name, run = job.kind.name(), "waiting for another job on the backup directory");
            lock.lock().unwrap_or_else(|p| p.into_inner())
        }
    });
    let started = Utc::now();
    let clock = Instant::now();
    if service.shutting_down() {
        // Queued behind another job when the shutdown came: start nothing new.
        tracing::warn!(job = %job.name, run = job.kind.name(), outcome = "skipped", "skipped: the service is shutting down");
        service.record(not_run(job, started, "the service was shutting down"), |state| {
            state.running.remove(&job.name);
        });
        return;
    }
    tracing::info!(job = %job.name, run = job.kind.name(), "job started");
    let outcome = run::run_with_retries(job, &|| service.shutting_down());
    let duration_seconds = clock.elapsed().as_secs_f64();
    let (outcome_kind, error, done) = match outcome {
        Ok(done) => (Outcome::Success, None, done),
        // Stopped by the shutdown (after the grace period, or a retry given up for it).
        Err(error) if error.is_stop() && (crate::stop::stop_requested() || service.shutting_down()) => {
            (Outcome::Cancelled, Some(error.to_string()), run::Done::default())
        }
        Err(error) => (Outcome::Failure, Some(error.to_string()), run::Done::default()),
    };
    let offsite_failures = done.offsite_failures;
    let record = JobRun {
        job: job.name.clone(),
        run: job.kind.name().into(),
        started: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        started_unix: started.timestamp(),
        duration_seconds,
        outcome: outcome_kind,
        error,
        backup: done.backup,
        size_bytes: done.size_bytes,
        detail: Some(done.detail).filter(|d| !d.is_empty()),
    };
    match &record.error {
        None => {
            tracing::info!(job = %job.name, run = job.kind.name(), outcome = outcome_kind.name(), duration_seconds, size_bytes = record.size_bytes, backup = record.backup.as_deref(), detail = record.detail.as_deref(), "job finished")
        }
        Some(error) => {
            tracing::error!(job = %job.name, run = job.kind.name(), outcome = outcome_kind.name(), duration_seconds, error = %error, "job failed")
        }
    }
    let mut previous = None;
    service.record(record.clone(), |state| {
        previous = state.history.last_completed(&job.name).map(|r| r.outcome);
        state.running.remove(&job.name);
    });
    let recovered = outcome_kind == Outcome::Success && previous == Some(Outcome::Failure);
    match outcome_kind {
        Outcome::Failure => service.alert(
            AlertEvent::Failure,
            Some(&record),
            format!(
                "{} job {} failed: {}",
                job.kind.name(),
                job.name,
                record.error.as_deref().unwrap_or("")
            ),
        ),
        Outcome::Success if recovered => service.alert(
            AlertEvent::Recovery,
            Some(&record),
            format!("{} job {} succeeded again", job.kind.name(), job.name),
        ),
        Outcome::Success => service.alert(
            AlertEvent::Success,
            Some(&record),
            format!("{} job {} succeeded", job.kind.name(), job.name),
        ),
        // A shutdown's cancellation is in the log and the record; a missed backup shows
        // as staleness, not as a page on every deploy.
        Outcome::Cancelled | Outcome::Skipped => {}
    }
    if !offsite_failures.is_empty() {
        let failures = offsite_failures.join("; ");
        tracing::warn!(job = %job.name, backup = record.backup.as_deref(), failures = %failures, "off-site copy failed; the next backup or `pgmirror offsite push` completes it");
        let flagged = JobRun {
            error: Some(failures.clone()),
            ..record.clone()
        };
        service.alert(
            AlertEvent::Offsite,
            Some(&flagged),
            format!(
                "backup job {} made backup {} but could not copy it off-site: {failures}",
                job.name,
                record.backup.as_deref().unwrap_or("")
            ),
        );
    }
}

/// Waits up to `grace` for running jobs, then stops them through the process-wide stop
/// and waits for them to clean up.
fn shut_down(service: &Service, threads: Vec<std::thread::JoinHandle<()>>, grace: Duration) {
    let running = service.state().running.len();
    tracing::info!(
        running,
        grace_seconds = grace.as_secs_f64(),
        "shutting down: no new runs"
    );
    let deadline = Instant::now() + grace.min(MAX_GRACE);
    while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(TICK);
    }
    if threads.iter().any(|t| !t.is_finished()) {
        tracing::warn!("grace period over: cancelling the running jobs");
        crate::stop::request_stop();
    }
    for thread in threads {
        let _ = thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn catch_up_runs_only_when_the_last_scheduled_time_passed_without_a_run() {
        let text =
            "dir = '/b'\n[[jobs]]\nname = 'n'\nrun = 'verify'\nschedule = '0 3 * * *'\ncatch_up = true\n";
        let config: crate::config::BackupConfig = toml::from_str(text).unwrap();
        let config = ServiceConfig::from_config(&config).unwrap();
        let job = &config.jobs[0];
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap();
        let at = |h: u32| Utc.with_ymd_and_hms(2026, 12, 2, h, 0, 0).unwrap().timestamp();
        assert!(missed_last_run(job, None, now));
        assert!(missed_last_run(job, Some(at(2)), now), "ran before 03:00 only");
        assert!(!missed_last_run(job, Some(at(3)), now));
        assert!(!missed_last_run(job, Some(at(9)), now));
    }
}
