//! `pgmirror bench`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use pgmirror::pg::ConnectionSpec;
use pgmirror::tune::{tune, TuneOptions};

use super::{parse_size, print_stdout, ConnectionArgs};

/// Find the export settings that are fastest for your database on this machine.
///
/// Exports a sample of the largest tables into a scratch file once per combination of
/// --jobs, --chunk-size and --batch-rows, prints what each trial measured, and the flags
/// that won, to pass to `pgmirror export`. Only reads the database.
///
/// Example:
///   pgmirror bench --source postgres://app@localhost/prompts --jobs 1,2,4
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct BenchArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// How many of the largest tables to sample.
    #[arg(long, value_name = "N", default_value_t = 3)]
    tables: usize,
    /// How much of each table to read per trial.
    #[arg(long, value_name = "SIZE", default_value = "128MB", value_parser = parse_size)]
    sample_size: i64,
    /// Worker counts to try (comma-separated).
    #[arg(long, value_name = "N,..", value_delimiter = ',', default_values_t = default_jobs())]
    jobs: Vec<usize>,
    /// Chunk sizes to try (comma-separated).
    #[arg(long, value_name = "SIZE,..", value_delimiter = ',', default_values = ["16MB", "64MB"], value_parser = parse_size)]
    chunk_size: Vec<i64>,
    /// Batch sizes in rows to try (comma-separated).
    #[arg(long, value_name = "N,..", value_delimiter = ',', default_values_t = [10_000, 40_000])]
    batch_rows: Vec<usize>,
    /// Directory for the scratch mirror (removed after each trial) [default: the system's
    /// temporary directory].
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn default_jobs() -> Vec<usize> {
    let cores = pgmirror::config::default_jobs();
    let mut jobs = vec![1, 2, cores, cores * 2];
    jobs.sort_unstable();
    jobs.dedup();
    jobs
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.jobs.iter().all(|&j| j >= 1),
        "--jobs values must be at least 1"
    );
    anyhow::ensure!(
        args.batch_rows.iter().all(|&b| b >= 1),
        "--batch-rows values must be at least 1"
    );
    anyhow::ensure!(
        args.chunk_size.iter().all(|&c| c > 0),
        "--chunk-size values must be positive"
    );
    let options = TuneOptions {
        source: ConnectionSpec::parse(&args.connection.source)?,
        tables: args.tables,
        sample_bytes: args.sample_size,
        jobs: args.jobs,
        chunk_bytes: args.chunk_size,
        batch_rows: args.batch_rows,
        scratch_dir: args.scratch_dir.unwrap_or_else(std::env::temp_dir),
    };
    let report = tune(&options).context("bench failed")?;
    if args.json {
        print_stdout(&serde_json::to_string_pretty(&report)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!("sampled tables: {}\n", report.tables.join(", "));
    text.push_str(&format!(
        "{:>5} {:>11} {:>11} {:>9} {:>10} {:>12}\n",
        "jobs", "chunk size", "batch rows", "seconds", "rows", "rows/s"
    ));
    for trial in &report.trials {
        text.push_str(&format!(
            "{:>5} {:>11} {:>11} {:>9.2} {:>10} {:>12.0}\n",
            trial.jobs,
            format!("{}MB", trial.chunk_bytes >> 20),
            trial.batch_rows,
            trial.seconds,
            trial.rows,
            trial.rows_per_second
        ));
    }
    let best = &report.best;
    text.push_str(&format!(
        "fastest: pgmirror export --jobs {} --chunk-size {}MB --batch-rows {}",
        best.jobs,
        best.chunk_bytes >> 20,
        best.batch_rows
    ));
    print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}
