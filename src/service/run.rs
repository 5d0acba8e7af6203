//! One run of a job: the one-shot command's library call, retried after connection errors.

use std::time::{Duration, Instant};

use super::config::{Job, JobKind};
use crate::backupset;
use crate::error::{Context, Error, Result};
use crate::pg::ConnectionSpec;

/// What a successful run produced, for the record, the log and the alerts.
#[derive(Debug, Clone, Default)]
pub struct Done {
    pub backup: Option<String>,
    pub size_bytes: Option<u64>,
    pub detail: String,
    /// Off-site targets the new backup could not be copied to, each with its error.
    pub offsite_failures: Vec<String>,
}

/// Runs the job, trying again after a connection error up to `job.retries` times, waiting
/// `retry_delay`, then twice that, and so on. `stopping` tells it not to start another try.
pub fn run_with_retries(job: &Job, stopping: &dyn Fn() -> bool) -> Result<Done> {
    let mut delay = job.retry_delay;
    let mut attempt = 0;
    loop {
        let outcome = crate::error::catch_panic(|| format!("job {}", job.name), || run_once(&job.kind));
        match outcome {
            Err(error) if error.is_connection() && attempt < job.retries => {
                if stopping() {
                    return Err(given_up(error));
                }
                attempt += 1;
                tracing::warn!(job = %job.name, attempt, retries = job.retries, delay_seconds = delay.as_secs_f64(), error = %error, "connection failed; trying again");
                if !sleep_unless(delay, stopping) {
                    return Err(given_up(error));
                }
                delay = delay.saturating_mul(2);
            }
            outcome => return outcome,
        }
    }
}

/// A retry not made because the service is shutting down: the run was stopped, not failed.
fn given_up(error: Error) -> Error {
    Error::new(
        format!("not retried after {error} (shutting down)"),
        crate::error::ErrorKind::Interrupted,
    )
}

/// Sleeps `total`, returning false early when `stopping` becomes true.
fn sleep_unless(total: Duration, stopping: &dyn Fn() -> bool) -> bool {
    let Some(end) = Instant::now().checked_add(total) else {
        return false;
    };
    while Instant::now() < end {
        if stopping() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100).min(end.saturating_duration_since(Instant::now())));
    }
    true
}

fn run_once(kind: &JobKind) -> Result<Done> {
    match kind {
        JobKind::Backup { options, offsite } => {
            let manifest = backupset::backup(options)?;
            let size = manifest.size_bytes();
            if !manifest.verified {
                return Err(Error::unsupported(
                    format!("backup {}", manifest.id),
                    format!(
                        "verification found problems: {}",
                        manifest.verify_problems.join("; ")
                    ),
                ));
            }
            // The local backup stands whatever happens to its copies: a failure is
            // recorded in the set (for status and the next push) and alerted.
            let offsite_failures = copy_offsite(&options.dir, offsite);
            let mut detail = format!(
                "backup {} ({}), {} tables",
                manifest.id,
                backupset::kinds_label(&manifest.kinds),
                manifest.tables.len()
            );
            if !offsite.is_empty() {
                detail.push_str(&format!(
                    "; copied to {} of {} off-site targets",
                    offsite.len() - offsite_failures.len(),
                    offsite.len()
                ));
            }
            Ok(Done {
                detail,
                backup: Some(manifest.id),
                size_bytes: Some(size),
                offsite_failures,
            })
        }
        JobKind::Prune {
            dir,
            policy,
            include_unmanaged,
            offsite,
        } => {
            let report = backupset::prune(dir, *policy, *include_unmanaged, false)?;
            let remote = crate::offsite::prune(dir, offsite, *policy, false)?;
            let failures: Vec<String> = remote
                .iter()
                .filter_map(|t| t.error.as_ref().map(|e| format!("offsite {}: {e}", t.target)))
                .collect();
            if !failures.is_empty() {
                return Err(Error::unsupported(
                    format!(
                        "pruning (locally {} kept, {} deleted)",
                        report.kept.len(),
                        report.deleted.len()
                    ),
                    failures.join("; "),
                ));
            }
            let remote_deleted: usize = remote.iter().map(|t| t.deleted.len()).sum();
            Ok(Done {
                detail: if offsite.is_empty() {
                    format!("{} kept, {} deleted", report.kept.len(), report.deleted.len())
                } else {
                    format!(
                        "{} kept, {} deleted; {remote_deleted} deleted off-site",
                        report.kept.len(),
                        report.deleted.len()
                    )
                },
                ..Done::default()
            })
        }
        JobKind::Verify { dir, pg_bin } => {
            let report = backupset::verify_set(dir, pg_bin.as_deref())?;
            if !report.problems.is_empty() {
                return Err(Error::unsupported(
                    format!("verifying {}", report.dir),
                    report.problems.join("; "),
                ));
            }
            Ok(Done {
                detail: format!("{} backups verified", report.backups),
                ..Done::default()
            })
        }
        JobKind::Sync(options) => {
            let summary = crate::sync::sync(options)?;
            Ok(Done {
                detail: summary.line(),
                ..Done::default()
            })
        }
        JobKind::Sql {
            source,
            sql,
            statement_timeout,
        } => {
            let rows = run_sql(source, sql, *statement_timeout)?;
            Ok(Done {
                detail: format!("{rows} rows affected"),
                ..Done::default()
            })
        }
    }
}

/// Copies what the targets lack; the targets that failed, each with its error.
fn copy_offsite(dir: &std::path::Path, targets: &[crate::offsite::OffsiteConfig]) -> Vec<String> {
    if targets.is_empty() {
        return Vec::new();
    }
    match crate::offsite::push(dir, targets) {
        Ok(reports) => reports
            .into_iter()
            .filter_map(|r| r.error.map(|e| format!("{}: {e}", r.target)))
            .collect(),
        Err(error) => vec![format!("all targets: {error}")],
    }
}

/// One statement in its own transaction, under `statement_timeout`; the rows it affected.
fn run_sql(source: &ConnectionSpec, sql: &str, timeout: Duration) -> Result<u64> {
    let runtime = crate::pg::runtime()?;
    runtime.block_on(crate::stop::until_stopped(None, async {
        let mut client = source.connect().await?;
        let transaction = client
            .transaction()
            .await
            .context("starting the job's transaction")?;
        transaction
            .batch_execute(&format!("SET LOCAL statement_timeout = {}", timeout.as_millis()))
            .await
            .context("setting statement_timeout")?;
        let rows = transaction
            .execute(sql, &[])
            .await
            .context("running the job's statement")?;
        // A connection lost during the commit leaves its outcome unknown: not an error to
        // retry, or the statement could run twice. An error the server sent (or the stop's
        // own cancellation) is what it is.
        if let Err(error) = transaction.commit().await {
            if error.code().is_some() || crate::stop::stop_requested() {
                return Err(error).context("committing the job's statement");
            }
            return Err(Error::unsupported(
                "committing the job's statement",
                format!(
                    "{}; it may or may not have been applied",
                    crate::error::describe_postgres(&error)
                ),
            ));
        }
        Ok(rows)
    }))
}
