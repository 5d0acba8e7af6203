//! `pgmirror dump` and `pgmirror verify`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use pgmirror::archive::{self, ArchiveFormat, DumpOptions, PlainCompression};
use pgmirror::pg::ConnectionSpec;

use super::{print_stdout, ConnectionArgs, ReportArgs};

/// Write a native PostgreSQL archive with pg_dump, verified and checksummed.
///
/// pg_dump runs with the connection in its environment (the password never appears in
/// its arguments). The archive is written as FILE.partial and renamed only after
/// `pg_restore --list` (or, for plain SQL, a full read to pg_dump's end-of-dump marker)
/// succeeded; FILE.manifest.json beside it records its sha256, size, format, versions and
/// tables. Files are 0600. The pg_dump used must be at least the server's major version:
/// the first on PATH, else the newest under /usr/lib/postgresql/*/bin, or --pg-bin DIR.
///
/// Examples:
///   pgmirror dump --source postgres://app@localhost/prompts --dir /backups
///   pgmirror dump --source ... --output prompts.sql.zst --format plain --compress zstd:9
///   pgmirror dump --source ... --dir /backups --exclude-table-data ApplicationLogs
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct DumpArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// The archive to write.
    #[arg(
        long,
        short,
        value_name = "FILE",
        conflicts_with = "dir",
        required_unless_present = "dir"
    )]
    output: Option<PathBuf>,
    /// Write into this directory as <database>_<YYYYmmdd_HHMMSS>.backup (UTC), as the
    /// backup guide's scripts name their files.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = FormatArg::Custom)]
    format: FormatArg,
    /// custom/directory/tar: pg_dump's --compress value (default zstd where pg_dump 16+
    /// supports it). plain: zstd[:LEVEL], gzip[:LEVEL] or none, done while streaming.
    #[arg(long, value_name = "METHOD[:LEVEL]")]
    compress: Option<String>,
    #[arg(long)]
    schema_only: bool,
    #[arg(long)]
    data_only: bool,
    /// Only this table (repeatable; case-sensitive name as written, optionally schema.table).
    #[arg(long, value_name = "TABLE")]
    table: Vec<String>,
    /// Leave this table out (repeatable).
    #[arg(long, value_name = "TABLE")]
    exclude_table: Vec<String>,
    /// Keep this table's definition but not its rows (repeatable), e.g. ApplicationLogs.
    #[arg(long, value_name = "TABLE")]
    exclude_table_data: Vec<String>,
    /// Parallel pg_dump workers (directory format only).
    #[arg(long, short, value_name = "N")]
    jobs: Option<usize>,
    /// Directory holding pg_dump and pg_restore.
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Custom,
    Directory,
    Tar,
    Plain,
}

fn plain_compression(value: Option<&str>) -> anyhow::Result<PlainCompression> {
    let Some(value) = value else {
        return Ok(PlainCompression::None);
    };
    let (method, level) = match value.split_once(':') {
        Some((method, level)) => (
            method,
            Some(
                level
                    .parse::<i32>()
                    .with_context(|| format!("--compress {value}: bad level"))?,
            ),
        ),
        None => (value, None),
    };
    Ok(match method {
        "none" => PlainCompression::None,
        "zstd" => PlainCompression::Zstd(level.unwrap_or(3)),
        "gzip" => PlainCompression::Gzip(level.unwrap_or(6).clamp(0, 9) as u32),
        other => anyhow::bail!("--compress {other}: plain dumps take zstd[:LEVEL], gzip[:LEVEL] or none"),
    })
}

pub fn run_dump(args: DumpArgs) -> anyhow::Result<ExitCode> {
    let format = match args.format {
        FormatArg::Custom => ArchiveFormat::Custom,
        FormatArg::Directory => ArchiveFormat::Directory,
        FormatArg::Tar => ArchiveFormat::Tar,
        FormatArg::Plain => ArchiveFormat::Plain,
    };
    let plain = format == ArchiveFormat::Plain;
    let options = DumpOptions {
        source: ConnectionSpec::parse(&args.connection.source)?,
        output: args.output,
        dir: args.dir,
        format,
        plain_compression: if plain {
            plain_compression(args.compress.as_deref())?
        } else {
            PlainCompression::None
        },
        compress: if plain { None } else { args.compress },
        schema_only: args.schema_only,
        data_only: args.data_only,
        tables: args.table,
        exclude_tables: args.exclude_table,
        exclude_table_data: args.exclude_table_data,
        jobs: args.jobs,
        pg_bin: args.pg_bin,
    };
    let summary = archive::dump(&options).context("dump failed; no archive was written")?;
    args.report.print_json(&summary)?;
    if !args.report.quiet {
        eprintln!(
            "dumped {} tables of {} to {} ({} bytes, sha256 {}), verified by {}",
            summary.manifest.tables.len(),
            summary.manifest.database,
            summary.path.display(),
            summary.manifest.size_bytes,
            summary.manifest.sha256,
            summary.manifest.verify_method
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Check an archive, a mirror or a whole backup set: exit 0 when sound, 1 with every
/// problem listed, 2 on usage errors.
///
/// Archives are checked against their manifest (size and sha256), then structurally
/// (`pg_restore --list`, or a full read of a plain dump to its end-of-dump marker).
/// Mirrors get SQLite's integrity_check, their row counts against the metadata, and every
/// kept exact number text against its cell (a number edited after export is named). With
/// --dir, every backup of the set is checked against its manifest; --source also compares
/// the newest mirror's row counts with the live database, and --drill restores the newest
/// mirror into a scratch database and checks what came back.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The archive or mirror.
    #[arg(value_name = "FILE", required_unless_present_any = ["dir", "offsite"])]
    file: Option<PathBuf>,
    /// Verify every backup of this backup set instead.
    #[arg(long, value_name = "DIR", conflicts_with = "file")]
    dir: Option<PathBuf>,
    /// With --dir: compare the newest mirror's row counts with this live database.
    #[arg(long, value_name = "URL", requires = "dir")]
    source: Option<String>,
    /// With --dir: restore the newest mirror into this scratch database and check it.
    #[arg(long, value_name = "URL", requires = "dir")]
    drill: Option<String>,
    /// Directory holding pg_restore.
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
    /// Check the copies on this [[offsite]] target instead (every object against its
    /// manifest there; every local backup must be there).
    #[arg(long, value_name = "NAME", requires = "config", conflicts_with = "file")]
    offsite: Option<String>,
    /// The config file naming the backup directory and the off-site targets.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    report: ReportArgs,
}

pub fn run_verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(name) = &args.offsite {
        let config = pgmirror::config::BackupConfig::load(args.config.as_deref())?;
        let dir = args
            .dir
            .clone()
            .or_else(|| config.dir.clone())
            .ok_or_else(|| anyhow::anyhow!("give --dir DIR (or `dir` in the config file)"))?;
        let (problems, backups) = super::offsite::verify(&dir, &config, name)?;
        let report = serde_json::json!({ "target": name, "backups": backups, "problems": problems });
        let sound = format!("offsite {name}: {backups} backups, every object sound");
        let found = format!("offsite {name}: {} problem(s):", problems.len());
        return report_findings(&report, &problems, &args.report, &sound, &found);
    }
    if let Some(dir) = &args.dir {
        return run_verify_set(dir, &args);
    }
    let file = args.file.clone().unwrap_or_default();
    let report = archive::verify(&file, args.pg_bin.as_deref())?;
    let sound = format!("{}: sound {}", report.file, report.kind);
    let found = format!(
        "{}: {} problem(s) in this {}:",
        report.file,
        report.problems.len(),
        report.kind
    );
    report_findings(&report, &report.problems, &args.report, &sound, &found)
}

/// Prints a verification's report (JSON, or a line and the problems) and maps it to the
/// exit code: 0 when sound, 1 when problems were found.
fn report_findings<T: serde::Serialize>(
    report: &T,
    problems: &[String],
    output: &ReportArgs,
    sound: &str,
    found: &str,
) -> anyhow::Result<ExitCode> {
    if output.json {
        print_stdout(&serde_json::to_string_pretty(report)?)?;
    } else if problems.is_empty() {
        if !output.quiet {
            print_stdout(sound)?;
        }
    } else {
        let mut text = found.to_owned();
        for problem in problems {
            text.push_str(&format!("\n  - {problem}"));
        }
        print_stdout(&text)?;
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_verify_set(dir: &std::path::Path, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    use pgmirror::backupset;
    let mut report = backupset::verify_set(dir, args.pg_bin.as_deref())?;
    if let Some(source) = &args.source {
        report.problems.extend(backupset::compare_with_live(
            dir,
            &ConnectionSpec::parse(source)?,
        )?);
    }
    if let Some(scratch) = &args.drill {
        report
            .problems
            .extend(backupset::drill(dir, &ConnectionSpec::parse(scratch)?)?);
    }
    if !report.not_decrypted.is_empty() && !args.report.quiet {
        eprintln!(
            "note: {} encrypted file(s) checked against their checksums only; give --identity FILE to check their contents",
            report.not_decrypted.len()
        );
    }
    let sound = format!("{}: {} backups, all sound", report.dir, report.backups);
    let found = format!(
        "{}: {} problem(s) in {} backups:",
        report.dir,
        report.problems.len(),
        report.backups
    );
    report_findings(&report, &report.problems, &args.report, &sound, &found)
}
