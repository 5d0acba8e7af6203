//! `pgmirror restore --from ARCHIVE`: pg_restore (or psql for plain SQL), with the same
//! version check, password handling and error capture as `dump`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::Serialize;

use super::{tools, ArchiveFormat};
use crate::error::{Context, Error, Result};
use crate::pg::{qualified, ConnectionSpec};

#[derive(Debug, Clone)]
pub struct ArchiveRestoreOptions {
    pub from: PathBuf,
    pub format: ArchiveFormat,
    pub target: ConnectionSpec,
    /// Tables as written (case-sensitive, optionally `schema.table`).
    pub tables: Vec<String>,
    pub schema_only: bool,
    pub data_only: bool,
    /// Drop objects before recreating them.
    pub clean: bool,
    /// Create the database named in the archive (connecting to the target's database first).
    pub create: bool,
    pub jobs: Option<usize>,
    pub pg_bin: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveRestoreSummary {
    pub from: String,
    pub target: String,
    pub format: ArchiveFormat,
    pub tables: Vec<String>,
    pub seconds: f64,
}

async fn server_version_num(target: &ConnectionSpec) -> Result<i32> {
    let client = target.connect().await?;
    Ok(client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .context("reading the target's server version")?
        .get(0))
}

async fn table_exists(target: &ConnectionSpec, written: &str) -> Result<bool> {
    let client = target.connect().await?;
    let name = match written.split_once('.') {
        Some((schema, table)) => qualified(schema, table),
        None => qualified("public", written),
    };
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await
        .context("looking for the table in the target")?
        .get(0))
}

pub fn restore_archive(options: &ArchiveRestoreOptions) -> Result<ArchiveRestoreSummary> {
    let started = std::time::Instant::now();
    if options.schema_only && options.data_only {
        return Err(Error::usage("--schema-only and --data-only exclude each other"));
    }
    let runtime = crate::pg::runtime()?;
    let needed = tools::server_major(runtime.block_on(server_version_num(&options.target))?);
    let from = options.from.display().to_string();
    let what = format!("restoring {from} into {}", options.target.redacted());
    if options.format == ArchiveFormat::Plain {
        if !options.tables.is_empty()
            || options.schema_only
            || options.data_only
            || options.clean
            || options.create
        {
            return Err(Error::usage(
                "a plain SQL dump is replayed whole: --table, --schema-only, --data-only, --clean and --create \
                 were decided when it was dumped",
            ));
        }
        let psql = tools::find("psql", needed, options.pg_bin.as_deref())?;
        let input = crate::compress::open_input(&from)?;
        pipe_into_psql(&psql, &options.target, b"", input, &what)?;
    } else {
        let pg_restore = tools::find("pg_restore", needed, options.pg_bin.as_deref())?;
        // One table into an existing table replaces its rows: TRUNCATE and the table's data
        // in one psql transaction.
        let replace_table = match options.tables.as_slice() {
            [table] if !options.schema_only && !options.create && !options.clean => runtime
                .block_on(table_exists(&options.target, table))?
                .then(|| table.clone()),
            _ => None,
        };
        match replace_table {
            Some(table) => {
                let psql = tools::find("psql", needed, options.pg_bin.as_deref())?;
                let mut command = tools::command(&pg_restore, &options.target);
                command
                    .args(["--data-only", "--file=-"])
                    .args(table_args(&table))
                    .arg(&options.from);
                let pg_restore_what = format!("pg_restore for {what}");
                let mut running = tools::spawn(
                    command.stdin(Stdio::null()).stdout(Stdio::piped()),
                    &pg_restore_what,
                )?;
                let script = running
                    .child
                    .stdout
                    .take()
                    .ok_or_else(|| Error::unsupported(what.clone(), "no stdout"))?;
                let relation = match table.split_once('.') {
                    Some((schema, name)) => qualified(schema, name),
                    None => qualified("public", &table),
                };
                let preamble = format!("TRUNCATE ONLY {relation};\n");
                let piped = pipe_into_psql(
                    &psql,
                    &options.target,
                    preamble.as_bytes(),
                    Box::new(script),
                    &what,
                );
                // When psql stops at an error, pg_restore dies of the closed pipe: psql's
                // message is the cause, so it is reported first.
                let restored = running.wait(&pg_restore_what);
                piped?;
                restored?;
            }
            None => {
                let mut command = tools::command(&pg_restore, &options.target);
                command.args(["--exit-on-error", "--no-password"]);
                let dbname = options.target.database().to_owned();
                command.arg(format!("--dbname={dbname}"));
                if options.schema_only {
                    command.arg("--schema-only");
                }
                if options.data_only {
                    command.arg("--data-only");
                }
                if options.clean {
                    command.args(["--clean", "--if-exists"]);
                }
                if options.create {
                    command.arg("--create");
                }
                match options.jobs {
                    Some(jobs) if jobs > 1 => {
                        command.arg(format!("--jobs={jobs}"));
                    }
                    // All or nothing where pg_restore allows it (not with --create or --jobs).
                    _ if !options.create => {
                        command.arg("--single-transaction");
                    }
                    _ => {}
                }
                for table in &options.tables {
                    command.args(table_args(table));
                }
                command.arg(&options.from);
                tools::run(command, &what)?;
            }
        }
    }
    Ok(ArchiveRestoreSummary {
        from,
        target: options.target.redacted(),
        format: options.format,
        tables: options.tables.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// pg_restore selects a table by its exact name (`--table`, case-sensitive, no patterns)
/// and its schema with `--schema`.
fn table_args(written: &str) -> Vec<String> {
    match written.split_once('.') {
        Some((schema, table)) => vec![format!("--schema={schema}"), format!("--table={table}")],
        None => vec![format!("--table={written}")],
    }
}

/// Feeds `preamble` then `script` to `psql -1 -v ON_ERROR_STOP=1`: one transaction, stopped
/// at the first error.
fn pipe_into_psql(
    psql: &tools::Tool,
    target: &ConnectionSpec,
    preamble: &[u8],
    mut script: Box<dyn Read>,
    what: &str,
) -> Result<()> {
    let what = &format!("psql for {what}");
    let mut command: Command = tools::command(psql, target);
    command.args([
        "-X",
        "-q",
        "--no-password",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "-f",
        "-",
    ]);
    let mut running = tools::spawn(command.stdin(Stdio::piped()).stdout(Stdio::null()), what)?;
    let mut stdin = running
        .child
        .stdin
        .take()
        .ok_or_else(|| Error::unsupported(what.to_owned(), "no stdin"))?;
    // psql stops reading at the first error; its own message is the one worth reporting.
    let fed = stdin
        .write_all(preamble)
        .and_then(|_| std::io::copy(&mut script, &mut stdin).map(|_| ()));
    drop(stdin);
    running.wait(what)?;
    fed.with_context(|| format!("feeding {what}"))
}
