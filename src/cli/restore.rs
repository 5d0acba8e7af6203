//! `pgmirror restore`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use pgmirror::archive::{self, ArchiveFormat, ArchiveRestoreOptions, FileKind};
use pgmirror::config::BackupConfig;
use pgmirror::pg::ConnectionSpec;
use pgmirror::recover::{self, Scope};
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
/// Given a backup set (a directory of `pgmirror backup`, or an off-site s3:// or file://
/// address), restore takes its newest complete, verified backup (--backup ID picks
/// another), checks every file against the manifest, decrypts (--identity) and restores:
/// the pg_dump archive for the whole database, the mirror when --table or --schema is
/// given (or when the backup has no archive). A whole-database restore from a set refuses
/// a target database that holds anything, unless --clean; --create-database creates a
/// missing one. Afterwards each table's rows are counted against the manifest's.
/// Off-site addresses use the endpoint and region of the config file's [[offsite]]
/// target they start with, else the standard AWS_* settings; files are downloaded to a
/// private temporary directory (TMPDIR) and removed afterwards.
///
/// Examples:
///   pgmirror restore --from backup.db --target postgres://app@localhost/prompts --table Users
///   pgmirror restore --from backup.db --target postgres://app@localhost/scratch --create
///   pgmirror restore --from /backups --target postgres://app@localhost/prompts --create-database
///   pgmirror restore --config pgmirror.toml --from s3://bucket/prompts --identity key.txt \
///       --target postgres://app@localhost/prompts --create-database
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RestoreArgs {
    /// What to restore from: a mirror or pg_dump archive (FILE), a backup set or one of its
    /// backups (DIR), or the same off-site (s3://bucket/prefix[/ID[/FILE]], file:///dir/...).
    #[arg(long, value_name = "FILE|DIR|ADDRESS")]
    from: String,
    /// From a backup set: this backup (its id, YYYYmmddTHHMMSSZ) instead of the newest verified.
    #[arg(long, value_name = "ID")]
    backup: Option<String>,
    /// Create the target database when it does not exist (never drops anything).
    #[arg(long)]
    create_database: bool,
    /// A TOML config file whose [[offsite]] targets give off-site addresses their endpoint
    /// and region [default: PGMIRROR_CONFIG, else ~/.config/pgmirror/config.toml if it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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
    /// Archives: drop objects before recreating them. From a backup set: restore into a
    /// database that is not empty.
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

pub fn run(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let scope = if args.table.is_empty() && args.schema.is_empty() {
        Scope::Database
    } else {
        Scope::Tables
    };
    let targets = if pgmirror::offsite::is_address(&args.from) {
        BackupConfig::load(args.config.as_deref())?.offsite
    } else {
        Vec::new()
    };
    let located = recover::locate(&args.from, &targets, args.backup.as_deref(), scope)?;
    let file = match &located {
        Some(located) => located.file.clone(),
        None => PathBuf::from(&args.from),
    };
    if !file.exists() {
        anyhow::bail!("{} does not exist", file.display());
    }
    if located.as_ref().is_some_and(|l| !l.checked) {
        eprintln!(
            "pgmirror: warning: no manifest beside {}: its checksum was not checked",
            args.from
        );
    }
    let backup = located.as_ref().and_then(|l| l.backup.clone());
    let whole_backup = backup.is_some() && scope == Scope::Database;
    if let Some(backup) = &backup {
        if !args.report.quiet {
            eprintln!(
                "restoring backup {} ({}, made {}) from {}",
                backup.id,
                pgmirror::backupset::kinds_label(&backup.kinds),
                backup.created,
                args.from
            );
        }
    }
    // An encrypted backup is restored from its decryption, removed when this returns.
    let plain = pgmirror::crypt::Plain::of(&file)?;
    let from = plain.path().to_path_buf();
    let kind = archive::detect(&from)?;
    check_flags(&args, &kind, whole_backup)?;
    // Only once the backup was found, checked and decrypted is the target touched.
    if args.create_database || whole_backup {
        let target = ConnectionSpec::parse(&args.target)?;
        let prepared = recover::prepare_database(&target, args.create_database, whole_backup, args.clean)?;
        if prepared == recover::Prepared::Created && !args.report.quiet {
            eprintln!("created database {:?}", target.database());
        }
    }
    let restored = if let FileKind::Archive(format) = kind {
        run_archive(&args, from, format)
    } else {
        run_mirror(&args, from, whole_backup)
    }?;
    let all_there = match &backup {
        Some(backup) => check_counts(&args, backup, scope)?,
        None => true,
    };
    drop(located);
    Ok(if all_there { restored } else { ExitCode::from(1) })
}

/// Row counts against the backup's manifest, printed; differences are warnings (an archive
/// is dumped after the mirror, so a live database may have changed in between), a table
/// the restore did not bring back is an error. False when one is missing.
fn check_counts(
    args: &RestoreArgs,
    backup: &pgmirror::backupset::BackupManifest,
    scope: Scope,
) -> anyhow::Result<bool> {
    let target = ConnectionSpec::parse(&args.target)?;
    let filter = TableFilter::new(&args.schema, &args.table, &[])?;
    let only = (scope == Scope::Tables).then_some(&filter);
    let checks = recover::count_rows(&target, &backup.tables, only)?;
    if !args.report.quiet {
        for check in &checks {
            let restored = check
                .restored_rows
                .map_or_else(|| "missing".to_owned(), |n| n.to_string());
            let mark = if check.matches() { "ok" } else { "DIFFERS" };
            eprintln!(
                "  {:<40} manifest {:>12}  restored {:>12}  {mark}",
                check.table, check.manifest_rows, restored
            );
        }
    }
    let missing: Vec<&str> = checks
        .iter()
        .filter(|c| c.restored_rows.is_none())
        .map(|c| c.table.as_str())
        .collect();
    let differing: Vec<&str> = checks
        .iter()
        .filter(|c| !c.matches() && c.restored_rows.is_some())
        .map(|c| c.table.as_str())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "pgmirror: {} of {} tables of backup {} are not in the target after the restore: {}",
            missing.len(),
            checks.len(),
            backup.id,
            missing.join(", ")
        );
    }
    if !differing.is_empty() {
        eprintln!(
            "pgmirror: warning: {} of {} tables differ from backup {}'s row counts: {}",
            differing.len(),
            checks.len(),
            backup.id,
            differing.join(", ")
        );
    } else if missing.is_empty() && !args.report.quiet && !checks.is_empty() {
        eprintln!(
            "row counts match backup {} for all {} tables",
            backup.id,
            checks.len()
        );
    }
    Ok(missing.is_empty())
}

/// Flags that do not apply to what is restored, refused before the target is touched.
fn check_flags(args: &RestoreArgs, kind: &FileKind, whole_backup: bool) -> anyhow::Result<()> {
    if let FileKind::Archive(_) = kind {
        if !args.schema.is_empty() || !matches!(args.mode, ModeArg::Replace) || args.disable_triggers {
            anyhow::bail!(
                "--schema, --mode and --disable-triggers apply to mirrors; {} is a pg_dump archive",
                args.from
            );
        }
        if whole_backup && args.create {
            anyhow::bail!(
                "--create makes pg_restore create the archive's database; from a backup set, \
                 --create-database creates the --target database instead"
            );
        }
        return Ok(());
    }
    let archive_only = [
        ("--schema-only", args.schema_only),
        ("--data-only", args.data_only),
        ("--clean", args.clean && !whole_backup),
        ("--jobs", args.jobs.is_some()),
        ("--pg-bin", args.pg_bin.is_some()),
    ];
    if let Some((flag, _)) = archive_only.iter().find(|(_, given)| *given) {
        anyhow::bail!(
            "{flag} applies to pg_dump archives; {} is a pgmirror mirror",
            args.from
        );
    }
    Ok(())
}

fn run_mirror(args: &RestoreArgs, from: PathBuf, whole_backup: bool) -> anyhow::Result<ExitCode> {
    let options = RestoreOptions {
        from,
        target: ConnectionSpec::parse(&args.target)?,
        filter: TableFilter::new(&args.schema, &args.table, &[])?,
        mode: args.mode.into(),
        // A whole database from a mirror: its definitions make what the target lacks.
        create: args.create || whole_backup,
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

fn run_archive(args: &RestoreArgs, from: PathBuf, format: ArchiveFormat) -> anyhow::Result<ExitCode> {
    let options = ArchiveRestoreOptions {
        from,
        format,
        target: ConnectionSpec::parse(&args.target)?,
        tables: args.table.clone(),
        schema_only: args.schema_only,
        data_only: args.data_only,
        clean: args.clean,
        create: args.create,
        jobs: args.jobs,
        pg_bin: args.pg_bin.clone(),
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
