//! `pgmirror export --plan`: what an export would do, without reading a row or writing a file.

use serde::Serialize;

use crate::config::ExportOptions;
use crate::error::Result;
use crate::pg::snapshot;

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
    pub curation: Vec<(crate::mirror::CurationKind, String)>,
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
    let (_, plan) = runtime.block_on(crate::stop::until_stopped(
        None,
        super::prepare::prepare(&coordinator, options),
    ))?;
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
