//! `pgmirror sync`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pgmirror::pg::ConnectionSpec;
use pgmirror::sync::{InitOptions, SyncOptions};
use pgmirror::{ExportOptions, TableFilter};

use super::{parse_duration, parse_size, print_stdout, ConnectionArgs, ReportArgs, TableFilterArgs};

/// Keep a mirror current from PostgreSQL's logical decoding.
///
/// --init makes a replica: a publication for the chosen tables, a replication slot
/// (pgoutput), then the initial mirror, exported from a snapshot taken after the slot,
/// so no change is lost or applied twice. Without --init, sync applies every transaction
/// committed on the source since the last run, whole, and exits; --follow keeps doing so
/// until SIGINT or SIGTERM. Readers (sqlite3, an application) may read the mirror all the
/// while: they always see the state of one source commit.
///
/// The source needs wal_level = logical, a role with the REPLICATION attribute that owns
/// the tables (to create the publication), and every table a primary key or REPLICA
/// IDENTITY FULL. A slot keeps WAL on the source until the mirror has applied it: a
/// replica nobody syncs fills the source's disk. Watch `retained_wal_bytes` (--json),
/// use --max-lag, and --drop a replica you no longer need.
///
/// Examples:
///   pgmirror sync --init --source postgres://app@db/prompts --mirror replica.db
///   pgmirror sync --mirror replica.db         (the connection is recorded, never its password)
///   pgmirror sync --follow --mirror replica.db --interval 1s
///   pgmirror sync --resync Prompts --mirror replica.db     (after ALTER TABLE, or to add one)
///   pgmirror sync --drop --mirror replica.db  (or --drop --slot NAME --source URL)
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SyncArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// The replica: a SQLite mirror file made by --init.
    #[arg(long, value_name = "FILE", required_unless_present = "slot")]
    mirror: Option<PathBuf>,
    /// Create the slot and publication and write the initial mirror.
    #[arg(long, conflicts_with_all = ["follow", "drop"])]
    init: bool,
    /// Keep applying changes until SIGINT/SIGTERM (then exit 0).
    #[arg(long, conflicts_with = "drop")]
    follow: bool,
    /// Remove the slot and publication; the mirror stays, as a plain mirror. Works
    /// without the mirror file when --slot names the slot.
    #[arg(long)]
    drop: bool,
    /// Copy this table again from a new snapshot and go on following it (repeatable): after
    /// its columns changed on the source, or to add a table to the replica (it is added to
    /// the publication).
    #[arg(long, value_name = "TABLE", conflicts_with_all = ["init", "drop"])]
    resync: Vec<String>,
    /// How often --follow asks for new changes (doubling to 10x while idle).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Exit 1 with a warning when the slot retains more WAL on the source than this.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_lag: Option<i64>,
    /// The slot and publication name (--init: instead of a generated pgmirror_... name;
    /// --drop: the slot to remove when the mirror file is gone).
    #[arg(long, value_name = "NAME")]
    slot: Option<String>,
    /// --init and --resync: how long to wait for each table's lock (a concurrent ALTER, DROP
    /// or TRUNCATE holds or queues a conflicting one; the run then fails cleanly).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    lock_wait_timeout: Duration,
    /// --init: worker connections for the initial copy [default: the number of cores].
    #[arg(long, short, value_name = "N")]
    jobs: Option<usize>,
    #[command(flatten)]
    filter: TableFilterArgs,
    #[command(flatten)]
    report: ReportArgs,
}

pub fn run(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let source = (!args.connection.source.is_empty())
        .then(|| ConnectionSpec::parse(&args.connection.source))
        .transpose()?;
    let filtered = !(args.filter.table.is_empty()
        && args.filter.schema.is_empty()
        && args.filter.exclude_table.is_empty());
    anyhow::ensure!(
        args.init || !filtered,
        "--table, --schema and --exclude-table choose what --init replicates; a replica follows the tables it was made with"
    );
    if args.drop {
        let dropped = pgmirror::sync::drop(source.as_ref(), args.mirror.as_deref(), args.slot.as_deref())
            .context("dropping the replication failed")?;
        args.report.print_json(&dropped)?;
        if !args.report.quiet {
            eprintln!(
                "dropped slot {} and publication {}",
                dropped.slot.as_deref().unwrap_or("(none found)"),
                dropped.publication.as_deref().unwrap_or("(none found)")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mirror = args
        .mirror
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--mirror FILE is needed"))?;
    if args.init {
        let source = match source {
            Some(source) => source,
            None => ConnectionSpec::parse("")?,
        };
        let mut export = ExportOptions::new(source, mirror);
        if let Some(jobs) = args.jobs {
            anyhow::ensure!(jobs >= 1, "--jobs must be at least 1");
            export.jobs = jobs;
        }
        export.filter = TableFilter::new(
            &args.filter.schema,
            &args.filter.table,
            &args.filter.exclude_table,
        )?;
        export.quiet = args.report.quiet;
        export.lock_wait_timeout = args.lock_wait_timeout;
        let summary = pgmirror::sync::init(&InitOptions {
            export,
            slot: args.slot.clone(),
        })
        .context("sync --init failed; no replica was made")?;
        args.report.print_json(&summary)?;
        if !args.report.quiet {
            if !summary.not_followed.is_empty() {
                eprintln!(
                    "note: copied but not followed (materialized views): {}",
                    summary.not_followed.join(", ")
                );
            }
            eprintln!("{}", summary.export.line());
            eprintln!(
                "replica ready: slot and publication {}, {} tables followed; run pgmirror sync --mirror FILE to apply changes",
                summary.slot,
                summary.followed.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut options = SyncOptions::new(mirror);
    options.source = source;
    options.follow = args.follow;
    options.interval = args.interval;
    options.max_lag = args.max_lag;
    options.quiet = args.report.quiet;
    options.lock_wait_timeout = args.lock_wait_timeout;
    let summary = match if args.resync.is_empty() {
        pgmirror::sync::sync(&options)
    } else {
        pgmirror::sync::resync(&options, &args.resync)
    } {
        Ok(summary) => summary,
        // A stop before the first round (while connecting) still ends --follow normally.
        Err(e) if args.follow && e.is_stop() && pgmirror::stop::stop_requested() => {
            return Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context("sync failed; the mirror holds the last complete source transaction it applied"))
        }
    };
    if args.report.json {
        print_stdout(&serde_json::to_string_pretty(&summary)?)?;
    }
    if !args.report.quiet {
        eprintln!("{}", summary.line());
    }
    if summary.max_lag_exceeded {
        eprintln!(
            "warning: the slot retains {} bytes of WAL on the source, more than --max-lag; sync more often or drop the replica",
            summary.retained_wal_bytes
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
