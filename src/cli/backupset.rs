//! `pgmirror backup`, `status`, `prune`, `pin`, `unpin`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use pgmirror::backupset::{self, BackupKind, BackupOptions};
use pgmirror::config::{BackupConfig, Keep, RetentionOverrides};
use pgmirror::pg::ConnectionSpec;

use super::{parse_duration, print_stdout, ReportArgs};

/// Where the backup set is and what the config file says.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The backup directory (created 0700) [default: `dir` in the config file].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// A TOML config file [default: PGMIRROR_CONFIG, else ~/.config/pgmirror/config.toml if it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl SetArgs {
    pub fn resolve(&self) -> anyhow::Result<(PathBuf, BackupConfig)> {
        let config = BackupConfig::load(self.config.as_deref())?;
        let dir = self
            .dir
            .clone()
            .or_else(|| config.dir.clone())
            .ok_or_else(|| anyhow::anyhow!("give --dir DIR (or `dir` in the config file)"))?;
        Ok((dir, config))
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    Mirror,
    Archive,
    Both,
}

/// Add one backup to a backup set: a mirror and/or a pg_dump archive, with a manifest.
///
/// The backup is built as DIR/.<id>.partial and renamed to DIR/<id> (the UTC time,
/// YYYYmmddTHHMMSSZ) only when complete and verified, manifest written last. Free space
/// is checked first; a lock stops two runs at once; the outcome is recorded for `status`.
///
/// Example:
///   pgmirror backup --source postgres://backup@localhost/prompts --dir /backups --kind both --compress zstd:9
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct BackupArgs {
    /// The database [default: `source` in the config file].
    #[arg(long, value_name = "URL")]
    source: Option<String>,
    #[command(flatten)]
    set: SetArgs,
    /// What to write [default: `kind` in the config file, else mirror].
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// Compress the mirror: zstd or zstd:LEVEL [default: `compress` in the config file].
    #[arg(long, value_name = "zstd[:LEVEL]")]
    compress: Option<String>,
    /// Worker connections for the mirror export.
    #[arg(long, short, value_name = "N")]
    jobs: Option<usize>,
    /// Directory holding pg_dump and pg_restore.
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
    #[command(flatten)]
    report: ReportArgs,
}

pub fn run_backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let (dir, config) = args.set.resolve()?;
    let source = args
        .source
        .clone()
        .or_else(|| config.source.clone())
        .unwrap_or_default();
    let kind = match (args.kind, config.kind.as_deref()) {
        (Some(KindArg::Mirror), _) => BackupKind::Mirror,
        (Some(KindArg::Archive), _) => BackupKind::Archive,
        (Some(KindArg::Both), _) => BackupKind::Both,
        (None, Some(kind)) => pgmirror::config::parse_backup_kind(kind).context("config")?,
        (None, None) => BackupKind::Mirror,
    };
    let options = BackupOptions {
        source: ConnectionSpec::parse(&source)?,
        dir,
        kind,
        zstd_level: args
            .compress
            .as_deref()
            .or(config.compress.as_deref())
            .map(pgmirror::config::parse_zstd_level)
            .transpose()?,
        jobs: args.jobs.unwrap_or_else(pgmirror::config::default_jobs),
        pg_bin: args.pg_bin,
        recipients: config.recipients()?,
    };
    let manifest = backupset::backup(&options).context("backup failed; nothing was added to the set")?;
    // Copies go out after the backup stands locally; a failed one is recorded, not fatal.
    let offsite = if super::offsite::targets_for(&options.dir, &config, args.report.quiet).is_empty() {
        ExitCode::SUCCESS
    } else {
        super::offsite::push(&options.dir, &config, args.report.quiet || args.report.json)
    };
    args.report.print_json(&manifest)?;
    if !args.report.quiet {
        let size = manifest.size_bytes();
        eprintln!(
            "backup {} ({}) of {}: {} files, {}, {}",
            manifest.id,
            backupset::kinds_label(&manifest.kinds),
            manifest.database,
            manifest.files.len(),
            indicatif::HumanBytes(size),
            if manifest.verified {
                "verified"
            } else {
                "VERIFICATION FOUND PROBLEMS"
            }
        );
    }
    Ok(if manifest.verified && offsite == ExitCode::SUCCESS {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Report on a backup set; exit 1 when it is stale or the last run failed.
///
/// Lists the backups newest first (kind, age, size, verified, pinned), totals, free space
/// and the last failure. With --max-age, exit 1 when the newest verified backup is older
/// than that (for monitoring and cron), and always when the last run failed.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    set: SetArgs,
    /// The newest verified backup must be younger than this (e.g. 26h, 2d) [default:
    /// `max_age` in the config file].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_age: Option<Duration>,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
    /// Report a replica (`pgmirror sync`) instead: its applied position, and the WAL its
    /// slot keeps on the source.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dir", "config", "max_age"])]
    mirror: Option<PathBuf>,
    /// With --mirror: the source to ask [default: the connection the replica recorded].
    #[arg(long, value_name = "URL", requires = "mirror")]
    source: Option<String>,
    /// With --mirror: exit 1 when the slot keeps more WAL than this on the source.
    #[arg(long, value_name = "SIZE", value_parser = super::parse_size, requires = "mirror")]
    max_lag: Option<i64>,
}

fn replica_status(args: &StatusArgs, mirror: &std::path::Path) -> anyhow::Result<ExitCode> {
    let source = args
        .source
        .as_deref()
        .map(pgmirror::pg::ConnectionSpec::parse)
        .transpose()?;
    let status = pgmirror::sync::status(source.as_ref(), mirror)?;
    if args.json {
        print_stdout(&serde_json::to_string_pretty(&status)?)?;
    } else {
        print_stdout(&format!(
            "replica {}: slot {} ({}), applied to {} (commit {}), {}; {} bytes of WAL behind, slot keeps {} bytes",
            status.mirror,
            status.slot,
            status.slot_status.wal_status,
            status.applied_lsn,
            status.applied_commit_time.as_deref().unwrap_or("none yet"),
            if status.consistent { "consistent" } else { "still catching up with its initial copy" },
            status.slot_status.lag_bytes,
            status.slot_status.retained_bytes
        ))?;
    }
    if args
        .max_lag
        .is_some_and(|limit| status.slot_status.retained_bytes > limit)
    {
        eprintln!("warning: the slot keeps more WAL on the source than --max-lag");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if let Some(mirror) = &args.mirror {
        return replica_status(&args, mirror);
    }
    let (dir, config) = args.set.resolve()?;
    let status = backupset::status(&dir)?;
    let max_age = match args.max_age {
        Some(given) => Some(given),
        None => config.max_age()?,
    };
    let stale = max_age.is_some_and(|max| {
        status
            .newest_verified_age_seconds
            .is_none_or(|age| age > max.as_secs() as i64)
    });
    let failed = status.last_failure.is_some();
    if args.json {
        print_stdout(&serde_json::to_string_pretty(&status)?)?;
    } else {
        let mut text = format!("backup set {}\n", status.dir);
        for b in &status.backups {
            text.push_str(&format!(
                "  {}  {:<14} {:>10} old  {:>10}  {}{}\n",
                b.id,
                b.kind,
                humantime::format_duration(Duration::from_secs(b.age_seconds.max(0) as u64))
                    .to_string()
                    .split(' ')
                    .next()
                    .unwrap_or(""),
                indicatif::HumanBytes(b.size_bytes).to_string(),
                if b.verified { "verified" } else { "NOT VERIFIED" },
                if b.pinned { ", pinned" } else { "" }
            ));
        }
        text.push_str(&format!(
            "{} mirrors, {} archives, {} in all, {} free",
            status.count_mirror,
            status.count_archive,
            indicatif::HumanBytes(status.total_bytes),
            indicatif::HumanBytes(status.free_bytes)
        ));
        if let Some(failure) = &status.last_failure {
            text.push_str(&format!(
                "\nLAST RUN FAILED at {}: {}",
                failure.time,
                failure.error.clone().unwrap_or_default()
            ));
        }
        if stale {
            text.push_str("\nSTALE: no verified backup within the maximum age");
        }
        print_stdout(&text)?;
    }
    Ok(if stale || failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Delete backups that the retention policy no longer keeps (grandfather-father-son).
///
/// For each rule, walk the backups newest to oldest and keep the newest backup of each
/// distinct day / ISO week / month / year (UTC) until N such periods are kept; keep the
/// union; the newest backup is always kept (restic's rule). Never deleted: pinned backups,
/// a backup being written, anything without a pgmirror manifest — and, unless
/// --include-unmanaged, files named with the backup guide's _YYYYmmdd_HHMMSS stamp.
/// Defaults: the guide's table, daily 7, weekly 4, monthly 12, yearly all.
/// With [[offsite]] targets in the config file, the same policy applies on each of them
/// (a backup pinned here is kept there too).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PruneArgs {
    #[command(flatten)]
    set: SetArgs,
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    #[arg(long, value_name = "N")]
    keep_daily: Option<usize>,
    #[arg(long, value_name = "N")]
    keep_weekly: Option<usize>,
    #[arg(long, value_name = "N")]
    keep_monthly: Option<usize>,
    /// A number of years, or all.
    #[arg(long, value_name = "N|all")]
    keep_yearly: Option<String>,
    /// Also manage files named like the guide's scripts name them (<db>_YYYYmmdd_HHMMSS.backup).
    #[arg(long)]
    include_unmanaged: bool,
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    report: ReportArgs,
}

pub fn run_prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let (dir, config) = args.set.resolve()?;
    let yearly = match args.keep_yearly.as_deref() {
        Some("all") => Some(Keep::All(pgmirror::config::AllMarker::All)),
        Some(n) => Some(Keep::Count(
            n.parse::<usize>()
                .with_context(|| format!("--keep-yearly {n}: a number or all"))?,
        )),
        None => None,
    };
    let policy = config.retention.policy(&RetentionOverrides {
        last: args.keep_last,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly,
    });
    let report = backupset::prune(&dir, policy, args.include_unmanaged, args.dry_run)?;
    // The same policy on every off-site target, a backup pinned here kept there too.
    let offsite = pgmirror::offsite::prune(
        &dir,
        super::offsite::targets_for(&dir, &config, args.report.quiet),
        policy,
        args.dry_run,
    )?;
    if args.report.json {
        #[derive(serde::Serialize)]
        struct Report<'a> {
            #[serde(flatten)]
            local: &'a backupset::PruneReport,
            offsite: &'a [pgmirror::offsite::TargetPrune],
        }
        let report = Report {
            local: &report,
            offsite: &offsite,
        };
        print_stdout(&serde_json::to_string_pretty(&report)?)?;
    } else if !args.report.quiet {
        let deleted_word = if report.dry_run {
            "would delete"
        } else {
            "delete  "
        };
        let mut text = String::new();
        for kept in &report.kept {
            text.push_str(&format!("keep    {}  ({})\n", kept.name, kept.reasons.join(", ")));
        }
        for deleted in &report.deleted {
            text.push_str(&format!("{deleted_word} {}\n", deleted.name));
        }
        text.push_str(&format!(
            "{} kept, {} {}",
            report.kept.len(),
            report.deleted.len(),
            if report.dry_run {
                "to delete (dry run)"
            } else {
                "deleted"
            }
        ));
        for target in &offsite {
            for deleted in &target.deleted {
                text.push_str(&format!("\n{deleted_word} {deleted} on {}", target.target));
            }
            if target.error.is_none() {
                text.push_str(&format!(
                    "\noffsite {}: {} kept, {} {}",
                    target.target,
                    target.kept.len(),
                    target.deleted.len(),
                    if report.dry_run { "to delete" } else { "deleted" }
                ));
            }
        }
        print_stdout(&text)?;
    }
    let failed: Vec<_> = offsite.iter().filter(|t| t.error.is_some()).collect();
    for target in &failed {
        eprintln!(
            "pgmirror: warning: offsite {}: prune failed: {}",
            target.target,
            target.error.as_deref().unwrap_or_default()
        );
    }
    if !failed.is_empty() {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Pin (or unpin) a backup so prune never deletes it.
#[derive(Debug, Args)]
pub struct PinArgs {
    #[command(flatten)]
    set: SetArgs,
    /// The backup's id (its directory name, e.g. 20261126T021500Z).
    #[arg(value_name = "ID")]
    id: String,
}

pub fn run_pin(args: PinArgs, pinned: bool) -> anyhow::Result<ExitCode> {
    let (dir, _) = args.set.resolve()?;
    backupset::set_pinned(&dir, &args.id, pinned)?;
    Ok(ExitCode::SUCCESS)
}
