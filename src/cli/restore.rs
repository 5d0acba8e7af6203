//! `pgmirror restore`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use pgmirror::archive::{self, ArchiveFormat, ArchiveRestoreOptions, FileKind};
use pgmirror::pg::ConnectionSpec;
use pgmirror::restore::{RestoreMode, RestoreOptions};
use pgmirror::TableFilter;

use super::ReportArgs;

/// Put tables from a mirror (or a pg_dump archive) back into PostgreSQL, exactly.
///
/// Every value is converted back with the PostgreSQL type the mirror recorded and loaded
/// with COPY. The whole restore is one transaction: on any error nothing changes in the
/// target and the message names the table, row and column. Tables are loaded in
/// foreign-key order; afterwards serial and identity sequences are moved past the restored
/// values, so the application's next INSERT does not collide. Generated columns are left
/// to the server. Before anything is written, the target's columns are compared with the
/// mirror's and every difference is listed.
///
/// Given a pg_dump archive (custom, directory, tar, or plain SQL, possibly .zst/.gz),
/// restore runs pg_restore (or psql for plain SQL) with the same version checks; one
/// --table into an existing table replaces that table's rows.
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
    #[arg(long, value_name = "URL", default_value = "", hide_default_value = true)]
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
    /// Mirrors: create what the target lacks from the mirror's definitions, in pg_dump's
    /// order: extensions, types, functions, sequences and tables (partitions, inheritance,
    /// collations) before the rows; keys, indexes, foreign keys, views, materialized views
    /// and triggers after them, so no trigger fires on a restored row. An object the target
    /// cannot have (a missing C library) stops the restore before any row, named.
    /// Archives: create the database named in the archive (--target then names the
    /// database to connect to first, e.g. postgres).
    #[arg(long)]
    create: bool,
    /// Mirrors: replace tables even when the mirror's table was filtered (--where) or
    /// redacted at export, deleting the target rows the mirror does not hold.
    #[arg(long)]
    force: bool,
    /// Mirrors: turn the target tables' user triggers off while the rows load, and the same
    /// ones on again before the commit, so the tables hold the mirror's rows, not what
    /// triggers make of them (pg_restore's option; foreign-key checks stay on). Needs the
    /// tables' owner. Without it, triggers that fire are listed as a warning.
    #[arg(long)]
    disable_triggers: bool,
    /// Archives only: restore only the definitions.
    #[arg(long)]
    schema_only: bool,
    /// Archives only: restore only the rows.
    #[arg(long)]
    data_only: bool,
    /// Archives only: drop objects before recreating them.
    #[arg(long)]
    clean: bool,
    /// Archives only: parallel pg_restore workers (gives up the single transaction).
    #[arg(long, short, value_name = "N")]
    jobs: Option<usize>,
    /// Archives only: directory holding pg_restore and psql.
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
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

pub fn run(mut args: RestoreArgs) -> anyhow::Result<ExitCode> {
    if !args.from.exists() {
        anyhow::bail!("{} does not exist", args.from.display());
    }
    // An encrypted backup is restored from its decryption, removed when this returns.
    let plain = pgmirror::crypt::Plain::of(&args.from)?;
    args.from = plain.path().to_path_buf();
    if let FileKind::Archive(format) = archive::detect(&args.from)? {
        return run_archive(args, format);
    }
    let archive_only = [
        ("--schema-only", args.schema_only),
        ("--data-only", args.data_only),
        ("--clean", args.clean),
        ("--jobs", args.jobs.is_some()),
        ("--pg-bin", args.pg_bin.is_some()),
    ];
    if let Some((flag, _)) = archive_only.iter().find(|(_, given)| *given) {
        anyhow::bail!(
            "{flag} applies to pg_dump archives; {} is a pgmirror mirror",
            args.from.display()
        );
    }
    let options = RestoreOptions {
        from: args.from,
        target: ConnectionSpec::parse(&args.target)?,
        filter: TableFilter::new(&args.schema, &args.table, &[])?,
        mode: args.mode.into(),
        create: args.create,
        force: args.force,
        disable_triggers: args.disable_triggers,
        quiet: args.report.quiet,
    };
    let summary = pgmirror::restore::restore(&options).context("restore failed; the target is unchanged")?;
    args.report.print_json(&summary)?;
    // Warnings are shown even with --quiet: the target may not hold the mirror's rows.
    for warning in &summary.warnings {
        eprintln!("pgmirror: warning: {warning}");
    }
    if !args.report.quiet {
        for sequence in &summary.sequences {
            eprintln!("sequence {sequence}");
        }
        eprintln!("{}", summary.line());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_archive(args: RestoreArgs, format: ArchiveFormat) -> anyhow::Result<ExitCode> {
    if !args.schema.is_empty() || !matches!(args.mode, ModeArg::Replace) || args.disable_triggers {
        anyhow::bail!(
            "--schema, --mode and --disable-triggers apply to mirrors; {} is a pg_dump archive",
            args.from.display()
        );
    }
    let options = ArchiveRestoreOptions {
        from: args.from,
        format,
        target: ConnectionSpec::parse(&args.target)?,
        tables: args.table,
        schema_only: args.schema_only,
        data_only: args.data_only,
        clean: args.clean,
        create: args.create,
        jobs: args.jobs,
        pg_bin: args.pg_bin,
    };
    let summary = archive::restore_archive(&options).context("restore failed")?;
    args.report.print_json(&summary)?;
    if !args.report.quiet {
        eprintln!(
            "restored {} ({:?} archive) into {} in {:.2} s",
            summary.from, summary.format, summary.target, summary.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}
