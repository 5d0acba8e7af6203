//! Translation of a relation's keys, indexes and foreign keys into SQLite terms.
//! What SQLite cannot express is listed, never silently dropped.

use std::collections::HashMap;

use serde::Serialize;

use super::{PlannedColumn, Redaction};
use crate::mirror;
use crate::pg::catalog::{Constraint, Relation};

#[derive(Debug, Clone, Default)]
pub struct SqliteSchema {
    /// A single-column integer primary key, stored as SQLite's rowid alias.
    pub integer_primary_key: Option<String>,
    /// Created after the load.
    pub indexes: Vec<SqliteIndex>,
    pub foreign_keys: Vec<ForeignKey>,
    pub untranslated: Vec<Untranslated>,
}

#[derive(Debug, Clone)]
pub struct SqliteIndex {
    /// The SQLite index name (unique across the file, like the table names).
    pub name: String,
    /// The PostgreSQL index it comes from.
    pub source_name: String,
    pub columns: Vec<String>,
    pub unique: bool,
}

#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub target_table: String,
    pub target_columns: Vec<String>,
}

/// An index or constraint kept only as its PostgreSQL definition.
#[derive(Debug, Clone, Serialize)]
pub struct Untranslated {
    pub kind: &'static str,
    pub name: String,
    pub definition: String,
    pub reason: String,
}

/// A mirrored table a foreign key may point at: its SQLite name and the columns it kept.
pub struct ForeignKeyTarget {
    pub sqlite_name: String,
    /// The columns it kept, with how each is redacted.
    pub columns: Vec<(String, Option<Redaction>)>,
}

/// A key still holds between redacted columns only when every column on both sides is
/// hashed (equal values stay equal under one key); a NULLed or one-sided redaction breaks it.
fn redactions_agree(constraint: &Constraint, columns: &[PlannedColumn], target: &ForeignKeyTarget) -> bool {
    let own = constraint
        .columns
        .iter()
        .map(|name| columns.iter().find(|c| &c.name == name).and_then(|c| c.redaction));
    let referenced = constraint.referenced_columns.iter().map(|name| {
        target
            .columns
            .iter()
            .find(|(kept, _)| kept == name)
            .and_then(|(_, redaction)| *redaction)
    });
    let all: Vec<Option<Redaction>> = own.chain(referenced).collect();
    all.iter().all(Option::is_none) || all.iter().all(|r| *r == Some(Redaction::Hash))
}

pub fn translate(
    relation: &Relation,
    columns: &[PlannedColumn],
    targets: &HashMap<u32, ForeignKeyTarget>,
) -> SqliteSchema {
    let mut schema = SqliteSchema::default();
    // A redacted key is no longer the rowid; an excluded column takes its indexes with it.
    let is_integer = |name: &str| {
        columns
            .iter()
            .any(|c| c.name == name && c.codec.is_integer() && c.redaction.is_none())
    };
    let present = |names: &[String]| names.iter().all(|n| columns.iter().any(|c| &c.name == n));
    for index in &relation.indexes {
        if !present(&index.columns) {
            schema.untranslated.push(Untranslated {
                kind: "index",
                name: index.name.clone(),
                definition: index.definition.clone(),
                reason: "a column of it is excluded from the mirror".to_owned(),
            });
            continue;
        }
        let plain = !index.has_expressions && !index.columns.is_empty();
        if !plain || !matches!(index.method.as_str(), "btree" | "hash") {
            let reason = if plain {
                format!("{} index has no SQLite equivalent", index.method)
            } else {
                "expression or partial index".to_owned()
            };
            schema.untranslated.push(Untranslated {
                kind: "index",
                name: index.name.clone(),
                definition: index.definition.clone(),
                reason,
            });
            continue;
        }
        if index.primary && index.columns.len() == 1 && is_integer(&index.columns[0]) {
            schema.integer_primary_key = Some(index.columns[0].clone());
            continue;
        }
        schema.indexes.push(SqliteIndex {
            name: mirror::sqlite_table_name(&relation.schema, &index.name),
            source_name: index.name.clone(),
            columns: index.columns.clone(),
            unique: index.unique,
        });
    }
    for constraint in &relation.constraints {
        let reason = match constraint.kind.as_str() {
            // Carried by their indexes.
            "p" | "u" => continue,
            // SQLite refuses a key over a missing column and breaks on a missing parent column.
            "f" if !present(&constraint.columns) => "a column of it is excluded from the mirror",
            "f" => match constraint.referenced_relation.and_then(|oid| targets.get(&oid)) {
                Some(target)
                    if !constraint
                        .referenced_columns
                        .iter()
                        .all(|c| target.columns.iter().any(|(kept, _)| kept == c)) =>
                {
                    "a column it references is excluded from the mirror"
                }
                Some(target) if !redactions_agree(constraint, columns, target) => {
                    "a column of it, or one it references, is redacted (the keys no longer match)"
                }
                Some(target) => {
                    schema.foreign_keys.push(ForeignKey {
                        name: constraint.name.clone(),
                        columns: constraint.columns.clone(),
                        target_table: target.sqlite_name.clone(),
                        target_columns: constraint.referenced_columns.clone(),
                    });
                    continue;
                }
                None => "references a table that is not in the mirror",
            },
            "c" => "CHECK expression in PostgreSQL syntax",
            "x" => "exclusion constraint",
            _ => "no SQLite equivalent",
        };
        schema.untranslated.push(Untranslated {
            kind: "constraint",
            name: constraint.name.clone(),
            definition: constraint.definition.clone(),
            reason: reason.to_owned(),
        });
    }
    schema
}
