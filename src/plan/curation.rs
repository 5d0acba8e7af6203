//! Resolving a curated export's flags against the catalog: every table and column they
//! name must exist among the exported relations, or the run stops before any work.

use std::collections::{HashMap, HashSet};

use crate::config::{Curation, RedactWith};
use crate::error::{Error, Result};
use crate::mirror::CurationKind;
use crate::pg::catalog::Relation;

/// How a redacted column's values are replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redaction {
    Null,
    Hash,
}

/// The curation, keyed by relation oid.
#[derive(Debug, Clone, Default)]
pub struct ResolvedCuration {
    pub wheres: HashMap<u32, String>,
    pub excluded: HashMap<u32, HashSet<String>>,
    pub redacted: HashMap<u32, HashSet<String>>,
    pub redaction: Option<Redaction>,
    /// The DDL file the data tables are created from, if one is given.
    pub given: Option<super::given::GivenSchema>,
}

impl ResolvedCuration {
    pub fn redaction_of(&self, oid: u32, column: &str) -> Option<Redaction> {
        self.redacted
            .get(&oid)
            .filter(|columns| columns.contains(column))
            .and(self.redaction)
    }

    pub fn is_excluded(&self, oid: u32, column: &str) -> bool {
        self.excluded
            .get(&oid)
            .is_some_and(|columns| columns.contains(column))
    }

    /// (kind, detail) records for the mirror's metadata.
    pub fn describe(&self, oid: u32) -> Vec<(CurationKind, String)> {
        let mut records = Vec::new();
        if let Some(condition) = self.wheres.get(&oid) {
            records.push((CurationKind::Where, condition.clone()));
        }
        let mut sorted = |set: Option<&HashSet<String>>, kind: CurationKind| {
            let mut names: Vec<&String> = set.map(|s| s.iter().collect()).unwrap_or_default();
            names.sort();
            records.extend(names.into_iter().map(|n| (kind, n.clone())));
        };
        sorted(self.excluded.get(&oid), CurationKind::ExcludeColumn);
        let redact_kind = match self.redaction {
            Some(Redaction::Hash) => CurationKind::RedactHash,
            _ => CurationKind::RedactNull,
        };
        sorted(self.redacted.get(&oid), redact_kind);
        records
    }
}

/// Finds the relation a flag names: `schema.name`, or a bare name that only one schema has.
fn find<'r>(relations: &[&'r Relation], option: &str, written: &str) -> Result<&'r Relation> {
    super::find_relation(relations.iter().copied(), option, written)?.ok_or_else(|| {
        Error::usage(format!(
            "{option} names table {written:?}, which is not among the exported tables \
                 (names are case-sensitive; use schema.table outside public)"
        ))
    })
}

fn column_of(relation: &Relation, option: &str, table: &str, column: &str) -> Result<String> {
    relation
        .columns
        .iter()
        .find(|c| c.name == column)
        .map(|c| c.name.clone())
        .ok_or_else(|| {
            Error::usage(format!(
                "{option} {table}.{column}: table {} has no column {column:?}",
                relation.display_name()
            ))
        })
}

pub fn resolve(relations: &[&Relation], curation: &Curation) -> Result<ResolvedCuration> {
    let mut resolved = ResolvedCuration {
        given: curation.sqlite_schema.clone(),
        ..ResolvedCuration::default()
    };
    for (table, condition) in &curation.wheres {
        super::sql_text::enclosable(condition)
            .map_err(|why| Error::usage(format!("--where {table}:{condition}: {why}")))?;
        let relation = find(relations, "--where", table)?;
        if resolved.wheres.insert(relation.oid, condition.clone()).is_some() {
            return Err(Error::usage(format!(
                "--where is given twice for table {table}; combine the conditions with AND"
            )));
        }
    }
    for (option, list, target) in [
        (
            "--exclude-column",
            &curation.excluded_columns,
            &mut resolved.excluded,
        ),
        ("--redact", &curation.redacted_columns, &mut resolved.redacted),
    ] {
        for (table, column) in list {
            let relation = find(relations, option, table)?;
            let name = column_of(relation, option, table, column)?;
            target.entry(relation.oid).or_default().insert(name);
        }
    }
    for (oid, columns) in &resolved.redacted {
        if let Some(both) = columns.iter().find(|c| resolved.is_excluded(*oid, c)) {
            return Err(Error::usage(format!(
                "column {both:?} is both excluded and redacted; choose one"
            )));
        }
    }
    if !resolved.redacted.is_empty() {
        resolved.redaction = Some(match curation.redact_with {
            RedactWith::Null => Redaction::Null,
            RedactWith::Hash { .. } => Redaction::Hash,
        });
    }
    Ok(resolved)
}
