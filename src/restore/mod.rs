//! Restore: tables from a mirror back into PostgreSQL, in one transaction, in foreign-key
//! order, with sequences moved past the restored values.

mod create;
mod load;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;

use crate::config::TableFilter;
use crate::error::{Context, Error, Result};
use crate::load::target::{self, ColumnSequence, TargetTable};
pub use crate::load::RestoreMode;
use crate::load::{advance_sequences, empty_tables, not_valid, triggers, TableRef};
use crate::mirror::{CurationKind, Mirror, MirrorTable};
use crate::pg::catalog::RelationKind;
use crate::pg::ConnectionSpec;
use crate::progress::Progress;

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub from: PathBuf,
    pub target: ConnectionSpec,
    pub filter: TableFilter,
    pub mode: RestoreMode,
    /// Create tables missing in the target from the mirror's recorded definitions.
    pub create: bool,
    /// Replace tables even when the mirror holds only some of their rows or values.
    pub force: bool,
    /// Turn the target tables' user triggers off while loading (on again before commit).
    pub disable_triggers: bool,
    pub quiet: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoredTable {
    pub table: String,
    pub rows: u64,
    pub created: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    pub from: String,
    pub target: String,
    pub mode: RestoreMode,
    pub tables: Vec<RestoredTable>,
    pub rows: u64,
    /// `sequence = value` for each sequence moved past the restored rows.
    pub sequences: Vec<String>,
    /// What the user should know: triggers that fired on the restored rows.
    pub warnings: Vec<String>,
    pub seconds: f64,
}

impl RestoreSummary {
    pub fn line(&self) -> String {
        format!(
            "restored {} tables, {} rows in {:.2} s from {} to {}",
            self.tables.len(),
            self.rows,
            self.seconds,
            self.from,
            self.target
        )
    }
}

/// One table of the restore: where it comes from and where it goes.
struct Job<'m> {
    table: &'m MirrorTable,
    target: TargetTable,
    created: bool,
}

/// Restores the selected tables of a mirror into the target database. All or nothing:
/// any error rolls the whole restore back.
pub fn restore(options: &RestoreOptions) -> Result<RestoreSummary> {
    let started = Instant::now();
    let mirror = Mirror::open(&options.from)?;
    if let Some(schema) = mirror.meta(crate::mirror::SQLITE_SCHEMA_KEY) {
        return Err(Error::unsupported(
            format!("restoring {}", mirror.path),
            format!(
                "it was exported into the SQLite schema of {schema}: its tables are query results in that \
                 schema's layout, not a mirror of the database's tables, so there is nothing to put back"
            ),
        ));
    }
    let selected = select(&mirror, &options.filter)?;
    let problems = mirror.problems_of(&selected);
    if !problems.is_empty() {
        return Err(Error::unsupported(
            format!("checking mirror {}", mirror.path),
            format!(
                "its metadata does not match its data, so a restore would not put back what was exported: {} \
                 (pgmirror verify lists every problem)",
                problems.join("; ")
            ),
        ));
    }
    let runtime = crate::pg::runtime()?;
    let client = runtime.block_on(options.target.connect())?;
    let progress = Progress::new(
        selected.iter().map(|t| t.row_count.max(0) as u64).sum(),
        options.quiet,
    );
    // On a stop the work is dropped where it waits; closing the connection then cancels
    // its statement and the server rolls the transaction back. The COMMIT is outside the
    // race: once sent, its outcome is the one to report.
    let result = runtime.block_on(async {
        client
            .batch_execute("BEGIN")
            .await
            .context("starting the restore transaction")?;
        let work = run(&client, &mirror, &selected, options, &progress);
        let outcome = crate::stop::until_stopped(None, work).await;
        crate::pg::finish_transaction(&client, outcome, "the restore").await
    });
    progress.finish();
    let (tables, sequences, warnings) = result?;
    Ok(RestoreSummary {
        from: mirror.path.clone(),
        target: options.target.redacted(),
        mode: options.mode,
        rows: tables.iter().map(|t| t.rows).sum(),
        tables,
        sequences,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn select<'m>(mirror: &'m Mirror, filter: &TableFilter) -> Result<Vec<&'m MirrorTable>> {
    let unmatched = filter.unmatched(mirror.tables.iter().map(|t| (t.schema.as_str(), t.name.as_str())));
    if !unmatched.is_empty() {
        return Err(Error::usage(format!(
            "no table of mirror {} matches {}",
            mirror.path,
            unmatched.join(", ")
        )));
    }
    // Rows of a --query or --include-view table have no table to go back to.
    Ok(mirror
        .tables
        .iter()
        .filter(|t| !matches!(t.kind, RelationKind::Query | RelationKind::View))
        .filter(|t| filter.includes(&t.schema, &t.name))
        .collect())
}

async fn run(
    client: &Client,
    mirror: &Mirror,
    selected: &[&MirrorTable],
    options: &RestoreOptions,
    progress: &Progress,
) -> Result<(Vec<RestoredTable>, Vec<String>, Vec<String>)> {
    let mut jobs = Vec::new();
    let mut problems = Vec::new();
    let mut to_create: Vec<&MirrorTable> = Vec::new();
    // Materialized views are computed, not loaded: refreshed (or, with --create, created
    // from their recorded query) once their tables hold the restored rows.
    let mut views_to_create: Vec<&MirrorTable> = Vec::new();
    let mut views_to_refresh: Vec<&MirrorTable> = Vec::new();
    for &table in selected {
        let existing = target::find_table(client, &table.schema, &table.name).await?;
        if table.kind == RelationKind::MaterializedView {
            match existing {
                Some(target) if target.materialized => {
                    views_to_refresh.push(table);
                    continue;
                }
                None if options.create && mirror.materialized_view(table).is_some() => {
                    views_to_create.push(table);
                    continue;
                }
                _ => {}
            }
        }
        match existing {
            Some(target) => jobs.push(Job {
                table,
                target,
                created: false,
            }),
            None if options.create => to_create.push(table),
            None => problems.push(format!(
                "table {} does not exist in the target (use --create to create it from the mirror)",
                table.display_name()
            )),
        }
    }
    // A filtered restore makes the plain views only when a materialized view it creates
    // may read them; an unfiltered one makes them all, as pg_restore does.
    let make_plain_views = options.create && (options.filter.is_everything() || !views_to_create.is_empty());
    let mut warnings = Vec::new();
    if !to_create.is_empty() || !views_to_create.is_empty() {
        let mut prelude = create::Prelude::make(client, mirror).await?;
        create::creation_order(mirror, &mut to_create);
        for &table in &to_create {
            let target = create::create_table(client, mirror, table, &prelude).await?;
            jobs.push(Job {
                table,
                target,
                created: true,
            });
        }
        let uses = create::uses_text(mirror, &to_create, &views_to_create);
        warnings.extend(prelude.finish(client, &uses).await?);
    }
    for job in &jobs {
        let table = job.table;
        problems.extend(compare_columns(table, &job.target));
        if options.mode == RestoreMode::Replace && !options.force {
            problems.extend(partial_table_problem(table));
        }
        if options.mode == RestoreMode::Upsert && job.target.primary_key.is_empty() {
            problems.push(format!(
                "table {} has no primary key in the target; --mode upsert needs one",
                table.display_name()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::unsupported(
            "comparing the mirror with the target; nothing was written",
            format!("\n  - {}", problems.join("\n  - ")),
        ));
    }
    let jobs = foreign_key_order(client, jobs).await?;
    // Tables just created have no triggers yet.
    let existing: Vec<TableRef> = jobs.iter().filter(|j| !j.created).map(Job::table_ref).collect();
    let triggers = triggers::Guard::take(client, &existing, options.disable_triggers).await?;
    warnings.extend(triggers.warning());
    let blame_triggers = |error| triggers.blame(error);
    let not_valid = not_valid::Suspended::take(client, &existing).await?;
    if options.mode == RestoreMode::Replace {
        empty_tables(client, &existing).await.map_err(blame_triggers)?;
    }
    let mut restored = Vec::new();
    for job in &jobs {
        progress.table_started(&job.table.display_name());
        let rows = load::load_table(client, mirror, job.table, &job.target, options.mode, progress)
            .await
            .map_err(blame_triggers)?;
        progress.table_finished(&job.table.display_name());
        restored.push(RestoredTable {
            table: job.table.display_name(),
            rows,
            created: job.created,
        });
    }
    not_valid.restore(client).await?;
    triggers.finish(client).await?;
    create::add_constraints_and_indexes(client, mirror, &to_create).await?;
    let views = create::create_views(
        client,
        mirror,
        make_plain_views,
        &views_to_create,
        &views_to_refresh,
    )
    .await?;
    for (name, rows) in views.materialized {
        let created = views_to_create.iter().any(|t| t.display_name() == name);
        restored.push(RestoredTable {
            table: name,
            rows,
            created,
        });
    }
    warnings.extend(
        views
            .skipped
            .into_iter()
            .map(|reason| format!("not created (a table it reads was not restored?): {reason}")),
    );
    warnings
        .extend(create::create_triggers_and_comments(client, mirror, &to_create, &views_to_create).await?);
    let mut sequences = Vec::new();
    for job in &jobs {
        let recorded = |feed: &ColumnSequence| recorded_sequence_value(mirror, job.table, feed);
        sequences.extend(advance_sequences(client, &job.table_ref(), recorded).await?);
    }
    Ok((restored, sequences, warnings))
}

/// A mirror table that holds only some rows (`--where`) or not the real values
/// (`--redact`) must not replace the whole table in the target.
fn partial_table_problem(table: &MirrorTable) -> Option<String> {
    let reasons: Vec<String> = table
        .curation
        .iter()
        .filter(|(kind, _)| kind.is_partial())
        .map(|(kind, detail)| match kind {
            CurationKind::Where => format!("filtered with --where {detail}"),
            _ => format!("column {detail:?} redacted"),
        })
        .collect();
    (!reasons.is_empty()).then(|| {
        format!(
            "{}: the mirror's table was filtered or redacted at export ({}); replacing the whole table \
             would lose what the mirror does not hold. Use --mode append or upsert, or --force",
            table.display_name(),
            reasons.join("; ")
        )
    })
}

/// Every difference between the mirror's columns and the target's, as sentences.
fn compare_columns(table: &MirrorTable, target: &TargetTable) -> Vec<String> {
    let name = table.display_name();
    let mut problems = Vec::new();
    for column in &table.columns {
        match target.columns.iter().find(|c| c.name == column.name) {
            None => problems.push(format!(
                "{name}: column {:?} ({}) is missing in the target",
                column.name, column.pg_type
            )),
            Some(found) if found.pg_type != column.pg_type => problems.push(format!(
                "{name}: column {:?} is {} in the mirror but {} in the target",
                column.name, column.pg_type, found.pg_type
            )),
            Some(found) if found.generated != (column.generated == "stored") => problems.push(format!(
                "{name}: column {:?} is {}generated in the mirror but {}generated in the target",
                column.name,
                if column.generated == "stored" { "" } else { "not " },
                if found.generated { "" } else { "not " },
            )),
            Some(_) => {}
        }
    }
    let excluded_at_export = |name: &str| {
        table
            .curation
            .iter()
            .any(|(kind, detail)| *kind == CurationKind::ExcludeColumn && detail == name)
    };
    for column in &target.columns {
        // A column left out at export takes its default in the target.
        if !table.columns.iter().any(|c| c.name == column.name) && !excluded_at_export(&column.name) {
            problems.push(format!(
                "{name}: the target has column {:?} ({}) that the mirror does not",
                column.name, column.pg_type
            ));
        }
    }
    problems
}

/// Referenced tables before the tables that reference them; a cycle is an error.
async fn foreign_key_order<'m>(client: &Client, jobs: Vec<Job<'m>>) -> Result<Vec<Job<'m>>> {
    let oids: Vec<u32> = jobs.iter().map(|j| j.target.oid).collect();
    let edges = target::foreign_keys(client, &oids).await?;
    let mut remaining: BTreeMap<usize, Job<'m>> = jobs.into_iter().enumerate().collect();
    let mut ordered = Vec::with_capacity(remaining.len());
    while !remaining.is_empty() {
        let ready: Vec<usize> = remaining
            .iter()
            .filter(|(_, job)| {
                edges.iter().all(|&(from, to)| {
                    from != job.target.oid
                        || to == from
                        || !remaining.values().any(|other| other.target.oid == to)
                })
            })
            .map(|(&index, _)| index)
            .collect();
        if ready.is_empty() {
            let names: Vec<String> = remaining.values().map(|j| j.table.display_name()).collect();
            return Err(Error::unsupported(
                "ordering tables by foreign keys",
                format!(
                    "the foreign keys of {} form a cycle; restore these tables in separate runs or make \
                     the constraints DEFERRABLE",
                    names.join(", ")
                ),
            ));
        }
        for index in ready {
            if let Some(job) = remaining.remove(&index) {
                ordered.push(job);
            }
        }
    }
    Ok(ordered)
}

impl Job<'_> {
    fn table_ref(&self) -> TableRef {
        TableRef {
            schema: self.table.schema.clone(),
            name: self.table.name.clone(),
            partitioned: self.target.partitioned,
        }
    }
}

/// The value the mirror recorded for the sequence feeding `feed`, matched by the
/// sequence's name or by the column that owned it.
fn recorded_sequence_value(mirror: &Mirror, table: &MirrorTable, feed: &ColumnSequence) -> Option<i64> {
    mirror
        .sequences
        .iter()
        .find(|s| {
            (s.schema == feed.schema && s.name == feed.name)
                || (s.owner_schema.as_deref() == Some(&table.schema)
                    && s.owner_table.as_deref() == Some(&table.name)
                    && s.owner_column.as_deref() == Some(&feed.column))
        })
        .and_then(|s| s.last_value)
}
