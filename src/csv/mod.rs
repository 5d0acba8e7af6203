//! PostgreSQL's CSV dialect in both directions: NULL is an unquoted empty field, the empty
//! string is `""`; values in PostgreSQL's text form, so `psql \copy ... (FORMAT csv,
//! HEADER true)` reads the files as well.

mod header;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::pin::pin;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_postgres::Client;

use crate::compress::{open_input, Output};
use crate::convert::write_pg_text;
use crate::error::{Context, Error, Result};
use crate::load::target::{find_table, TargetTable};
use crate::load::{
    advance_sequences, copy_destination, empty_tables, upsert_from_staging, RestoreMode, TableRef,
};
use crate::mirror::{Mirror, RowReader};
use crate::pg::{qualified, quote_list, ConnectionSpec};

/// Where `csv export` reads the table.
#[derive(Debug, Clone)]
pub enum CsvSource {
    Mirror(PathBuf),
    Live(Box<ConnectionSpec>),
}

#[derive(Debug, Clone)]
pub struct CsvExportOptions {
    pub source: CsvSource,
    /// A table name as written, or `schema.table`.
    pub table: String,
    /// A file (`.zst` compresses) or `-` for stdout.
    pub output: String,
}

#[derive(Debug, Clone)]
pub struct CsvImportOptions {
    pub target: ConnectionSpec,
    pub table: String,
    /// A file (zstd recognised) or `-` for stdin.
    pub input: String,
    pub mode: RestoreMode,
    /// Treat quoted empty fields as NULL too, for CSV from tools that write both alike.
    pub empty_as_null: bool,
    /// Turn the table's user triggers off while loading (see `load::triggers`).
    pub disable_triggers: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CsvSummary {
    pub table: String,
    pub rows: u64,
    /// Sequences moved past the imported values (import only).
    pub sequences: Vec<String>,
    /// Triggers that fired on the imported rows (import only).
    pub warnings: Vec<String>,
}

const CHUNK_BYTES: usize = 1 << 20;

/// Writes one table as CSV with a header.
pub fn export(options: &CsvExportOptions) -> Result<CsvSummary> {
    let mut output = Output::create(&options.output)?;
    let (table, rows) = match &options.source {
        CsvSource::Mirror(path) => export_mirror(path, &options.table, &mut output)?,
        CsvSource::Live(spec) => {
            let runtime = crate::pg::runtime()?;
            runtime.block_on(crate::stop::until_stopped(None, async {
                let client = spec.connect().await?;
                // The COPY and the row count see the same snapshot.
                client
                    .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .context("starting a read-only transaction")?;
                export_live(&client, &options.table, &mut output).await
            }))?
        }
    };
    output.finish()?;
    Ok(CsvSummary {
        table,
        rows,
        sequences: Vec::new(),
        warnings: Vec::new(),
    })
}

/// A field in PostgreSQL's CSV dialect: `None` (NULL) is nothing, anything that could be
/// mistaken for NULL, a delimiter or the end-of-data marker is quoted.
pub fn write_csv_field(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let Some(value) = value else { return };
    let quote =
        value.is_empty() || value == b"\\." || value.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if !quote {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &byte in value {
        if byte == b'"' {
            out.push(b'"');
        }
        out.push(byte);
    }
    out.push(b'"');
}

fn write_header(out: &mut Vec<u8>, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_csv_field(out, Some(name.as_bytes()));
    }
    out.push(b'\n');
}

fn export_mirror(path: &std::path::Path, wanted: &str, output: &mut Output) -> Result<(String, u64)> {
    let mirror = Mirror::open(path)?;
    let table = mirror
        .tables
        .iter()
        .find(|t| t.sqlite_name == wanted || t.display_name() == wanted)
        .ok_or_else(|| Error::usage(format!("mirror {} has no table {wanted:?}", mirror.path)))?;
    if table.columns.is_empty() {
        return Err(Error::usage(format!(
            "table {} has no columns: the mirror records only its row count ({}), there is no CSV to write",
            table.display_name(),
            table.row_count
        )));
    }
    let columns = table.loadable_columns()?;
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    // money is kept as its number; written as the source's locale printed it, where known.
    let lc_monetary: String = mirror.meta("lc_monetary").unwrap_or_default();
    let is_money: Vec<bool> = columns
        .iter()
        .map(|(name, _)| {
            table
                .columns
                .iter()
                .any(|c| c.name == *name && c.type_oid == crate::convert::oids::MONEY)
        })
        .collect();
    let destination = output.name().to_owned();
    let writing = || format!("writing {destination}");
    let mut reader = RowReader::new(&mirror, table, &columns)?;
    let mut rows = reader.rows()?;
    let mut buffer = Vec::with_capacity(CHUNK_BYTES + 4096);
    write_header(&mut buffer, &names);
    let mut value = Vec::new();
    let mut count = 0;
    while let Some(row) = rows.next_row()? {
        for (index, (_, codec)) in columns.iter().enumerate() {
            if index > 0 {
                buffer.push(b',');
            }
            let cell = row.value(index)?;
            if let rusqlite::types::ValueRef::Null = cell {
                continue;
            }
            value.clear();
            write_pg_text(*codec, cell, &mut value);
            let money = is_money[index]
                .then(|| std::str::from_utf8(&value).ok())
                .flatten()
                .and_then(|number| crate::convert::pg_money_text(number, &lc_monetary));
            match money {
                Some(money) => write_csv_field(&mut buffer, Some(money.as_bytes())),
                None => write_csv_field(&mut buffer, Some(&value)),
            }
        }
        buffer.push(b'\n');
        count += 1;
        if buffer.len() >= CHUNK_BYTES {
            output.write_all(&buffer).with_context(writing)?;
            buffer.clear();
        }
    }
    output.write_all(&buffer).with_context(writing)?;
    Ok((table.display_name(), count))
}

/// Resolves a table name as written (`Users`, `audit.events`) in a live database.
async fn resolve(client: &Client, written: &str) -> Result<(TableRef, TargetTable)> {
    let mut candidates = vec![("public".to_owned(), written.to_owned())];
    if let Some((schema, name)) = written.split_once('.') {
        candidates.push((schema.to_owned(), name.to_owned()));
    }
    for (schema, name) in candidates {
        if let Some(target) = find_table(client, &schema, &name).await? {
            let table = TableRef {
                schema,
                name,
                partitioned: target.partitioned,
            };
            return Ok((table, target));
        }
    }
    Err(Error::usage(format!(
        "table {written:?} does not exist (names are case-sensitive; use schema.table outside public)"
    )))
}

async fn export_live(client: &Client, written: &str, output: &mut Output) -> Result<(String, u64)> {
    let (table, target) = resolve(client, written).await?;
    let names: Vec<&str> = target
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| c.name.as_str())
        .collect();
    let only = if table.partitioned { "" } else { "ONLY " };
    let sql = format!(
        "COPY (SELECT {} FROM {only}{}) TO STDOUT (FORMAT csv, HEADER true)",
        quote_list(&names),
        table.relation()
    );
    let context = || format!("reading table {}", table.display_name());
    let stream = client.copy_out(sql.as_str()).await.with_context(context)?;
    let mut stream = pin!(stream);
    let destination = output.name().to_owned();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(context)?;
        output
            .write_all(&chunk)
            .with_context(|| format!("writing {destination}"))?;
    }
    // copy_out does not report the row count, and quoted newlines make counting lines
    // wrong; the transaction's snapshot makes this count the COPY's.
    let rows = client
        .query_one(&format!("SELECT count(*) FROM {only}{}", table.relation()), &[])
        .await
        .with_context(context)?
        .get::<_, i64>(0);
    Ok((table.display_name(), rows as u64))
}

/// Loads a CSV file with a header into an existing table, in one transaction.
pub fn import(options: &CsvImportOptions) -> Result<CsvSummary> {
    let mut input = open_input(&options.input)?;
    let header_bytes = header::read_record(&mut input)
        .with_context(|| format!("reading the header of {}", options.input))?;
    let header = header::parse(&header_bytes)
        .map_err(|e| Error::usage(format!("{}, line 1 (the header): {e}", options.input)))?;
    let runtime = crate::pg::runtime()?;
    runtime.block_on(async {
        let client = options.target.connect().await?;
        client
            .batch_execute("BEGIN")
            .await
            .context("starting the import transaction")?;
        // As in restore: the work races the stop, the COMMIT does not.
        let work = import_in_transaction(&client, options, &header, header_bytes, &mut input);
        let result = crate::stop::until_stopped(None, work).await;
        crate::pg::finish_transaction(&client, result, "the import").await
    })
}

async fn import_in_transaction(
    client: &Client,
    options: &CsvImportOptions,
    header: &[String],
    header_bytes: Vec<u8>,
    input: &mut dyn Read,
) -> Result<CsvSummary> {
    let (table, target) = resolve(client, &options.table).await?;
    let name = table.display_name();
    let mut problems = Vec::new();
    for (i, column) in header.iter().enumerate() {
        match target.columns.iter().find(|c| &c.name == column) {
            None => problems.push(format!("column {column:?} of the header is not in table {name}")),
            Some(c) if c.generated => problems.push(format!(
                "column {column:?} is generated; leave it out of the file"
            )),
            Some(_) if header[..i].contains(column) => {
                problems.push(format!("column {column:?} appears twice in the header"))
            }
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        return Err(Error::usage(format!(
            "{}: {}",
            options.input,
            problems.join("; ")
        )));
    }
    if options.mode == RestoreMode::Upsert && target.primary_key.is_empty() {
        return Err(Error::usage(format!(
            "table {name} has no primary key; --mode upsert needs one"
        )));
    }
    let triggers =
        crate::load::triggers::Guard::take(client, std::slice::from_ref(&table), options.disable_triggers)
            .await?;
    let blame_triggers = |error| triggers.blame(error);
    if options.mode == RestoreMode::Replace {
        empty_tables(client, std::slice::from_ref(&table))
            .await
            .map_err(blame_triggers)?;
    }
    let destination = qualified(&table.schema, &table.name);
    let copy_into = copy_destination(client, &destination, &name, options.mode).await?;
    let columns = quote_list(header);
    let force_null = if options.empty_as_null {
        format!(", FORCE_NULL ({columns})")
    } else {
        String::new()
    };
    let sql = format!("COPY {copy_into} ({columns}) FROM STDIN (FORMAT csv, HEADER true{force_null})");
    let context = || {
        format!(
            "importing {} into table {name} (line numbers count the header as line 1)",
            options.input
        )
    };
    let sink = client.copy_in::<_, Bytes>(&sql).await.with_context(context)?;
    let mut sink = pin!(sink);
    sink.send(Bytes::from(header_bytes)).await.with_context(context)?;
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let read = input
            .read(&mut buffer)
            .with_context(|| format!("reading {}", options.input))?;
        if read == 0 {
            break;
        }
        crate::stop::check_stop()?;
        sink.send(Bytes::copy_from_slice(&buffer[..read]))
            .await
            .with_context(context)
            .map_err(blame_triggers)?;
    }
    let rows = sink
        .as_mut()
        .finish()
        .await
        .with_context(context)
        .map_err(blame_triggers)?;
    if options.mode == RestoreMode::Upsert {
        let names: Vec<&str> = header.iter().map(String::as_str).collect();
        upsert_from_staging(client, &destination, &names, &target, &name).await?;
    }
    let warnings = triggers.warning().into_iter().collect();
    triggers.finish(client).await?;
    let sequences = advance_sequences(client, &table, |_| None).await?;
    Ok(CsvSummary {
        table: name,
        rows,
        sequences,
        warnings,
    })
}
