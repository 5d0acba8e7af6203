//! The service's part of the config file, validated: jobs with their schedules and
//! options, alerts, `max_age`. Everything is checked when the file is read (at start,
//! on `--check` and on SIGHUP), so a typo never waits for 3 a.m. to show.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::backupset::{BackupKind, BackupOptions, Policy};
use crate::config::{
    parse_backup_kind, parse_config_duration, parse_zstd_level, BackupConfig, Keep, RetentionOverrides,
};
use crate::error::{Error, Result};
use crate::offsite::OffsiteConfig;
use crate::pg::ConnectionSpec;

/// One `[[jobs]]` table as written; [`Job`] is its validated form.
#[derive(Debug, Clone, Deserialize)]
pub struct JobConfig {
    pub name: String,
    pub run: String,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    #[serde(default)]
    pub at_start: bool,
    #[serde(default)]
    pub catch_up: bool,
    pub retries: Option<u32>,
    pub retry_delay: Option<String>,
    /// The one-shot command's options by their long names (`kind`, `keep-daily`, `sql`...),
    /// checked per kind of job.
    #[serde(flatten)]
    pub options: toml::Table,
}

/// `[alerts]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    pub webhook: Option<String>,
    pub command: Option<PathBuf>,
    #[serde(default = "default_alert_events")]
    pub on: Vec<String>,
    pub timeout: Option<String>,
}

fn default_alert_events() -> Vec<String> {
    ["failure", "recovery", "stale", "offsite"]
        .map(String::from)
        .to_vec()
}

/// When a job runs: a cron pattern (5 fields, or 6 with leading seconds) read in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub pattern: String,
    pub timezone: chrono_tz::Tz,
    cron: croner::Cron,
}

impl Schedule {
    pub fn parse(pattern: &str, timezone: &str) -> Result<Schedule> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(pattern)
            .map_err(|e| Error::usage(format!("schedule {pattern:?}: {e}")))?;
        let timezone = chrono_tz::Tz::from_str(timezone).map_err(|_| {
            Error::usage(format!(
                "timezone {timezone:?} is not an IANA time zone name (e.g. UTC, Europe/Berlin)"
            ))
        })?;
        Ok(Schedule {
            pattern: pattern.to_owned(),
            timezone,
            cron,
        })
    }

    /// The first run time strictly after `after`, in the schedule's zone.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<chrono_tz::Tz>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.timezone), false)
            .ok()
    }

    /// The last run time at or before `at`.
    pub fn previous(&self, at: DateTime<Utc>) -> Option<DateTime<chrono_tz::Tz>> {
        self.cron
            .find_previous_occurrence(&at.with_timezone(&self.timezone), true)
            .ok()
    }

    /// The next `count` run times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<chrono_tz::Tz>> {
        let mut times = Vec::with_capacity(count);
        let mut cursor = after;
        while times.len() < count {
            let Some(next) = self.next_after(cursor) else {
                break;
            };
            cursor = next.with_timezone(&Utc);
            times.push(next);
        }
        times
    }
}

/// What a job does, with the options of the one-shot command it stands for.
#[derive(Debug, Clone)]
pub enum JobKind {
    /// A backup, then its copies to the config file's off-site targets.
    Backup {
        options: BackupOptions,
        offsite: Vec<OffsiteConfig>,
    },
    /// The retention policy, on the set and on every off-site target.
    Prune {
        dir: PathBuf,
        policy: Policy,
        include_unmanaged: bool,
        offsite: Vec<OffsiteConfig>,
    },
    Verify {
        dir: PathBuf,
        pg_bin: Option<PathBuf>,
    },
    Sync(crate::sync::SyncOptions),
    Sql {
        source: ConnectionSpec,
        sql: String,
        statement_timeout: Duration,
    },
}

impl JobKind {
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Backup { .. } => "backup",
            JobKind::Prune { .. } => "prune",
            JobKind::Verify { .. } => "verify",
            JobKind::Sync(_) => "sync",
            JobKind::Sql { .. } => "sql",
        }
    }

    /// The backup directory the job works on: jobs on the same one never run at once
    /// (a verify must not read what a prune is deleting).
    pub fn set_dir(&self) -> Option<&std::path::Path> {
        match self {
            JobKind::Backup { options, .. } => Some(&options.dir),
            JobKind::Prune { dir, .. } | JobKind::Verify { dir, .. } => Some(dir),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub kind: JobKind,
    pub schedule: Option<Schedule>,
    pub at_start: bool,
    pub catch_up: bool,
    /// Further tries after a connection error, waiting `retry_delay`, then twice that...
    pub retries: u32,
    pub retry_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct Alerts {
    pub webhook: Option<String>,
    pub command: Option<PathBuf>,
    pub on: Vec<AlertEvent>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    Failure,
    Recovery,
    Stale,
    Success,
    /// A backup was made but not copied to every off-site target.
    Offsite,
}

impl AlertEvent {
    pub fn name(self) -> &'static str {
        match self {
            AlertEvent::Failure => "failure",
            AlertEvent::Recovery => "recovery",
            AlertEvent::Stale => "stale",
            AlertEvent::Success => "success",
            AlertEvent::Offsite => "offsite",
        }
    }
}

/// The validated service configuration.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The backup set: where `status` reads from and where the service keeps its record.
    pub dir: PathBuf,
    pub max_age: Option<Duration>,
    pub jobs: Vec<Job>,
    pub alerts: Alerts,
}

/// The options every kind takes, then each kind's own (by the one-shot command's long
/// names; `keep-daily` and `keep_daily` are the same).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobOptions {
    source: Option<String>,
    dir: Option<PathBuf>,
    // backup
    kind: Option<String>,
    compress: Option<String>,
    jobs: Option<usize>,
    pg_bin: Option<PathBuf>,
    // prune
    keep_last: Option<usize>,
    keep_daily: Option<usize>,
    keep_weekly: Option<usize>,
    keep_monthly: Option<usize>,
    keep_yearly: Option<Keep>,
    #[serde(default)]
    include_unmanaged: bool,
    // sync
    mirror: Option<PathBuf>,
    lock_wait_timeout: Option<String>,
    // sql
    sql: Option<String>,
    statement_timeout: Option<String>,
}

/// Which options each kind takes: the rest are errors, not silently ignored.
const OPTIONS_BY_KIND: &[(&str, &[&str])] = &[
    ("backup", &["source", "dir", "kind", "compress", "jobs", "pg_bin"]),
    (
        "prune",
        &[
            "dir",
            "keep_last",
            "keep_daily",
            "keep_weekly",
            "keep_monthly",
            "keep_yearly",
            "include_unmanaged",
        ],
    ),
    ("verify", &["dir", "pg_bin"]),
    ("sync", &["source", "mirror", "lock_wait_timeout"]),
    ("sql", &["source", "sql", "statement_timeout"]),
];

/// A duration from the config within what the service can wait for: a typo such as
/// `retry_delay = "30y"` is an error, not an overflow.
fn bounded_duration(key: &str, text: &str, min: Duration, max: Duration) -> Result<Duration> {
    let duration = parse_config_duration(key, text)?;
    if duration < min || duration > max {
        return Err(Error::usage(format!(
            "{key} = {text:?}: must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )));
    }
    Ok(duration)
}

const DAY: Duration = Duration::from_secs(86_400);

const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(30);
const DEFAULT_ALERT_TIMEOUT: Duration = Duration::from_secs(10);

impl ServiceConfig {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &std::path::Path) -> Result<ServiceConfig> {
        let config = BackupConfig::load(Some(path))?;
        ServiceConfig::from_config(&config)
            .map_err(|e| Error::usage(format!("config {}: {e}", path.display())))
    }

    pub fn from_config(config: &BackupConfig) -> Result<ServiceConfig> {
        let dir = config
            .dir
            .clone()
            .ok_or_else(|| Error::usage("`dir` (the backup directory) is required for serve"))?;
        if config.jobs.is_empty() {
            return Err(Error::usage("no [[jobs]]: nothing to serve"));
        }
        let mut jobs: Vec<Job> = Vec::new();
        for job in &config.jobs {
            let parsed =
                parse_job(config, &dir, job).map_err(|e| Error::usage(format!("job {:?}: {e}", job.name)))?;
            if jobs.iter().any(|j| j.name == parsed.name) {
                return Err(Error::usage(format!("two jobs are named {:?}", parsed.name)));
            }
            jobs.push(parsed);
        }
        Ok(ServiceConfig {
            dir,
            max_age: config.max_age()?,
            jobs,
            alerts: parse_alerts(config.alerts.as_ref())?,
        })
    }
}

fn parse_alerts(alerts: Option<&AlertConfig>) -> Result<Alerts> {
    let Some(alerts) = alerts else {
        return Ok(Alerts {
            webhook: None,
            command: None,
            on: Vec::new(),
            timeout: DEFAULT_ALERT_TIMEOUT,
        });
    };
    if let Some(url) = &alerts.webhook {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::usage(format!(
                "alerts.webhook must be an http:// or https:// URL, not {:?}",
                crate::service::alert::redact_url(url)
            )));
        }
    }
    let on = alerts
        .on
        .iter()
        .map(|event| match event.as_str() {
            "failure" => Ok(AlertEvent::Failure),
            "recovery" => Ok(AlertEvent::Recovery),
            "stale" => Ok(AlertEvent::Stale),
            "success" => Ok(AlertEvent::Success),
            "offsite" => Ok(AlertEvent::Offsite),
            other => Err(Error::usage(format!(
                "alerts.on: {other:?} is not failure, recovery, stale, success or offsite"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Alerts {
        webhook: alerts.webhook.clone(),
        command: alerts.command.clone(),
        on,
        timeout: alerts
            .timeout
            .as_deref()
            .map(|t| {
                bounded_duration(
                    "alerts.timeout",
                    t,
                    Duration::from_secs(1),
                    Duration::from_secs(600),
                )
            })
            .transpose()?
            .unwrap_or(DEFAULT_ALERT_TIMEOUT),
    })
}

/// The job's option table with `-` in its keys read as `_`, refused where the kind does
/// not take an option.
fn job_options(kind: &str, table: &toml::Table) -> Result<JobOptions> {
    let allowed = OPTIONS_BY_KIND
        .iter()
        .find(|(name, _)| *name == kind)
        .map(|(_, options)| *options)
        .ok_or_else(|| {
            Error::usage(format!(
                "run = {kind:?}: expected backup, prune, verify, sync or sql"
            ))
        })?;
    let mut normalized = toml::Table::new();
    for (key, value) in table {
        let key = key.replace('-', "_");
        if !allowed.contains(&key.as_str()) {
            return Err(Error::usage(format!(
                "a {kind} job has no option {key:?} (it takes {})",
                allowed.join(", ")
            )));
        }
        normalized.insert(key, value.clone());
    }
    normalized
        .try_into()
        .map_err(|e: toml::de::Error| Error::usage(e.message().to_owned()))
}

fn parse_job(config: &BackupConfig, dir: &std::path::Path, job: &JobConfig) -> Result<Job> {
    if job.name.is_empty() || job.name.chars().any(|c| c.is_control()) {
        return Err(Error::usage("a job needs a name without control characters"));
    }
    let options = job_options(&job.run, &job.options)?;
    let schedule = job
        .schedule
        .as_deref()
        .map(|pattern| Schedule::parse(pattern, job.timezone.as_deref().unwrap_or("UTC")))
        .transpose()?;
    if schedule.is_none() && job.timezone.is_some() {
        return Err(Error::usage("timezone without a schedule"));
    }
    if schedule.is_none() && job.catch_up {
        return Err(Error::usage("catch_up needs a schedule"));
    }
    if schedule.is_none() && !job.at_start {
        return Err(Error::usage(
            "no schedule and not at_start: the job would never run",
        ));
    }
    let source = || -> Result<ConnectionSpec> {
        ConnectionSpec::parse(
            options
                .source
                .as_deref()
                .or(config.source.as_deref())
                .unwrap_or_default(),
        )
    };
    let job_dir = options.dir.clone().unwrap_or_else(|| dir.to_path_buf());
    let offsite = config.offsite_for(&job_dir).to_vec();
    let kind = match job.run.as_str() {
        "backup" => JobKind::Backup {
            offsite,
            options: BackupOptions {
                source: source()?,
                dir: job_dir,
                kind: match options.kind.as_deref().or(config.kind.as_deref()) {
                    Some(kind) => parse_backup_kind(kind)?,
                    None => BackupKind::Mirror,
                },
                zstd_level: options
                    .compress
                    .as_deref()
                    .or(config.compress.as_deref())
                    .map(parse_zstd_level)
                    .transpose()?,
                jobs: options.jobs.unwrap_or_else(crate::config::default_jobs).max(1),
                pg_bin: options.pg_bin.clone(),
                recipients: config.recipients()?,
            },
        },
        "prune" => JobKind::Prune {
            dir: job_dir,
            policy: config.retention.policy(&RetentionOverrides {
                last: options.keep_last,
                daily: options.keep_daily,
                weekly: options.keep_weekly,
                monthly: options.keep_monthly,
                yearly: options.keep_yearly,
            }),
            include_unmanaged: options.include_unmanaged,
            offsite,
        },
        "verify" => JobKind::Verify {
            dir: job_dir,
            pg_bin: options.pg_bin.clone(),
        },
        "sync" => {
            let mirror = options
                .mirror
                .clone()
                .ok_or_else(|| Error::usage("a sync job needs `mirror` (the replica file)"))?;
            let mut sync = crate::sync::SyncOptions::new(mirror);
            sync.source = options.source.as_deref().map(ConnectionSpec::parse).transpose()?;
            if let Some(timeout) = &options.lock_wait_timeout {
                sync.lock_wait_timeout =
                    bounded_duration("lock_wait_timeout", timeout, Duration::from_millis(1), DAY)?;
            }
            sync.quiet = true;
            JobKind::Sync(sync)
        }
        _ => JobKind::Sql {
            source: source()?,
            sql: options
                .sql
                .clone()
                .filter(|sql| !sql.trim().is_empty())
                .ok_or_else(|| Error::usage("a sql job needs `sql` (one statement)"))?,
            statement_timeout: options
                .statement_timeout
                .as_deref()
                // PostgreSQL takes milliseconds up to i32::MAX; 0 would mean no timeout.
                .map(|t| bounded_duration("statement_timeout", t, Duration::from_millis(1), 24 * DAY))
                .transpose()?
                .unwrap_or(DEFAULT_STATEMENT_TIMEOUT),
        },
    };
    Ok(Job {
        name: job.name.clone(),
        kind,
        schedule,
        at_start: job.at_start,
        catch_up: job.catch_up,
        retries: job.retries.unwrap_or(0),
        retry_delay: job
            .retry_delay
            .as_deref()
            .map(|d| bounded_duration("retry_delay", d, Duration::ZERO, DAY))
            .transpose()?
            .unwrap_or(DEFAULT_RETRY_DELAY),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn service(text: &str) -> Result<ServiceConfig> {
        let config: BackupConfig = toml::from_str(text).map_err(|e| Error::usage(e.to_string()))?;
        ServiceConfig::from_config(&config)
    }

    const BASE: &str = "source = 'host=/tmp dbname=app'\ndir = '/backups'\n";

    #[test]
    fn jobs_take_their_commands_options_and_refuse_others() {
        let config = service(&format!(
            "{BASE}[retention]\ndaily = 3\n[[jobs]]\nname = 'nightly'\nrun = 'backup'\nschedule = '0 3 * * *'\n\
             kind = 'both'\ncompress = 'zstd:9'\n[[jobs]]\nname = 'prune'\nrun = 'prune'\nschedule = '0 4 * * *'\n\
             keep-weekly = 2\nkeep_yearly = 'all'\n"
        ))
        .unwrap();
        let JobKind::Backup { options: backup, .. } = &config.jobs[0].kind else {
            panic!("{:?}", config.jobs[0])
        };
        assert_eq!((backup.kind, backup.zstd_level), (BackupKind::Both, Some(9)));
        let JobKind::Prune { policy, .. } = &config.jobs[1].kind else {
            panic!()
        };
        assert_eq!(
            (policy.daily, policy.weekly, policy.yearly),
            (Some(3), Some(2), None)
        );

        let refused = [
            (
                "run = 'prune'\nschedule = '* * * * *'\nkind = 'both'",
                "no option \"kind\"",
            ),
            (
                "run = 'backup'\nschedule = '* * * * *'\nkidn = 'both'",
                "no option \"kidn\"",
            ),
            (
                "run = 'backup'\nschedule = '61 * * * *'",
                "schedule \"61 * * * *\"",
            ),
            (
                "run = 'backup'\nschedule = '* * * * *'\ntimezone = 'Mars/Base'",
                "Mars/Base",
            ),
            ("run = 'sql'\nschedule = '* * * * *'", "needs `sql`"),
            ("run = 'backup'", "would never run"),
            ("run = 'restore'\nat_start = true", "expected backup, prune"),
            ("run = 'backup'\nat_start = true\ncompress = 'gzip'", "zstd"),
            (
                "run = 'backup'\nat_start = true\nretry_delay = '30y'",
                "must be between",
            ),
            (
                "run = 'sql'\nat_start = true\nsql = 'SELECT 1'\nstatement_timeout = '100us'",
                "must be between",
            ),
        ];
        for (job, expected) in refused {
            let message = service(&format!("{BASE}[[jobs]]\nname = 'j'\n{job}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                message.contains(expected) && message.contains("\"j\""),
                "{job}: {message}"
            );
        }
        let twice = format!("{BASE}[[jobs]]\nname = 'a'\nrun = 'verify'\nat_start = true\n[[jobs]]\nname = 'a'\nrun = 'verify'\nat_start = true\n");
        assert!(service(&twice).unwrap_err().to_string().contains("two jobs"));
        let webhook = format!("{BASE}[[jobs]]\nname = 'a'\nrun = 'verify'\nat_start = true\n[alerts]\nwebhook = 'ftp://u:secret@x'\n");
        let message = service(&webhook).unwrap_err().to_string();
        assert!(
            message.contains("http") && !message.contains("secret"),
            "{message}"
        );
    }

    #[test]
    fn run_times_follow_the_zones_clock_across_daylight_saving_changes() {
        let schedule = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let start = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        let times: Vec<String> = schedule
            .upcoming(start, 3)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect();
        // 02:30 does not exist on 29 March: the run is at the first instant after the gap.
        assert_eq!(
            times,
            [
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00"
            ]
        );
        let autumn = Utc.with_ymd_and_hms(2026, 10, 24, 12, 0, 0).unwrap();
        let times: Vec<String> = schedule
            .upcoming(autumn, 2)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect();
        // 02:30 happens twice on 25 October: the job runs once, at the first.
        assert_eq!(times, ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]);
        let seconds = Schedule::parse("*/2 * * * * *", "UTC").unwrap();
        let next = seconds.next_after(start).unwrap();
        assert_eq!(next.with_timezone(&Utc), start + chrono::Duration::seconds(2));
        assert_eq!(seconds.previous(start).unwrap().with_timezone(&Utc), start);
    }
}
