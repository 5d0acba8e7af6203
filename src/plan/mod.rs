//! The export plan: which relations become which SQLite tables, with which codecs,
//! read by which COPY tasks. Pure data built from the catalog, so it can be tested
//! without a server and printed.

pub mod curation;
pub mod given;
mod schema;
pub mod sql_text;

use std::collections::HashMap;

pub use schema::{ForeignKey, SqliteIndex, SqliteSchema, Untranslated};

use crate::config::TableFilter;
use crate::convert::{choose_codec, Codec, Scalar, SelectAs};
use crate::error::{Error, Result};
use crate::mirror;
use crate::pg::catalog::{Catalog, Column, Relation, RelationKind};
use crate::pg::quote_ident;
pub use curation::{Redaction, ResolvedCuration};

#[derive(Debug, Clone)]
pub struct PlannedColumn {
    pub name: String,
    pub codec: Codec,
    pub select_as: SelectAs,
    pub source: Column,
    pub redaction: Option<Redaction>,
}

#[derive(Debug, Clone)]
pub struct PlannedTable {
    pub relation_oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    pub sqlite_name: String,
    pub columns: Vec<PlannedColumn>,
    pub sqlite: SqliteSchema,
    pub estimated_rows: f64,
    /// (kind, detail) of each filter, exclusion, redaction or query applied to the table.
    pub curation: Vec<(crate::mirror::CurationKind, String)>,
    /// For a `--query` table: its SELECT.
    pub query: Option<String>,
    /// For a table without columns (SQLite cannot hold one): the query that counts its
    /// rows inside the snapshot, instead of COPY tasks; the mirror records the count.
    pub count_query: Option<String>,
    /// That count, once `count_query` ran.
    pub counted_rows: Option<u64>,
    /// The table as a given DDL file creates it (`--sqlite-schema`).
    pub given: Option<given::GivenTable>,
}

impl PlannedTable {
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// One `COPY ... TO STDOUT` of the plan: a whole table, or one leaf of a partitioned table.
#[derive(Debug, Clone)]
pub struct CopyTask {
    pub table: usize,
    /// The relation actually read (the table itself or a partition), for messages.
    pub source_name: String,
    /// Materialized views cannot be locked (nor altered under a running COPY).
    pub lockable: bool,
    /// The same, quoted and qualified, for LOCK TABLE.
    pub source_relation: String,
    pub query: String,
    pub estimated_bytes: i64,
    /// The heap pages this task reads, `[first, end)`; `None` for a whole relation, an
    /// open end for the last chunk (the table may have grown since it was sized).
    pub pages: Option<(u64, Option<u64>)>,
}

impl CopyTask {
    /// The relation and, for a chunk, its pages: what messages name.
    pub fn describe(&self) -> String {
        match self.pages {
            None => self.source_name.clone(),
            Some((first, Some(end))) => format!("{} (pages {first}..{end})", self.source_name),
            Some((first, None)) => format!("{} (pages {first}..end)", self.source_name),
        }
    }
}

/// How relations are read.
#[derive(Debug, Clone, Copy)]
pub struct ReadPlan {
    /// Tables larger than this are split into page chunks of about this size (needs TID
    /// range scans, PostgreSQL 14+); `None` reads every relation whole.
    pub chunk_bytes: Option<i64>,
    /// Bytes per heap page.
    pub block_size: i64,
    /// Read only the first pages of each relation (a sample, for `pgmirror bench`).
    pub sample_pages: Option<u64>,
}

/// Page ranges `[first, end)` covering a relation of `size` bytes in chunks of about
/// `chunk_bytes`; the last range is open-ended. One open range when no split is due.
pub fn page_ranges(size: i64, chunk_bytes: i64, block_size: i64) -> Vec<(u64, Option<u64>)> {
    let pages = (size.max(0) / block_size.max(1)) as u64;
    let per_chunk = (chunk_bytes / block_size.max(1)).max(1) as u64;
    let mut ranges = Vec::new();
    let mut first = 0;
    while pages > first + per_chunk {
        ranges.push((first, Some(first + per_chunk)));
        first += per_chunk;
    }
    ranges.push((first, None));
    ranges
}

/// The COPY tasks' page ranges for one relation; `[None]` reads it whole.
fn relation_ranges(size: i64, read: ReadPlan) -> Vec<Option<(u64, Option<u64>)>> {
    let size = match read.sample_pages {
        Some(pages) => size.min(pages as i64 * read.block_size),
        None => size,
    };
    let mut ranges = match read.chunk_bytes {
        Some(chunk_bytes) if size > chunk_bytes => page_ranges(size, chunk_bytes, read.block_size),
        _ => Vec::new(),
    };
    if let Some(limit) = read.sample_pages {
        match ranges.last_mut() {
            Some(last) => last.1 = Some(limit),
            None => ranges.push((0, Some(limit))),
        }
    }
    if ranges.is_empty() {
        vec![None]
    } else {
        ranges.into_iter().map(Some).collect()
    }
}

#[derive(Debug, Clone)]
pub struct ExportPlan {
    pub tables: Vec<PlannedTable>,
    pub tasks: Vec<CopyTask>,
    /// Relations in scope that are not exported as tables, and why (unpopulated
    /// materialized views, tables without columns).
    pub skipped: Vec<String>,
}

/// The relations a filter selects for export, in catalog order, plus the views named by
/// `include_views`. Errors on patterns that match nothing and on names that cannot be told
/// apart in the mirror.
pub fn select<'c>(
    catalog: &'c Catalog,
    filter: &TableFilter,
    include_views: &[String],
) -> Result<Vec<&'c Relation>> {
    let exportable: Vec<&Relation> = catalog
        .relations
        .iter()
        .filter(|r| {
            r.partition_root.is_none()
                && matches!(
                    r.kind,
                    RelationKind::Table | RelationKind::PartitionedTable | RelationKind::MaterializedView
                )
        })
        .collect();
    let unmatched = filter.unmatched(exportable.iter().map(|r| (r.schema.as_str(), r.name.as_str())));
    if !unmatched.is_empty() {
        return Err(Error::usage(format!("no table matches {}", unmatched.join(", "))));
    }
    let mut selected: Vec<&Relation> = exportable
        .into_iter()
        .filter(|r| filter.includes(&r.schema, &r.name))
        .collect();
    for written in include_views {
        let views = catalog.relations.iter().filter(|r| r.kind == RelationKind::View);
        let view = find_relation(views, "--include-view", written)?.ok_or_else(|| {
            Error::usage(format!(
                "--include-view {written:?}: no such view (names are case-sensitive)"
            ))
        })?;
        selected.push(view);
    }
    check_names(&selected)?;
    Ok(selected)
}

/// The relation a flag names: `schema.name` exactly, or a bare name that exactly one schema
/// has. A bare name in several schemas is an error listing them: taking one silently could
/// redact or filter the wrong table.
pub(crate) fn find_relation<'r>(
    candidates: impl Iterator<Item = &'r Relation>,
    option: &str,
    written: &str,
) -> Result<Option<&'r Relation>> {
    let mut bare = Vec::new();
    for relation in candidates {
        if relation.display_name() == written {
            return Ok(Some(relation));
        }
        if relation.name == written {
            bare.push(relation);
        }
    }
    match bare.as_slice() {
        [] => Ok(None),
        [only] => Ok(Some(only)),
        several => {
            let mut names: Vec<String> = several.iter().map(|r| r.display_name()).collect();
            names.sort();
            Err(Error::usage(format!(
                "{option} names {written:?}, which exists in several schemas ({}); write it schema-qualified",
                names.join(", ")
            )))
        }
    }
}

fn check_names(relations: &[&Relation]) -> Result<()> {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for relation in relations {
        let sqlite_name = mirror::sqlite_table_name(&relation.schema, &relation.name);
        if let Some(reason) = mirror::reserved_name_reason(&sqlite_name) {
            return Err(Error::unsupported(
                format!("table {}", relation.display_name()),
                format!("its mirror name {sqlite_name:?} {reason}; exclude it with --exclude-table"),
            ));
        }
        seen.entry(sqlite_name.to_lowercase())
            .or_default()
            .push(relation.display_name());
    }
    let mut collisions: Vec<String> = seen
        .into_values()
        .filter(|names| names.len() > 1)
        .map(|names| names.join(" and "))
        .collect();
    if collisions.is_empty() {
        return Ok(());
    }
    collisions.sort();
    Err(Error::unsupported(
        "naming mirror tables",
        format!(
            "these tables would get the same SQLite name (SQLite compares names case-insensitively): {}; \
             exclude one of each with --exclude-table",
            collisions.join("; ")
        ),
    ))
}

/// A `--query` whose result becomes a table: its columns as PostgreSQL describes them.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    pub name: String,
    pub sql: String,
    /// (column name, type oid, `format_type` text)
    pub columns: Vec<(String, u32, String)>,
}

fn plan_column(column: &Column, redaction: Option<Redaction>, money_scale: u16) -> PlannedColumn {
    let (codec, select_as) = match redaction {
        // The value's text is hashed on the worker.
        Some(Redaction::Hash) => (Codec::Scalar(Scalar::Text), SelectAs::TextOutput),
        _ => choose_codec(column.type_info, money_scale),
    };
    PlannedColumn {
        name: column.name.clone(),
        codec,
        select_as,
        source: column.clone(),
        redaction,
    }
}

/// The WHERE clause of one COPY: its page range and the table's `--where`.
fn where_clause(pages: Option<(u64, Option<u64>)>, condition: Option<&String>) -> String {
    let mut conditions = Vec::new();
    match pages {
        Some((first, Some(end))) => {
            conditions.push(format!("ctid >= '({first},0)'::tid AND ctid < '({end},0)'::tid"))
        }
        Some((first, None)) => conditions.push(format!("ctid >= '({first},0)'::tid")),
        None => {}
    }
    if let Some(condition) = condition {
        conditions.push(format!("({condition})"));
    }
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// Builds the plan for the selected relations and queries; `sizes` are relation sizes in bytes.
pub fn build(
    catalog: &Catalog,
    selected: &[&Relation],
    sizes: &HashMap<u32, i64>,
    read: ReadPlan,
    curation: &ResolvedCuration,
    queries: &[QuerySpec],
) -> Result<ExportPlan> {
    let mut tables = Vec::new();
    let mut tasks = Vec::new();
    let mut skipped = Vec::new();
    for relation in selected {
        if relation.kind == RelationKind::MaterializedView && !relation.populated {
            skipped.push(format!(
                "materialized view {} is not populated (REFRESH MATERIALIZED VIEW it to export its rows); \
                 its definition is kept",
                relation.display_name()
            ));
            continue;
        }
        let columns: Vec<PlannedColumn> = relation
            .columns
            .iter()
            .filter(|c| !curation.is_excluded(relation.oid, &c.name))
            .map(|c| {
                plan_column(
                    c,
                    curation.redaction_of(relation.oid, &c.name),
                    catalog.server.money_scale,
                )
            })
            .collect();
        if columns.is_empty() && !relation.columns.is_empty() {
            skipped.push(format!(
                "table {} has every column excluded; it is left out of the mirror",
                relation.display_name()
            ));
            continue;
        }
        let sqlite_name = mirror::sqlite_table_name(&relation.schema, &relation.name);
        let columns = match &curation.given {
            Some(given) => given.arrange(
                &sqlite_name,
                &format!("table {}", relation.display_name()),
                columns,
            )?,
            None => columns,
        };
        let index = tables.len();
        let count_query = columns.is_empty().then(|| {
            // Partitioned: count through the whole tree; else ONLY, like the COPY.
            let only = if relation.kind == RelationKind::PartitionedTable {
                ""
            } else {
                "ONLY "
            };
            format!(
                "SELECT count(*) FROM {only}{}{}",
                relation.qualified_name(),
                where_clause(None, curation.wheres.get(&relation.oid))
            )
        });
        let select_list = select_list(&columns);
        let condition = curation.wheres.get(&relation.oid);
        let sources: Vec<&Relation> = if relation.kind == RelationKind::PartitionedTable {
            catalog.partition_leaves(relation.oid).collect()
        } else {
            vec![relation]
        };
        for source in sources.into_iter().filter(|_| count_query.is_none()) {
            let size = sizes.get(&source.oid).copied().unwrap_or(0);
            let is_view = source.kind == RelationKind::View;
            // A view has no pages to split; ONLY means nothing for it.
            let ranges = if is_view {
                vec![None]
            } else {
                relation_ranges(size, read)
            };
            let count = ranges.len() as i64;
            for pages in ranges {
                tasks.push(CopyTask {
                    table: index,
                    source_name: source.display_name(),
                    lockable: !matches!(source.kind, RelationKind::MaterializedView | RelationKind::View),
                    source_relation: source.qualified_name(),
                    query: format!(
                        "COPY (SELECT {select_list} FROM {}{}{}) TO STDOUT (FORMAT binary)",
                        if is_view { "" } else { "ONLY " },
                        source.qualified_name(),
                        where_clause(pages, condition)
                    ),
                    estimated_bytes: size / count,
                    pages,
                });
            }
        }
        tables.push(PlannedTable {
            relation_oid: relation.oid,
            schema: relation.schema.clone(),
            name: relation.name.clone(),
            kind: relation.kind,
            sqlite: SqliteSchema::default(),
            sqlite_name,
            columns,
            estimated_rows: relation.estimated_rows
                + catalog
                    .partition_leaves(relation.oid)
                    .map(|leaf| leaf.estimated_rows)
                    .sum::<f64>(),
            curation: curation.describe(relation.oid),
            query: None,
            count_query,
            counted_rows: None,
            given: None,
        });
    }
    for query in queries {
        if let Some(table) = tables
            .iter()
            .find(|t| t.sqlite_name.eq_ignore_ascii_case(&query.name))
        {
            return Err(Error::usage(format!(
                "--query {}: that name is taken by table {} in the mirror; choose another",
                query.name,
                table.display_name()
            )));
        }
        if let Some(reason) = mirror::reserved_name_reason(&query.name) {
            return Err(Error::usage(format!("--query {}: the name {reason}", query.name)));
        }
        let columns: Vec<PlannedColumn> = query
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, type_oid, type_text))| {
                let column = Column {
                    attnum: i as i16 + 1,
                    name: name.clone(),
                    type_text: type_text.clone(),
                    type_oid: *type_oid,
                    typmod: -1,
                    not_null: false,
                    default: None,
                    identity: String::new(),
                    generated: String::new(),
                    is_local: true,
                    collation: None,
                    type_info: catalog.types.info(*type_oid, -1),
                };
                plan_column(&column, None, catalog.server.money_scale)
            })
            .collect();
        let columns = match &curation.given {
            Some(given) => given.arrange(&query.name, &format!("--query {}", query.name), columns)?,
            None => columns,
        };
        tasks.push(CopyTask {
            table: tables.len(),
            source_name: format!("query {}", query.name),
            lockable: false,
            source_relation: String::new(),
            query: format!(
                "COPY (SELECT {} FROM ({}) AS q) TO STDOUT (FORMAT binary)",
                select_list(&columns),
                query.sql
            ),
            estimated_bytes: 0,
            pages: None,
        });
        tables.push(PlannedTable {
            relation_oid: 0,
            schema: String::new(),
            name: query.name.clone(),
            kind: RelationKind::Query,
            sqlite_name: query.name.clone(),
            columns,
            sqlite: SqliteSchema::default(),
            estimated_rows: 0.0,
            curation: vec![(crate::mirror::CurationKind::Query, query.sql.clone())],
            query: Some(query.sql.clone()),
            count_query: None,
            counted_rows: None,
            given: None,
        });
    }
    let targets: HashMap<u32, schema::ForeignKeyTarget> = tables
        .iter()
        .filter(|t| t.relation_oid != 0)
        .map(|t| {
            let target = schema::ForeignKeyTarget {
                sqlite_name: t.sqlite_name.clone(),
                columns: t.columns.iter().map(|c| (c.name.clone(), c.redaction)).collect(),
            };
            (t.relation_oid, target)
        })
        .collect();
    for table in &mut tables {
        if let Some(relation) = catalog.relation(table.relation_oid) {
            table.sqlite = schema::translate(relation, &table.columns, &targets);
        }
    }
    if let Some(given) = &curation.given {
        take_given_tables(&mut tables, given)?;
    }
    // Largest first, so the longest COPY starts early and the run ends evenly.
    tasks.sort_by_key(|task| std::cmp::Reverse(task.estimated_bytes));
    Ok(ExportPlan {
        tables,
        tasks,
        skipped,
    })
}

/// Each table of the DDL file takes its statements, and its keys and indexes only from
/// them; a DDL table nothing fills is an error.
fn take_given_tables(tables: &mut [PlannedTable], given: &given::GivenSchema) -> Result<()> {
    for wanted in &given.tables {
        let table = tables
            .iter_mut()
            .find(|t| t.sqlite_name == wanted.name)
            .ok_or_else(|| {
                Error::usage(format!(
                    "table {:?} of {} is filled by no --query and no source table of that name",
                    wanted.name,
                    given.path.display()
                ))
            })?;
        table.sqlite = SqliteSchema {
            integer_primary_key: wanted.integer_primary_key.clone(),
            ..SqliteSchema::default()
        };
        table.given = Some(wanted.clone());
    }
    Ok(())
}

fn select_list(columns: &[PlannedColumn]) -> String {
    columns
        .iter()
        .map(|c| {
            let name = quote_ident(&c.name);
            if c.redaction == Some(Redaction::Null) {
                return "NULL".to_owned();
            }
            match c.select_as {
                SelectAs::Column => name,
                SelectAs::CastToNumeric => format!("{name}::numeric"),
                // Not format('%s'): `IS NULL` is true for a composite of NULL fields, and
                // xml's output function drops the stored declaration; ::text keeps both.
                SelectAs::TextOutput => format!("{name}::text"),
                SelectAs::InetOutput => format!("textin(inet_out({name}))"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ranges_cover_the_table_and_leave_the_end_open() {
        let chunk = 8192 * 100;
        assert_eq!(
            page_ranges(8192 * 250, chunk, 8192),
            vec![(0, Some(100)), (100, Some(200)), (200, None)]
        );
        assert_eq!(
            page_ranges(8192 * 200, chunk, 8192),
            vec![(0, Some(100)), (100, None)]
        );
        assert_eq!(page_ranges(8192 * 50, chunk, 8192), vec![(0, None)]);
        assert_eq!(page_ranges(0, chunk, 8192), vec![(0, None)]);
    }

    #[test]
    fn samples_close_the_last_range_at_the_limit() {
        let read = |chunk_bytes, sample_pages| ReadPlan {
            chunk_bytes,
            block_size: 8192,
            sample_pages,
        };
        assert_eq!(
            relation_ranges(8192 * 1000, read(Some(8192 * 100), None)).len(),
            10
        );
        assert_eq!(
            relation_ranges(8192 * 50, read(Some(8192 * 100), None)),
            vec![None]
        );
        assert_eq!(
            relation_ranges(8192 * 1000, read(Some(8192 * 100), Some(150))),
            vec![Some((0, Some(100))), Some((100, Some(150)))]
        );
        assert_eq!(
            relation_ranges(8192 * 1000, read(None, Some(150))),
            vec![Some((0, Some(150)))]
        );
        assert_eq!(
            relation_ranges(8192 * 10, read(None, Some(150))),
            vec![Some((0, Some(150)))]
        );
    }
}
