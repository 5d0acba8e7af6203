//! What an export did: the summary line and `--json`.

use std::path::PathBuf;

use serde::Serialize;

use crate::config::{ExportOptions, Writer};
use crate::mirror::IndexOutcome;
use crate::pg::catalog::Catalog;
use crate::plan::ExportPlan;

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
    /// Which writer wrote the data: the page writer unless asked otherwise or a table
    /// needs SQLite's insert path.
    pub writer: Writer,
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

/// What a finished run hands to [`ExportSummary::new`].
pub(super) struct Finished<'a> {
    pub options: &'a ExportOptions,
    pub catalog: &'a Catalog,
    pub plan: &'a ExportPlan,
    pub snapshot_id: String,
    pub counts: &'a [u64],
    pub outcomes: &'a [IndexOutcome],
    pub writer: Writer,
    pub seconds: f64,
}

impl ExportSummary {
    pub(super) fn new(run: Finished<'_>) -> ExportSummary {
        let Finished {
            options,
            catalog,
            plan,
            snapshot_id,
            counts,
            outcomes,
            writer,
            seconds,
        } = run;
        let file_bytes = std::fs::metadata(&options.output).map(|m| m.len()).unwrap_or(0);
        let rows: u64 = counts.iter().sum();
        ExportSummary {
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
            writer,
            table_rows: plan
                .tables
                .iter()
                .zip(counts)
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
        }
    }
}
