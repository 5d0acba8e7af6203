//! Validated, clap-free configuration for the engine.

use std::path::PathBuf;
use std::time::Duration;

use crate::batch::BatchLimits;
use crate::error::{Error, Result};
use crate::pg::ConnectionSpec;

/// Which relations an export takes.
#[derive(Debug, Clone, Default)]
pub struct TableFilter {
    schemas: Vec<glob::Pattern>,
    tables: Vec<glob::Pattern>,
    excluded: Vec<glob::Pattern>,
}

fn compile(option: &str, patterns: &[String]) -> Result<Vec<glob::Pattern>> {
    patterns
        .iter()
        .map(|p| {
            glob::Pattern::new(p)
                .map_err(|e| Error::usage(format!("{option} {p:?} is not a valid pattern: {e}")))
        })
        .collect()
}

impl TableFilter {
    /// Patterns are case-sensitive names as written, optionally `schema.table`, with globs.
    pub fn new(schemas: &[String], tables: &[String], excluded: &[String]) -> Result<Self> {
        Ok(TableFilter {
            schemas: compile("--schema", schemas)?,
            tables: compile("--table", tables)?,
            excluded: compile("--exclude-table", excluded)?,
        })
    }

    fn matches(pattern: &glob::Pattern, schema: &str, name: &str) -> bool {
        pattern.matches(name) || pattern.matches(&format!("{schema}.{name}"))
    }

    pub fn includes(&self, schema: &str, name: &str) -> bool {
        let schema_ok = self.schemas.is_empty() || self.schemas.iter().any(|p| p.matches(schema));
        let table_ok = self.tables.is_empty() || self.tables.iter().any(|p| Self::matches(p, schema, name));
        let excluded = self.excluded.iter().any(|p| Self::matches(p, schema, name));
        schema_ok && table_ok && !excluded
    }

    /// `--table` and `--schema` patterns that match nothing: a typo should not silently
    /// produce a mirror without the table the user asked for.
    pub fn unmatched<'a>(&self, relations: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Vec<String> {
        let mut unmatched: Vec<String> = self
            .tables
            .iter()
            .filter(|p| {
                !relations
                    .clone()
                    .any(|(schema, name)| Self::matches(p, schema, name))
            })
            .map(|p| format!("--table {}", p.as_str()))
            .collect();
        unmatched.extend(
            self.schemas
                .iter()
                .filter(|p| !relations.clone().any(|(schema, _)| p.matches(schema)))
                .map(|p| format!("--schema {}", p.as_str())),
        );
        unmatched
    }

    /// The original text of the filter, for the mirror's metadata.
    pub fn describe(&self) -> serde_json::Value {
        let texts = |ps: &[glob::Pattern]| ps.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>();
        serde_json::json!({
            "schemas": texts(&self.schemas),
            "tables": texts(&self.tables),
            "exclude_tables": texts(&self.excluded),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub source: ConnectionSpec,
    pub output: PathBuf,
    /// Worker connections reading tables in parallel.
    pub jobs: usize,
    pub filter: TableFilter,
    pub lock_wait_timeout: Duration,
    pub batch: BatchLimits,
    /// Heap tables larger than this are read in chunks of about this size by several
    /// workers at once (PostgreSQL 14+); `None` reads every table whole.
    pub chunk_bytes: Option<i64>,
    /// Read only about this many bytes of each relation (a sample, for `pgmirror bench`).
    pub sample_bytes: Option<i64>,
    /// Hide the progress bars (the summary is the caller's business).
    pub quiet: bool,
}

impl ExportOptions {
    pub fn new(source: ConnectionSpec, output: PathBuf) -> Self {
        ExportOptions {
            source,
            output,
            jobs: default_jobs(),
            filter: TableFilter::default(),
            lock_wait_timeout: Duration::from_secs(10),
            batch: BatchLimits::default(),
            chunk_bytes: Some(DEFAULT_CHUNK_BYTES),
            sample_bytes: None,
            quiet: true,
        }
    }
}

/// Chunk size for splitting big tables; see the Performance section of the README.
pub const DEFAULT_CHUNK_BYTES: i64 = 64 << 20;

/// One worker per core, at least two: reading overlaps decoding on another connection.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_bare_and_qualified_names_case_sensitively() {
        let filter = TableFilter::new(&[], &["Users".into(), "audit.*".into()], &["*_old".into()]).unwrap();
        assert!(filter.includes("public", "Users"));
        assert!(!filter.includes("public", "users"));
        assert!(filter.includes("audit", "events"));
        assert!(!filter.includes("audit", "events_old"));
        let relations = [("public", "Users")];
        assert_eq!(
            filter.unmatched(relations.iter().copied()),
            vec!["--table audit.*".to_string()]
        );
    }
}
