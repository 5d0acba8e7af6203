//! Command line: clap definitions and the glue to the library. Nothing here does real work.

mod backupset;
mod bench;
mod csv;
mod dump;
mod export;
mod offsite;
mod restore;
mod serve;
mod sync;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// pgmirror: a consistent, queryable SQLite mirror of a PostgreSQL database.
///
/// Exit codes: 0 success, 1 a check found problems, 2 error.
#[derive(Debug, Parser)]
#[command(name = "pgmirror", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// An age identity file (AGE-SECRET-KEY-1...) to read encrypted backups with (restore,
    /// verify, csv export).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "PGMIRROR_IDENTITY",
        hide_env_values = true
    )]
    identity: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    Export(export::ExportArgs),
    Sync(sync::SyncArgs),
    Restore(restore::RestoreArgs),
    Csv(csv::CsvArgs),
    Bench(bench::BenchArgs),
    Dump(dump::DumpArgs),
    Verify(dump::VerifyArgs),
    Backup(backupset::BackupArgs),
    Status(backupset::StatusArgs),
    Prune(backupset::PruneArgs),
    /// Pin a backup so prune never deletes it.
    Pin(backupset::PinArgs),
    /// Unpin a backup.
    Unpin(backupset::PinArgs),
    Serve(serve::ServeArgs),
    Offsite(offsite::OffsiteArgs),
}

/// Where to read from.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// The database: a URL (postgres://user@host:5432/db?sslmode=require) or a key=value
    /// string (host=/var/run/postgresql dbname=app). Anything left out comes from PGHOST,
    /// PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE and PGSSLROOTCERT, as with psql.
    /// sslmode may be disable, prefer, require, verify-ca or verify-full.
    #[arg(long, value_name = "URL", default_value = "", hide_default_value = true)]
    pub source: String,
}

/// Which tables to take.
#[derive(Debug, Args)]
pub struct TableFilterArgs {
    /// Only tables in this schema (repeatable; globs allowed).
    #[arg(long, value_name = "SCHEMA")]
    pub schema: Vec<String>,
    /// Only this table (repeatable). A case-sensitive name as written, optionally
    /// schema.table; globs allowed ('Prompt*', 'audit.*'). A pattern that matches nothing is an error.
    #[arg(long, value_name = "TABLE")]
    pub table: Vec<String>,
    /// Leave this table out (repeatable; same form as --table).
    #[arg(long, value_name = "TABLE")]
    pub exclude_table: Vec<String>,
}

/// How results are reported.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// No progress bars and no summary line (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl ReportArgs {
    /// Prints `summary` as JSON on stdout when --json was given.
    pub fn print_json<T: serde::Serialize>(&self, summary: &T) -> anyhow::Result<()> {
        if self.json {
            print_stdout(&serde_json::to_string_pretty(summary)?)?;
        }
        Ok(())
    }
}

/// A duration such as 500ms, 10s or 2m; a bare number is milliseconds, as pg_dump takes it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(millis) = text.parse::<u64>() {
        return Ok(Duration::from_millis(millis));
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (try 500ms, 10s or 2m)"))
}

/// A size such as 64MB, 512kB, 1GiB or a plain number of bytes (units are powers of 1024).
pub fn parse_size(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (try 64MB)"))?;
    let factor: i64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use kB, MB or GB)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Prints to stdout; a closed pipe (`pgmirror ... | head`) is not an error.
pub fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Some(identity) = &cli.identity {
        if let Err(error) = pgmirror::crypt::use_identity_file(identity) {
            eprintln!("pgmirror: error: {error}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Command::Export(args) => export::run(args),
        Command::Sync(args) => sync::run(args),
        Command::Restore(args) => restore::run(args),
        Command::Csv(args) => csv::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Dump(args) => dump::run_dump(args),
        Command::Verify(args) => dump::run_verify(args),
        Command::Backup(args) => backupset::run_backup(args),
        Command::Status(args) => backupset::run_status(args),
        Command::Prune(args) => backupset::run_prune(args),
        Command::Pin(args) => backupset::run_pin(args, true),
        Command::Unpin(args) => backupset::run_pin(args, false),
        Command::Serve(args) => serve::run(args),
        Command::Offsite(args) => offsite::run(args),
    };
    match result {
        Ok(code) => code,
        // After a stop request the statements it cancelled fail with "canceling statement
        // due to user request": that is the stop itself, not a cause to report. Anything
        // else (a cleanup that failed) still is.
        Err(error) if pgmirror::stop::stop_requested() => {
            eprintln!("pgmirror: interrupted at your request (SIGINT/SIGTERM)");
            let caused_by_the_stop = error.chain().any(|cause| {
                cause
                    .downcast_ref::<pgmirror::Error>()
                    .is_some_and(pgmirror::Error::is_stop)
            });
            if !caused_by_the_stop {
                eprintln!("pgmirror: while stopping: {error:#}");
            }
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("pgmirror: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
