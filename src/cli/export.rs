//! `pgmirror export`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pgmirror::config::{Curation, Profile, RedactWith};
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
    #[arg(long, short, value_name = "FILE", required_unless_present = "plan")]
    output: Option<PathBuf>,
    /// Print what the export would do (tables, codecs, COPY statements, chunks) as JSON,
    /// without reading a row or writing a file.
    #[arg(long)]
    plan: bool,
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
    /// Rows per batch sent from a worker to the SQLite writer (batches are also capped at 4 MB).
    #[arg(long, value_name = "N", default_value_t = BatchLimits::default().rows)]
    batch_rows: usize,
    /// pages: build the tables' SQLite B-tree pages directly (fast; used wherever every
    /// table is an ordinary rowid table, which is always so without --sqlite-schema).
    /// sqlite: SQLite's own insert path. Both write the same rows; indexes, metadata and
    /// ANALYZE are SQLite's work either way.
    #[arg(long, value_enum, value_name = "pages|sqlite", default_value = "pages")]
    writer: WriterArg,
    /// Only rows of TABLE for which CONDITION holds (repeatable): a PostgreSQL boolean
    /// expression over the table's columns, subqueries allowed, evaluated in the snapshot.
    /// Example: --where 'Prompts:"Id" IN (SELECT "Id" FROM "NonDraftPrompts")'
    #[arg(long = "where", value_name = "TABLE:CONDITION")]
    wheres: Vec<String>,
    /// Leave this column out of the mirror entirely (repeatable).
    #[arg(long, value_name = "TABLE.COLUMN")]
    exclude_column: Vec<String>,
    /// Keep this column but not its values (repeatable): NULL, or a keyed hash with --redact-with hash.
    #[arg(long, value_name = "TABLE.COLUMN")]
    redact: Vec<String>,
    /// null: redacted columns hold NULL. hash: HMAC-SHA256 of the value under a secret
    /// key (from --redact-key-file or PGMIRROR_REDACT_KEY), so joins on it still work.
    #[arg(long, value_enum, value_name = "null|hash")]
    redact_with: Option<RedactArg>,
    /// File holding the key for --redact-with hash.
    #[arg(long, value_name = "FILE")]
    redact_key_file: Option<PathBuf>,
    /// Export a query's result as table NAME (repeatable), e.g. --query 'Counts=SELECT ...'.
    #[arg(long, value_name = "NAME=SELECT...")]
    query: Vec<String>,
    /// Export a view's rows as a table (repeatable).
    #[arg(long, value_name = "VIEW")]
    include_view: Vec<String>,
    /// Create the data tables from this SQLite DDL file, exactly as written (column order,
    /// types, keys, AUTOINCREMENT, foreign keys, indexes), and fill each from the --query,
    /// or else the source table, of its name, matching columns by name: a column on one
    /// side only is an error before any work. The file is then not a mirror of tables
    /// (restore refuses it). In a profile: sqlite_schema = "FILE", relative to the profile.
    #[arg(long, value_name = "FILE")]
    sqlite_schema: Option<PathBuf>,
    /// A TOML file with tables, exclude_tables, schemas, where, exclude_columns, redact,
    /// redact_with, queries, include_views and sqlite_schema; flags add to it. See the README.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RedactArg {
    Null,
    Hash,
}

/// Profile and flags together: the profile first, flags added.
fn curation(args: &ExportArgs, profile: &Profile) -> anyhow::Result<Curation> {
    let mut curation = Curation::default();
    for (table, condition) in &profile.wheres {
        curation.wheres.push((table.clone(), condition.clone()));
    }
    for text in &args.wheres {
        curation.wheres.push(Curation::parse_where(text)?);
    }
    for text in profile.exclude_columns.iter().chain(&args.exclude_column) {
        curation
            .excluded_columns
            .push(Curation::parse_column("--exclude-column", text)?);
    }
    for text in profile.redact.iter().chain(&args.redact) {
        curation
            .redacted_columns
            .push(Curation::parse_column("--redact", text)?);
    }
    for (name, sql) in &profile.queries {
        curation.queries.push((name.clone(), sql.clone()));
    }
    for text in &args.query {
        curation.queries.push(Curation::parse_query(text)?);
    }
    curation.include_views = profile
        .include_views
        .iter()
        .chain(&args.include_view)
        .cloned()
        .collect();
    if let Some(path) = args.sqlite_schema.as_ref().or(profile.sqlite_schema.as_ref()) {
        curation.sqlite_schema = Some(pgmirror::plan::given::GivenSchema::load(path)?);
    }
    let hash = match (args.redact_with, profile.redact_with.as_deref()) {
        (Some(RedactArg::Hash), _) | (None, Some("hash")) => true,
        (Some(RedactArg::Null), _) | (None, Some("null") | None) => false,
        (None, Some(other)) => {
            anyhow::bail!("profile: redact_with must be \"null\" or \"hash\", not {other:?}")
        }
    };
    if hash {
        let key = match &args.redact_key_file {
            Some(path) => std::fs::read(path).with_context(|| format!("reading --redact-key-file {}", path.display()))?,
            None => std::env::var("PGMIRROR_REDACT_KEY").map(String::into_bytes).map_err(|_| {
                anyhow::anyhow!("--redact-with hash needs a secret key: --redact-key-file FILE or PGMIRROR_REDACT_KEY")
            })?,
        };
        anyhow::ensure!(key.len() >= 16, "the redaction key must be at least 16 bytes");
        curation.redact_with = RedactWith::Hash { key };
    }
    Ok(curation)
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WriterArg {
    Pages,
    Sqlite,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let source = ConnectionSpec::parse(&args.connection.source)?;
    let profile = match &args.profile {
        Some(path) => Profile::load(path)?,
        None => Profile::default(),
    };
    let curation = curation(&args, &profile)?;
    let mut options = ExportOptions::new(source, args.output.clone().unwrap_or_default());
    options.curation = curation;
    if let Some(jobs) = args.jobs {
        anyhow::ensure!(jobs >= 1, "--jobs must be at least 1");
        options.jobs = jobs;
    }
    let joined = |from_profile: &[String], from_flags: &[String]| -> Vec<String> {
        from_profile.iter().chain(from_flags).cloned().collect()
    };
    options.filter = TableFilter::new(
        &joined(&profile.schemas, &args.filter.schema),
        &joined(&profile.tables, &args.filter.table),
        &joined(&profile.exclude_tables, &args.filter.exclude_table),
    )?;
    options.lock_wait_timeout = args.lock_wait_timeout;
    options.chunk_bytes = (args.chunk_size > 0).then_some(args.chunk_size);
    anyhow::ensure!(args.batch_rows >= 1, "--batch-rows must be at least 1");
    options.batch.rows = args.batch_rows;
    options.quiet = args.report.quiet;
    options.writer = match args.writer {
        WriterArg::Pages => pgmirror::config::Writer::Pages,
        WriterArg::Sqlite => pgmirror::config::Writer::Sqlite,
    };
    if args.plan {
        let plan = pgmirror::pipeline::plan_only(&options).context("planning the export failed")?;
        print_stdout(&serde_json::to_string_pretty(&plan)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let summary = pgmirror::export(&options).context("export failed; no mirror was written")?;
    args.report.print_json(&summary)?;
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
