//! `export()`: catalog → plan → workers → channel → SQLite writer → finalise.
//! The first error wins, the rest of the run is cancelled, and the partial file is removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::batch::RowBatch;
use crate::config::ExportOptions;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::mirror::{IndexOutcome, Metadata, MetadataInputs};
use crate::pg::catalog::{self, Catalog, RelationKind};
use crate::pg::snapshot;
use crate::plan::{self, ExportPlan};
use crate::progress::Progress;
use crate::sink::SqliteSink;
use crate::source::Worker;
use crate::stop::{check_stop, until_stopped};

/// What an export did, for the summary line and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub output: PathBuf,
    pub source: String,
    pub server_version: String,
    pub snapshot_id: String,
    pub snapshot_time: String,
    pub tables: usize,
    /// COPY statements run: one per table, partition or chunk.
    pub copy_tasks: usize,
    pub rows: u64,
    pub file_bytes: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    pub table_rows: Vec<TableRows>,
    /// Indexes and constraints that are only recorded in the metadata, and why.
    pub untranslated: Vec<String>,
    /// Relations not exported as tables, and indexes SQLite rejected.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableRows {
    pub table: String,
    pub rows: u64,
}

impl ExportSummary {
    pub fn line(&self) -> String {
        format!(
            "exported {} tables, {} rows, {} in {:.2} s ({:.0} rows/s) to {}",
            self.tables,
            self.rows,
            indicatif::HumanBytes(self.file_bytes),
            self.seconds,
            self.rows_per_second,
            self.output.display()
        )
    }
}

/// The first real error of the run; later ones and cancellations are dropped.
#[derive(Default)]
struct FirstError {
    error: Mutex<Option<Error>>,
    quit: AtomicBool,
}

impl FirstError {
    fn report(&self, error: Error) {
        self.quit.store(true, Ordering::Relaxed);
        if let Ok(mut slot) = self.error.lock() {
            let replace = match &*slot {
                None => true,
                Some(current) => current.is_cancelled() && !error.is_cancelled(),
            };
            if replace {
                *slot = Some(error);
            }
        }
    }

    fn take(&self) -> Option<Error> {
        self.error.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// What an export would do, without reading a row: `pgmirror export --plan`.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub tables: Vec<PlanTable>,
    pub tasks: Vec<PlanTask>,
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanTable {
    pub sqlite_name: String,
    pub source: String,
    pub kind: String,
    pub columns: Vec<PlanColumn>,
    pub curation: Vec<(String, String)>,
    pub untranslated: Vec<crate::plan::Untranslated>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanColumn {
    pub name: String,
    pub pg_type: String,
    pub codec: String,
    pub sqlite_type: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanTask {
    pub table: String,
    pub reads: String,
    pub estimated_bytes: i64,
    pub query: String,
}

/// Reads the catalog inside a snapshot, takes the locks, and returns the plan; no file is
/// written and no row is read.
pub fn plan_only(options: &ExportOptions) -> Result<PlanReport> {
    let runtime = crate::pg::runtime()?;
    let coordinator = runtime.block_on(options.source.connect())?;
    runtime.block_on(snapshot::export(&coordinator))?;
    let (_, plan) = runtime.block_on(prepare(&coordinator, options))?;
    let _ = runtime.block_on(coordinator.batch_execute("ROLLBACK"));
    Ok(PlanReport {
        tables: plan
            .tables
            .iter()
            .map(|t| PlanTable {
                sqlite_name: t.sqlite_name.clone(),
                source: t.display_name(),
                kind: t.kind.name().to_owned(),
                columns: t
                    .columns
                    .iter()
                    .map(|c| PlanColumn {
                        name: c.name.clone(),
                        pg_type: c.source.type_text.clone(),
                        codec: c.codec.name(),
                        sqlite_type: c.codec.sqlite_type().to_owned(),
                    })
                    .collect(),
                curation: t.curation.clone(),
                untranslated: t.sqlite.untranslated.clone(),
            })
            .collect(),
        tasks: plan
            .tasks
            .iter()
            .map(|task| PlanTask {
                table: plan.tables[task.table].sqlite_name.clone(),
                reads: task.describe(),
                estimated_bytes: task.estimated_bytes,
                query: task.query.clone(),
            })
            .collect(),
        skipped: plan.skipped.clone(),
    })
}

/// Exports the source database into a new SQLite mirror at `options.output`.
pub fn export(options: &ExportOptions) -> Result<ExportSummary> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    // Fail on an unwritable destination before touching the server. 0600: a mirror holds user data.
    let (pending, _) = crate::publish::Pending::file(&options.output)?;
    let partial_file = pending.path().to_path_buf();

    let runtime = crate::pg::runtime()?;
    let coordinator = runtime.block_on(options.source.connect())?;
    let snapshot_id = runtime.block_on(snapshot::export(&coordinator))?;
    let (catalog, plan) = runtime.block_on(until_stopped(None, prepare(&coordinator, options)))?;

    let progress = Progress::new(
        plan.tables.iter().map(|t| t.estimated_rows as u64).sum(),
        options.quiet,
    );
    let (counts, outcomes) = run_workers(
        options,
        &snapshot_id,
        &catalog,
        &plan,
        &partial_file,
        &progress,
        started_at,
    )?;
    progress.finish();
    check_stop()?;
    // The snapshot is no longer needed; the read-only transaction has nothing to keep.
    let _ = runtime.block_on(coordinator.batch_execute("ROLLBACK"));
    drop(coordinator);

    pending.commit()?;

    let file_bytes = fs::metadata(&options.output).map(|m| m.len()).unwrap_or(0);
    let rows: u64 = counts.iter().sum();
    let seconds = started.elapsed().as_secs_f64();
    Ok(ExportSummary {
        output: options.output.clone(),
        source: options.source.redacted(),
        server_version: catalog.server.version.clone(),
        snapshot_id,
        snapshot_time: catalog.server.snapshot_time.clone(),
        tables: plan.tables.len(),
        copy_tasks: plan.tasks.len(),
        rows,
        file_bytes,
        seconds,
        rows_per_second: if seconds > 0.0 { rows as f64 / seconds } else { 0.0 },
        table_rows: plan
            .tables
            .iter()
            .zip(&counts)
            .map(|(t, &rows)| TableRows {
                table: t.sqlite_name.clone(),
                rows,
            })
            .collect(),
        untranslated: plan
            .tables
            .iter()
            .flat_map(|t| {
                t.sqlite.untranslated.iter().map(move |u| {
                    format!(
                        "{} {} on {}: {} ({})",
                        u.kind,
                        u.name,
                        t.display_name(),
                        u.reason,
                        u.definition
                    )
                })
            })
            .collect(),
        warnings: plan
            .skipped
            .iter()
            .cloned()
            .chain(outcomes.iter().filter_map(|o| {
                o.failure.as_ref().map(|f| {
                    format!(
                        "index {} on {} was not created in SQLite: {f}",
                        o.source_name,
                        plan.tables[o.table].display_name()
                    )
                })
            }))
            .collect(),
    })
}

/// Reads the catalog, selects and locks the relations, and builds the plan.
async fn prepare(client: &tokio_postgres::Client, options: &ExportOptions) -> Result<(Catalog, ExportPlan)> {
    let catalog = catalog::load(client).await?;
    if catalog.server.version_num < 120_000 {
        return Err(Error::unsupported(
            format!("server {}", options.source.redacted()),
            format!(
                "PostgreSQL {} is not supported; pgmirror needs 12 or later",
                catalog.server.version
            ),
        ));
    }
    let selected = plan::select(&catalog, &options.filter, &options.curation.include_views)?;
    let curation = plan::curation::resolve(&selected, &options.curation)?;
    snapshot::set_lock_timeout(client, options.lock_wait_timeout).await?;
    let mut sized = Vec::new();
    for relation in &selected {
        sized.push(relation.oid);
        sized.extend(catalog.partition_leaves(relation.oid).map(|leaf| leaf.oid));
        if matches!(relation.kind, RelationKind::MaterializedView | RelationKind::View) {
            continue;
        }
        let with_partitions = relation.kind == RelationKind::PartitionedTable;
        snapshot::lock_relation(
            client,
            &relation.display_name(),
            &relation.qualified_name(),
            with_partitions,
            options.lock_wait_timeout,
        )
        .await?;
    }
    let sizes = catalog::relation_sizes(client, &sized).await?;
    let read = plan::ReadPlan {
        // TID range scans, which make ctid chunks cheap, arrived in PostgreSQL 14.
        chunk_bytes: options
            .chunk_bytes
            .filter(|_| catalog.server.version_num >= 140_000),
        block_size: catalog.server.block_size,
        sample_pages: options
            .sample_bytes
            .map(|bytes| (bytes / catalog.server.block_size.max(1)).max(1) as u64),
    };
    check_conditions(client, &selected, &curation).await?;
    let queries = describe_queries(client, &options.curation.queries).await?;
    let plan = plan::build(&catalog, &selected, &sizes, read, &curation, &queries)?;
    Ok((catalog, plan))
}

/// Every `--where` must parse and apply to its table before any row is read: PostgreSQL
/// plans it (EXPLAIN, no execution) and its message is reported with the flag.
async fn check_conditions(
    client: &tokio_postgres::Client,
    selected: &[&crate::pg::catalog::Relation],
    curation: &plan::ResolvedCuration,
) -> Result<()> {
    for relation in selected {
        let Some(condition) = curation.wheres.get(&relation.oid) else {
            continue;
        };
        let sql = format!(
            "EXPLAIN SELECT 1 FROM {} WHERE ({condition})",
            relation.qualified_name()
        );
        // The extended protocol runs exactly one statement: a condition such as
        // `true); COMMIT; DELETE ...` is refused instead of run. A savepoint keeps the
        // snapshot's transaction usable after a condition PostgreSQL rejects.
        client
            .batch_execute("SAVEPOINT pgmirror_check")
            .await
            .context("checking --where conditions")?;
        if let Err(e) = client.query(sql.as_str(), &[]).await {
            let _ = client.batch_execute("ROLLBACK TO SAVEPOINT pgmirror_check").await;
            return Err(Error::new(
                format!("--where {}:{condition}", relation.display_name()),
                ErrorKind::Usage(crate::error::describe_postgres(&e)),
            ));
        }
        client
            .batch_execute("RELEASE SAVEPOINT pgmirror_check")
            .await
            .context("checking --where conditions")?;
    }
    Ok(())
}

/// The result columns of each `--query`, as PostgreSQL describes them (prepared, not run).
async fn describe_queries(
    client: &tokio_postgres::Client,
    queries: &[(String, String)],
) -> Result<Vec<plan::QuerySpec>> {
    let mut specs = Vec::new();
    for (name, sql) in queries {
        let context = || format!("--query {name}");
        crate::plan::sql_text::enclosable(sql).map_err(|why| Error::new(context(), ErrorKind::Usage(why)))?;
        let statement = match client.prepare(&format!("SELECT * FROM ({sql}) AS q")).await {
            Ok(statement) => statement,
            Err(e) => {
                return Err(Error::new(
                    context(),
                    ErrorKind::Usage(crate::error::describe_postgres(&e)),
                ))
            }
        };
        let mut columns = Vec::new();
        for column in statement.columns() {
            if columns
                .iter()
                .any(|(existing, _, _): &(String, u32, String)| existing == column.name())
            {
                return Err(Error::new(
                    context(),
                    ErrorKind::Usage(format!(
                        "two result columns are named {:?}; give them distinct aliases",
                        column.name()
                    )),
                ));
            }
            let oid = column.type_().oid();
            let type_text: String = client
                .query_one("SELECT format_type($1::oid, NULL)", &[&oid])
                .await
                .with_context(context)?
                .get(0);
            columns.push((column.name().to_owned(), oid, type_text));
        }
        specs.push(plan::QuerySpec {
            name: name.clone(),
            sql: sql.clone(),
            columns,
        });
    }
    Ok(specs)
}

fn run_workers(
    options: &ExportOptions,
    snapshot_id: &str,
    catalog: &Catalog,
    plan: &ExportPlan,
    partial: &Path,
    progress: &Progress,
    started_at: SystemTime,
) -> Result<(Vec<u64>, Vec<IndexOutcome>)> {
    let jobs = options.jobs.max(1).min(plan.tasks.len().max(1));
    let (task_sender, task_receiver) = crossbeam_channel::unbounded();
    for index in 0..plan.tasks.len() {
        let _ = task_sender.send(index);
    }
    drop(task_sender);
    // Enough queued batches to keep the writer busy; each holds up to BatchLimits::bytes.
    let (batch_sender, batch_receiver) = crossbeam_channel::bounded::<RowBatch>(jobs.max(2));
    let first_error = FirstError::default();

    let sink = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let result = crate::error::catch_panic(
                || "the SQLite writer".to_owned(),
                || write_all(partial, plan, batch_receiver, &first_error.quit),
            );
            if let Err(e) = &result {
                first_error.report(Error::new(e.context.clone(), ErrorKind::Cancelled));
            }
            result
        });
        for _ in 0..jobs {
            let worker = Worker {
                spec: &options.source,
                snapshot_id,
                plan,
                tasks: task_receiver.clone(),
                batches: batch_sender.clone(),
                limits: options.batch,
                lock_timeout: options.lock_wait_timeout,
                quit: &first_error.quit,
                progress,
                redact_key: match &options.curation.redact_with {
                    crate::config::RedactWith::Hash { key } => Some(key.as_slice()),
                    crate::config::RedactWith::Null => None,
                },
            };
            let first_error = &first_error;
            scope.spawn(move || {
                // Tasks catch their own panics and name their table; this is the backstop.
                if let Err(e) = crate::error::catch_panic(|| "a source worker".to_owned(), || worker.run()) {
                    first_error.report(e);
                }
            });
        }
        drop(batch_sender);
        // The writer catches its own panics, so joining it cannot fail.
        writer.join().unwrap_or_else(|payload| {
            Err(Error::new(
                "the SQLite writer",
                ErrorKind::Internal(crate::error::panic_message(&*payload)),
            ))
        })
    });
    let sink = match (first_error.take(), sink) {
        (Some(error), _) if !error.is_cancelled() => return Err(error),
        (_, Err(error)) => return Err(error),
        (Some(error), Ok(_)) => return Err(error),
        (None, Ok(sink)) => sink,
    };

    progress.set_stage("building indexes and metadata");
    let mut sink = sink;
    let outcomes = sink.build_indexes(&plan.tables)?;
    let counts = sink.row_counts();
    sink.finish(&Metadata::new(MetadataInputs {
        catalog,
        plan,
        row_counts: &counts,
        index_outcomes: &outcomes,
        meta: meta_entries(options, snapshot_id, catalog, started_at),
    }))?;
    Ok((counts, outcomes))
}

/// The writer thread: every batch into SQLite until the workers hang up.
fn write_all(
    partial: &Path,
    plan: &ExportPlan,
    batches: crossbeam_channel::Receiver<RowBatch>,
    quit: &AtomicBool,
) -> Result<SqliteSink> {
    let mut sink = SqliteSink::create(partial, &plan.tables)?;
    for batch in batches {
        check_stop()?;
        if quit.load(Ordering::Relaxed) {
            break;
        }
        crate::error::catch_panic(
            || format!("writing table {}", plan.tables[batch.table].display_name()),
            || sink.write_batch(&batch),
        )?;
    }
    Ok(sink)
}

fn meta_entries(
    options: &ExportOptions,
    snapshot_id: &str,
    catalog: &Catalog,
    started_at: SystemTime,
) -> Vec<(String, String)> {
    let options_json = serde_json::json!({
        "jobs": options.jobs,
        "filter": options.filter.describe(),
        "lock_wait_timeout_ms": options.lock_wait_timeout.as_millis() as u64,
        "batch_rows": options.batch.rows,
        "chunk_bytes": options.chunk_bytes,
        "batch_bytes": options.batch.bytes,
    });
    [
        ("format_version", crate::mirror::FORMAT_VERSION.to_string()),
        ("tool", "pgmirror".to_owned()),
        ("tool_version", env!("CARGO_PKG_VERSION").to_owned()),
        ("server_version", catalog.server.version.clone()),
        ("server_version_num", catalog.server.version_num.to_string()),
        ("database", catalog.server.database.clone()),
        ("source", options.source.redacted()),
        ("snapshot_id", snapshot_id.to_owned()),
        ("snapshot_time", catalog.server.snapshot_time.clone()),
        (
            "started_at",
            humantime::format_rfc3339_micros(started_at).to_string(),
        ),
        (
            "finished_at",
            humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        ),
        ("interval_style", "postgres".to_owned()),
        ("timestamptz_zone", "UTC".to_owned()),
        ("options", options_json.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
