//! `export()`: catalog → plan → workers → channel → SQLite writer → finalise.
//! The first error wins, the rest of the run is cancelled, and the partial file is removed.
//!
//! prepare.rs reads and validates inside the snapshot, plan_report.rs is `--plan`,
//! summary.rs the result; this file runs the threads.

mod plan_report;
mod prepare;
mod summary;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use crate::batch::RowBatch;
use crate::config::ExportOptions;
use crate::config::Writer;
use crate::error::{Error, ErrorKind, Result};
use crate::mirror::{IndexOutcome, Metadata, MetadataInputs};
use crate::pg::catalog::Catalog;
use crate::pg::snapshot;
use crate::plan::ExportPlan;
use crate::progress::Progress;
use crate::sink::{DataSink, SqliteSink};
use crate::source::Worker;
use crate::stop::{check_stop, until_stopped};

pub use plan_report::{plan_only, PlanColumn, PlanReport, PlanTable, PlanTask};
use summary::Finished;
pub use summary::{ExportSummary, TableRows};

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

/// Exports the source database into a new SQLite mirror at `options.output`.
pub fn export(options: &ExportOptions) -> Result<ExportSummary> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    // Fail on an unwritable destination before touching the server. 0600: a mirror holds user data.
    let (pending, _) = crate::publish::Pending::file(&options.output)?;
    let partial_file = pending.path().to_path_buf();

    let runtime = crate::pg::runtime()?;
    let coordinator = runtime.block_on(options.source.connect())?;
    let (snapshot_id, replica) = match &options.replica {
        None => (runtime.block_on(snapshot::export(&coordinator))?, None),
        Some(start) => {
            let point = runtime.block_on(snapshot::export_after_locks(
                &coordinator,
                &start.lock_first,
                options.lock_wait_timeout,
            ))?;
            let mut state = start.state.clone();
            state.snapshot = Some(point.snapshot);
            state.consistent_lsn = point.wal_lsn;
            (point.snapshot_id, Some(state))
        }
    };
    let (catalog, plan) = runtime.block_on(until_stopped(None, prepare::prepare(&coordinator, options)))?;

    let progress = Progress::new(
        plan.tables.iter().map(|t| t.estimated_rows as u64).sum(),
        options.quiet,
    );
    let run = RunFacts {
        snapshot_id: &snapshot_id,
        started_at,
        replica: replica.as_ref(),
    };
    let (counts, outcomes, writer) = run_workers(options, &run, &catalog, &plan, &partial_file, &progress)?;
    progress.finish();
    check_stop()?;
    // The snapshot is no longer needed; the read-only transaction has nothing to keep.
    let _ = runtime.block_on(coordinator.batch_execute("ROLLBACK"));
    drop(coordinator);

    pending.commit()?;

    Ok(ExportSummary::new(Finished {
        options,
        catalog: &catalog,
        plan: &plan,
        snapshot_id,
        counts: &counts,
        outcomes: &outcomes,
        writer,
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// What the metadata records about this run besides the catalog and the plan.
struct RunFacts<'a> {
    snapshot_id: &'a str,
    started_at: SystemTime,
    /// Set when the export starts a replica.
    replica: Option<&'a crate::mirror::SyncState>,
}

fn run_workers(
    options: &ExportOptions,
    run: &RunFacts<'_>,
    catalog: &Catalog,
    plan: &ExportPlan,
    partial: &Path,
    progress: &Progress,
) -> Result<(Vec<u64>, Vec<IndexOutcome>, Writer)> {
    let snapshot_id = run.snapshot_id;
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
                || write_all(partial, plan, options.writer, batch_receiver, &first_error.quit),
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
        (None, Ok(written)) => written,
    };

    progress.set_stage("building indexes and metadata");
    let (mut sink, writer) = sink;
    let outcomes = sink.build_indexes(&plan.tables)?;
    let counts = sink.row_counts();
    sink.finish(&Metadata::new(MetadataInputs {
        catalog,
        plan,
        row_counts: &counts,
        index_outcomes: &outcomes,
        meta: crate::mirror::run_facts(options, snapshot_id, catalog, run.started_at),
        replica: run.replica,
    }))?;
    Ok((counts, outcomes, writer))
}

/// The writer thread: every batch into the mirror until the workers hang up; returns
/// the mirror open in SQLite for indexes and metadata.
fn write_all(
    partial: &Path,
    plan: &ExportPlan,
    writer: Writer,
    batches: crossbeam_channel::Receiver<RowBatch>,
    quit: &AtomicBool,
) -> Result<(SqliteSink, Writer)> {
    let mut sink = DataSink::create(partial, &plan.tables, writer)?;
    let used = sink.writer();
    for batch in batches {
        check_stop()?;
        if quit.load(Ordering::Relaxed) {
            break;
        }
        let table = &plan.tables[batch.table];
        crate::error::catch_panic(
            || format!("writing table {}", table.display_name()),
            || {
                crate::failpoint::hit("write", &table.sqlite_name);
                sink.write_batch(&batch)
            },
        )?;
    }
    check_stop()?;
    Ok((sink.finish(&plan.tables)?, used))
}
