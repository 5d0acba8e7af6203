//! `pgmirror restore`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use pgmirror::pg::ConnectionSpec;
use pgmirror::restore::{RestoreMode, RestoreOptions};
use pgmirror::TableFilter;

use super::{print_stdout, ReportArgs};

/// Put tables from a mirror back into PostgreSQL, exactly.
///
/// Every value is converted back with the PostgreSQL type the mirror recorded and loaded
/// with COPY. The whole restore is one transaction: on any error nothing changes in the
/// target and the message names the table, row and column. Tables are loaded in
/// foreign-key order; afterwards serial and identity sequences are moved past the restored
/// values, so the application's next INSERT does not collide. Generated columns are left
/// to the server. Before anything is written, the target's columns are compared with the
/// mirror's and every difference is listed.
///
/// Examples:
///   pgmirror restore --from backup.db --target postgres://app@localhost/prompts --table Users
///   pgmirror restore --from backup.db --target postgres://app@localhost/scratch --create
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RestoreArgs {
    /// The mirror to restore from (written by `pgmirror export`).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The database to restore into: a URL or key=value string; PG* variables fill the rest.
    #[arg(long, value_name = "URL", default_value = "")]
    target: String,
    /// Only this table (repeatable; name as written, optionally schema.table, globs allowed).
    /// Default: every table in the mirror.
    #[arg(long, value_name = "TABLE")]
    table: Vec<String>,
    /// Only tables of this schema (repeatable).
    #[arg(long, value_name = "SCHEMA")]
    schema: Vec<String>,
    /// replace: empty each table first; append: add the rows; upsert: insert or update by primary key.
    #[arg(long, value_enum, default_value_t = ModeArg::Replace)]
    mode: ModeArg,
    /// Create tables missing in the target from the mirror's definitions (enum and domain
    /// types must exist already).
    #[arg(long)]
    create: bool,
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Replace,
    Append,
    Upsert,
}

impl From<ModeArg> for RestoreMode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Replace => RestoreMode::Replace,
            ModeArg::Append => RestoreMode::Append,
            ModeArg::Upsert => RestoreMode::Upsert,
        }
    }
}

pub fn run(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let options = RestoreOptions {
        from: args.from,
        target: ConnectionSpec::parse(&args.target)?,
        filter: TableFilter::new(&args.schema, &args.table, &[])?,
        mode: args.mode.into(),
        create: args.create,
        quiet: args.report.quiet,
    };
    let summary = pgmirror::restore::restore(&options).context("restore failed; the target is unchanged")?;
    if args.report.json {
        print_stdout(&serde_json::to_string_pretty(&summary)?)?;
    }
    if !args.report.quiet {
        for sequence in &summary.sequences {
            eprintln!("sequence {sequence}");
        }
        eprintln!("{}", summary.line());
    }
    Ok(ExitCode::SUCCESS)
}
