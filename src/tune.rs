//! `pgmirror bench`: short export trials on the user's own database — a sample of its
//! largest tables into a scratch file — over jobs, chunk size and batch rows, to find the
//! settings that export it fastest on this machine.

use std::path::PathBuf;

use serde::Serialize;

use crate::config::{ExportOptions, TableFilter};
use crate::error::{Context, Error, Result};
use crate::pg::ConnectionSpec;

#[derive(Debug, Clone)]
pub struct TuneOptions {
    pub source: ConnectionSpec,
    /// How many of the largest tables to sample.
    pub tables: usize,
    /// Bytes read from each sampled table.
    pub sample_bytes: i64,
    pub jobs: Vec<usize>,
    pub chunk_bytes: Vec<i64>,
    pub batch_rows: Vec<usize>,
    /// Where the scratch mirror is written (and removed).
    pub scratch_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub jobs: usize,
    pub chunk_bytes: i64,
    pub batch_rows: usize,
    pub seconds: f64,
    pub rows: u64,
    pub rows_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TuneReport {
    pub tables: Vec<String>,
    pub trials: Vec<Trial>,
    pub best: Trial,
}

/// The `limit` largest tables (by total size), as `schema.table`.
fn largest_tables(source: &ConnectionSpec, limit: usize) -> Result<Vec<(String, String)>> {
    let runtime = crate::pg::runtime()?;
    runtime.block_on(async {
        let client = source.connect().await?;
        let rows = client
            .query(
                "SELECT n.nspname::text, c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_' \
                 ORDER BY CASE WHEN c.relkind = 'p' THEN \
                            (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(c.oid)) \
                          ELSE pg_total_relation_size(c.oid) END DESC \
                 LIMIT $1",
                &[&(limit as i64)],
            )
            .await
            .context("finding the largest tables")?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    })
}

pub fn tune(options: &TuneOptions) -> Result<TuneReport> {
    let tables = largest_tables(&options.source, options.tables.max(1))?;
    if tables.is_empty() {
        return Err(Error::usage(format!(
            "database {} has no tables to try",
            options.source.redacted()
        )));
    }
    let patterns: Vec<String> = tables
        .iter()
        .map(|(schema, name)| glob::Pattern::escape(&format!("{schema}.{name}")))
        .collect();
    let filter = TableFilter::new(&[], &patterns, &[])?;
    // A private directory of our own: nothing planted in a shared /tmp is written through.
    let scratch_dir = tempfile::Builder::new()
        .prefix("pgmirror-bench-")
        .tempdir_in(&options.scratch_dir)
        .with_context(|| {
            format!(
                "creating a scratch directory in {}",
                options.scratch_dir.display()
            )
        })?;
    let scratch = scratch_dir.path().join("trial.db");
    let run = |jobs: usize, chunk_bytes: i64, batch_rows: usize| -> Result<Trial> {
        let mut export = ExportOptions::new(options.source.clone(), scratch.clone());
        export.filter = filter.clone();
        export.jobs = jobs;
        export.chunk_bytes = Some(chunk_bytes);
        export.batch.rows = batch_rows;
        export.sample_bytes = Some(options.sample_bytes);
        let summary = crate::pipeline::export(&export)?;
        let _ = std::fs::remove_file(&scratch);
        Ok(Trial {
            jobs,
            chunk_bytes,
            batch_rows,
            seconds: summary.seconds,
            rows: summary.rows,
            rows_per_second: summary.rows_per_second,
        })
    };
    // One untimed run first, so every timed trial finds the same warm caches.
    let (first_jobs, first_chunk, first_batch) = (
        options.jobs.first().copied().unwrap_or(2),
        options
            .chunk_bytes
            .first()
            .copied()
            .unwrap_or(crate::config::DEFAULT_CHUNK_BYTES),
        options.batch_rows.first().copied().unwrap_or(40_000),
    );
    run(first_jobs, first_chunk, first_batch)?;
    let mut trials = Vec::new();
    for &jobs in &options.jobs {
        for &chunk_bytes in &options.chunk_bytes {
            for &batch_rows in &options.batch_rows {
                trials.push(run(jobs, chunk_bytes, batch_rows)?);
            }
        }
    }
    let best = trials
        .iter()
        .max_by(|a, b| a.rows_per_second.total_cmp(&b.rows_per_second))
        .cloned()
        .ok_or_else(|| Error::usage("no trial to run: give at least one value for each setting"))?;
    Ok(TuneReport {
        tables: tables.iter().map(|(s, n)| format!("{s}.{n}")).collect(),
        trials,
        best,
    })
}
