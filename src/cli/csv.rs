//! `pgmirror csv export|import`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use pgmirror::csv::{CsvExportOptions, CsvImportOptions, CsvSource, CsvSummary};
use pgmirror::pg::ConnectionSpec;

use super::restore::ModeArg;
use super::{print_stdout, ReportArgs};

/// CSV in PostgreSQL's dialect, both ways.
///
/// NULL is an unquoted empty field and the empty string is "" so the two never mix;
/// values are in PostgreSQL's text form (bytea as \x hex, arrays as literals), and the
/// first line is a header of column names. Files also load with plain
/// `psql -c "\copy t FROM 'file.csv' (FORMAT csv, HEADER true)"`. Names ending in .zst are
/// zstd-compressed; compressed input is recognised by its content.
#[derive(Debug, Args)]
pub struct CsvArgs {
    #[command(subcommand)]
    command: CsvCommand,
}

#[derive(Debug, Subcommand)]
enum CsvCommand {
    Export(CsvExportArgs),
    Import(CsvImportArgs),
}

/// Write one table as CSV, from a mirror or a live database.
///
/// Example:
///   pgmirror csv export --from backup.db --table Users --output users.csv
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct CsvExportArgs {
    /// Read the table from this mirror.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "source",
        required_unless_present = "source"
    )]
    from: Option<PathBuf>,
    /// Read the table from this live database instead (a URL or key=value string).
    #[arg(long, value_name = "URL")]
    source: Option<String>,
    /// The table: its name as written (case-sensitive), or schema.table.
    #[arg(long, value_name = "TABLE")]
    table: String,
    /// The CSV file to write (replaced only when complete), or - for stdout.
    #[arg(long, short, value_name = "FILE", default_value = "-")]
    output: String,
    #[command(flatten)]
    report: ReportArgs,
}

/// Load a CSV file with a header into an existing table, in one transaction.
///
/// Columns are matched by the header's names, in any order; columns not in the file take
/// their defaults. A malformed row stops the import, names its line and column, and
/// nothing is committed. Sequences are moved past the imported values afterwards.
///
/// Example:
///   pgmirror csv import --target postgres://app@localhost/prompts --table Users --input users.csv
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct CsvImportArgs {
    /// The database to load into: a URL or key=value string; PG* variables fill the rest.
    #[arg(long, value_name = "URL", default_value = "", hide_default_value = true)]
    target: String,
    /// The table: its name as written (case-sensitive), or schema.table.
    #[arg(long, value_name = "TABLE")]
    table: String,
    /// The CSV file to read, or - for stdin.
    #[arg(long, short, value_name = "FILE", default_value = "-")]
    input: String,
    /// replace: empty the table first; append: add the rows; upsert: insert or update by primary key.
    #[arg(long, value_enum, default_value_t = ModeArg::Replace)]
    mode: ModeArg,
    /// Read empty fields as NULL even when quoted: for CSV from tools that cannot tell
    /// NULL from '' (sqlite3's .mode csv).
    #[arg(long)]
    empty_as_null: bool,
    /// Turn the table's user triggers off while the rows load, and the same ones on again
    /// before the commit, so the table holds the file's rows, not what triggers make of
    /// them. Needs the table's owner. Without it, triggers that fire are listed as a warning.
    #[arg(long)]
    disable_triggers: bool,
    #[command(flatten)]
    report: ReportArgs,
}

pub fn run(args: CsvArgs) -> anyhow::Result<ExitCode> {
    let (summary, report, verb) = match args.command {
        CsvCommand::Export(args) => {
            let source = match (args.from, args.source) {
                (Some(path), _) => CsvSource::Mirror(path),
                (None, Some(url)) => CsvSource::Live(Box::new(ConnectionSpec::parse(&url)?)),
                (None, None) => anyhow::bail!("give --from MIRROR or --source URL"),
            };
            let options = CsvExportOptions {
                source,
                table: args.table,
                output: args.output,
            };
            let summary =
                pgmirror::csv::export(&options).context("CSV export failed; no file was written")?;
            (summary, args.report, "exported")
        }
        CsvCommand::Import(args) => {
            let options = CsvImportOptions {
                target: ConnectionSpec::parse(&args.target)?,
                table: args.table,
                input: args.input,
                mode: args.mode.into(),
                empty_as_null: args.empty_as_null,
                disable_triggers: args.disable_triggers,
            };
            let summary =
                pgmirror::csv::import(&options).context("CSV import failed; the table is unchanged")?;
            (summary, args.report, "imported")
        }
    };
    report_summary(&summary, &report, verb)
}

fn report_summary(summary: &CsvSummary, report: &ReportArgs, verb: &str) -> anyhow::Result<ExitCode> {
    if report.json {
        print_stdout(&serde_json::to_string_pretty(summary)?)?;
    }
    for warning in &summary.warnings {
        eprintln!("pgmirror: warning: {warning}");
    }
    if !report.quiet {
        eprintln!("{verb} {} rows of table {}", summary.rows, summary.table);
    }
    Ok(ExitCode::SUCCESS)
}
