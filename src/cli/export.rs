//! `pgmirror export`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pgmirror::pg::ConnectionSpec;
use pgmirror::{ExportOptions, TableFilter};

use pgmirror::batch::BatchLimits;

use super::{parse_duration, parse_size, print_stdout, ConnectionArgs, ReportArgs, TableFilterArgs};

/// Export every table into one consistent SQLite file.
///
/// All tables are read from one snapshot on --jobs connections with binary COPY, and
/// written to FILE.partial, which is renamed to FILE only when complete. The mirror is
/// plain SQLite: tables in `public` keep their names ("Users"), others are named
/// "schema.table"; the `_pgmirror_*` tables record each column's PostgreSQL type, the
/// indexes, constraints, sequences and views, so the data can be restored exactly.
///
/// Example:
///   pgmirror export --source postgres://app@localhost/prompts --output backup.db
///   sqlite3 backup.db 'SELECT count(*) FROM "Users"'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ExportArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// The SQLite file to write (replaced atomically if it exists).
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    /// Worker connections reading in parallel [default: the number of cores, at least 2].
    #[arg(long, short, value_name = "N")]
    jobs: Option<usize>,
    #[command(flatten)]
    filter: TableFilterArgs,
    /// How long to wait for each table's ACCESS SHARE lock before failing the run
    /// (a concurrent ALTER or DROP holds a conflicting one).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    lock_wait_timeout: Duration,
    /// Tables larger than this are split into chunks of about this size that several
    /// workers read at once (PostgreSQL 14 or later); 0 reads every table whole.
    #[arg(long, value_name = "SIZE", default_value = "64MB", value_parser = parse_size)]
    chunk_size: i64,
    /// Rows per batch sent from a worker to the SQLite writer (batches are also capped at 8 MB).
    #[arg(long, value_name = "N", default_value_t = BatchLimits::default().rows)]
    batch_rows: usize,
    #[command(flatten)]
    report: ReportArgs,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let source = ConnectionSpec::parse(&args.connection.source)?;
    let mut options = ExportOptions::new(source, args.output);
    if let Some(jobs) = args.jobs {
        anyhow::ensure!(jobs >= 1, "--jobs must be at least 1");
        options.jobs = jobs;
    }
    options.filter = TableFilter::new(
        &args.filter.schema,
        &args.filter.table,
        &args.filter.exclude_table,
    )?;
    options.lock_wait_timeout = args.lock_wait_timeout;
    options.chunk_bytes = (args.chunk_size > 0).then_some(args.chunk_size);
    anyhow::ensure!(args.batch_rows >= 1, "--batch-rows must be at least 1");
    options.batch.rows = args.batch_rows;
    options.quiet = args.report.quiet;
    let summary = pgmirror::export(&options).context("export failed; no mirror was written")?;
    if args.report.json {
        print_stdout(&serde_json::to_string_pretty(&summary)?)?;
    }
    if !args.report.quiet {
        for line in &summary.untranslated {
            eprintln!("note: kept only in metadata: {line}");
        }
        for line in &summary.warnings {
            eprintln!("warning: {line}");
        }
        eprintln!("{}", summary.line());
    }
    Ok(ExitCode::SUCCESS)
}
