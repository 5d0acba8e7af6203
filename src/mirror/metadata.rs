//! The `_pgmirror_*` tables: everything an exact restore needs besides the rows.

use std::collections::HashMap;

use rusqlite::{params, Connection};

use crate::pg::catalog::{Catalog, Relation, RelationKind};
use crate::pg::quote_ident;
use crate::plan::{ExportPlan, Redaction};

/// The DDL of the `_pgmirror_*` metadata tables (public so tests can build mirrors by hand).
pub const SCHEMA: &str = "
CREATE TABLE _pgmirror_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE _pgmirror_tables (
    sqlite_name TEXT PRIMARY KEY, schema_name TEXT NOT NULL, table_name TEXT NOT NULL,
    kind TEXT NOT NULL, row_count INTEGER NOT NULL, source_bytes INTEGER NOT NULL,
    partitions TEXT NOT NULL, pg_ddl TEXT NOT NULL);
CREATE TABLE _pgmirror_columns (
    sqlite_table TEXT NOT NULL, ordinal INTEGER NOT NULL, column_name TEXT NOT NULL,
    pg_type TEXT NOT NULL, type_oid INTEGER NOT NULL, typmod INTEGER NOT NULL,
    not_null INTEGER NOT NULL, default_expr TEXT, identity TEXT NOT NULL, generated TEXT NOT NULL,
    codec TEXT NOT NULL, sqlite_type TEXT NOT NULL, PRIMARY KEY (sqlite_table, ordinal));
CREATE TABLE _pgmirror_indexes (
    sqlite_table TEXT NOT NULL, index_name TEXT NOT NULL, definition TEXT NOT NULL,
    is_unique INTEGER NOT NULL, is_primary INTEGER NOT NULL, sqlite_index TEXT,
    status TEXT NOT NULL, reason TEXT, PRIMARY KEY (sqlite_table, index_name));
CREATE TABLE _pgmirror_constraints (
    sqlite_table TEXT NOT NULL, constraint_name TEXT NOT NULL, kind TEXT NOT NULL,
    definition TEXT NOT NULL, translated INTEGER NOT NULL, reason TEXT,
    is_local INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (sqlite_table, constraint_name));
CREATE TABLE _pgmirror_sequences (
    schema_name TEXT NOT NULL, sequence_name TEXT NOT NULL, data_type TEXT NOT NULL,
    start_value INTEGER NOT NULL, increment INTEGER NOT NULL, min_value INTEGER NOT NULL,
    max_value INTEGER NOT NULL, cycle INTEGER NOT NULL, last_value INTEGER,
    owner_schema TEXT, owner_table TEXT, owner_column TEXT, is_identity INTEGER NOT NULL,
    PRIMARY KEY (schema_name, sequence_name));
CREATE TABLE _pgmirror_partitions (
    sqlite_table TEXT NOT NULL, position INTEGER NOT NULL, schema_name TEXT NOT NULL,
    relation_name TEXT NOT NULL, parent_schema TEXT NOT NULL, parent_name TEXT NOT NULL,
    bound TEXT NOT NULL, partition_key TEXT, PRIMARY KEY (sqlite_table, position));
CREATE TABLE _pgmirror_types (
    schema_name TEXT NOT NULL, type_name TEXT NOT NULL, kind TEXT NOT NULL, create_sql TEXT NOT NULL);
CREATE TABLE _pgmirror_curation (
    sqlite_table TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE _pgmirror_views (
    schema_name TEXT NOT NULL, view_name TEXT NOT NULL, kind TEXT NOT NULL, definition TEXT NOT NULL,
    options TEXT, populated INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (schema_name, view_name));
CREATE TABLE _pgmirror_objects (
    position INTEGER PRIMARY KEY, kind TEXT NOT NULL, schema_name TEXT NOT NULL,
    object_name TEXT NOT NULL, sqlite_table TEXT, create_sql TEXT NOT NULL);
";

/// The exact text of each value its stored number does not give back (format 3,
/// `convert::decimal`): keyed by data table, rowid and column. Created with the data tables,
/// since the rows' values arrive before the rest of the metadata.
pub const EXACT_TEXT_SCHEMA: &str = "
CREATE TABLE _pgmirror_exact_text (
    sqlite_table TEXT NOT NULL, row INTEGER NOT NULL, column_name TEXT NOT NULL,
    exact_text TEXT NOT NULL, PRIMARY KEY (sqlite_table, row, column_name)) WITHOUT ROWID;
";

/// What became of one translatable PostgreSQL index in SQLite.
#[derive(Debug, Clone)]
pub struct IndexOutcome {
    pub table: usize,
    pub source_name: String,
    /// `None` when created; the SQLite error otherwise.
    pub failure: Option<String>,
}

/// Everything the metadata describes besides the catalog and the plan.
pub struct MetadataInputs<'a> {
    pub catalog: &'a Catalog,
    pub plan: &'a ExportPlan,
    pub row_counts: &'a [u64],
    pub index_outcomes: &'a [IndexOutcome],
    /// (key, value) pairs for `_pgmirror_meta`.
    pub meta: Vec<(String, String)>,
    /// The replication state when the export starts a replica.
    pub replica: Option<&'a super::SyncState>,
}

/// The metadata of a finished export, ready to be written into the mirror.
pub struct Metadata<'a>(MetadataInputs<'a>);

impl<'a> Metadata<'a> {
    pub fn new(inputs: MetadataInputs<'a>) -> Self {
        Metadata(inputs)
    }

    pub fn write(&self, conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch(SCHEMA)?;
        let inputs = &self.0;
        let mut meta = conn.prepare("INSERT INTO _pgmirror_meta VALUES (?1, ?2)")?;
        for (key, value) in &inputs.meta {
            meta.execute(params![key, value])?;
        }
        self.write_tables(conn)?;
        // A file in a given schema is made to be published: the source's views, functions,
        // types and sequences are not its business.
        if !inputs.plan.tables.iter().any(|t| t.given.is_some()) {
            self.write_sequences_and_views(conn)?;
            self.write_schema_objects(conn)?;
        }
        match inputs.replica {
            Some(state) => state.write(conn),
            None => Ok(()),
        }
    }

    fn write_schema_objects(&self, conn: &Connection) -> rusqlite::Result<()> {
        let inputs = &self.0;
        let tables: Vec<(&str, &Relation)> = inputs
            .plan
            .tables
            .iter()
            .filter_map(|t| {
                inputs
                    .catalog
                    .relation(t.relation_oid)
                    .filter(|_| t.query.is_none())
                    .map(|relation| (t.sqlite_name.as_str(), relation))
            })
            .collect();
        let mut insert = conn.prepare(
            "INSERT INTO _pgmirror_objects (kind, schema_name, object_name, sqlite_table, create_sql) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for object in super::ddl::schema_objects(inputs.catalog, &tables) {
            insert.execute(params![
                object.kind.name(),
                object.schema,
                object.name,
                object.sqlite_table,
                object.create_sql
            ])?;
        }
        Ok(())
    }

    fn write_tables(&self, conn: &Connection) -> rusqlite::Result<()> {
        let inputs = &self.0;
        let failures: HashMap<(usize, &str), Option<&String>> = inputs
            .index_outcomes
            .iter()
            .map(|o| ((o.table, o.source_name.as_str()), o.failure.as_ref()))
            .collect();
        let mut table_insert =
            conn.prepare("INSERT INTO _pgmirror_tables VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")?;
        let mut column_insert =
            conn.prepare("INSERT INTO _pgmirror_columns VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)")?;
        let mut index_insert =
            conn.prepare("INSERT INTO _pgmirror_indexes VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")?;
        let mut constraint_insert =
            conn.prepare("INSERT INTO _pgmirror_constraints VALUES (?1,?2,?3,?4,?5,?6,?7)")?;
        let mut curation_insert = conn.prepare("INSERT INTO _pgmirror_curation VALUES (?1,?2,?3)")?;
        let mut partition_insert =
            conn.prepare("INSERT INTO _pgmirror_partitions VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")?;
        for (position, table) in inputs.plan.tables.iter().enumerate() {
            // None for a --query table.
            let relation = inputs.catalog.relation(table.relation_oid);
            let partitions: Vec<String> = inputs
                .catalog
                .partition_leaves(table.relation_oid)
                .map(Relation::display_name)
                .collect();
            let pg_ddl = match (relation, &table.query) {
                (Some(relation), _) => create_table_ddl(relation),
                (None, Some(sql)) => format!("-- the result of --query {}\n{sql}", table.name),
                (None, None) => String::new(),
            };
            for (kind, detail) in &table.curation {
                curation_insert.execute(params![table.sqlite_name, kind.name(), detail])?;
            }
            // The partitioned table itself first (no parent, no bound), then every partition
            // after its parent, so a restore can create them in this order.
            if let Some(root) = relation.filter(|r| r.partition_key.is_some()) {
                partition_insert.execute(params![
                    table.sqlite_name,
                    0,
                    root.schema,
                    root.name,
                    "",
                    "",
                    "",
                    root.partition_key
                ])?;
                for (position, partition) in inputs.catalog.partition_tree(root.oid).iter().enumerate() {
                    let Some(parent) = partition
                        .partition_parent
                        .and_then(|oid| inputs.catalog.relation(oid))
                    else {
                        continue;
                    };
                    partition_insert.execute(params![
                        table.sqlite_name,
                        position as i64 + 1,
                        partition.schema,
                        partition.name,
                        parent.schema,
                        parent.name,
                        partition.partition_bound.clone().unwrap_or_default(),
                        partition.partition_key,
                    ])?;
                }
            }
            let source_bytes: i64 = inputs
                .plan
                .tasks
                .iter()
                .filter(|t| t.table == position)
                .map(|t| t.estimated_bytes)
                .sum();
            table_insert.execute(params![
                table.sqlite_name,
                table.schema,
                table.name,
                table.kind.name(),
                inputs.row_counts.get(position).copied().unwrap_or(0) as i64,
                source_bytes,
                serde_json::to_string(&partitions).unwrap_or_default(),
                pg_ddl,
            ])?;
            for (ordinal, column) in table.columns.iter().enumerate() {
                let source = &column.source;
                column_insert.execute(params![
                    table.sqlite_name,
                    ordinal as i64 + 1,
                    column.name,
                    source.type_text,
                    source.type_oid as i64,
                    source.typmod,
                    source.not_null && column.redaction != Some(Redaction::Null),
                    source.default,
                    identity_name(&source.identity),
                    if source.generated == "s" { "stored" } else { "" },
                    column.codec.name(),
                    column.codec.sqlite_type(),
                ])?;
            }
            let Some(relation) = relation else {
                continue;
            };
            for index in &relation.indexes {
                let sqlite_index = table.sqlite.indexes.iter().find(|i| i.source_name == index.name);
                let untranslated = table
                    .sqlite
                    .untranslated
                    .iter()
                    .find(|u| u.kind == "index" && u.name == index.name);
                let is_rowid = table.sqlite.integer_primary_key.is_some() && index.primary;
                let (status, reason) = match (untranslated, failures.get(&(position, index.name.as_str()))) {
                    (Some(u), _) => ("untranslated", Some(u.reason.clone())),
                    (None, Some(Some(failure))) => ("failed", Some((*failure).clone())),
                    _ if is_rowid => ("rowid", None),
                    _ => ("created", None),
                };
                index_insert.execute(params![
                    table.sqlite_name,
                    index.name,
                    index.definition,
                    index.unique,
                    index.primary,
                    sqlite_index.map(|i| i.name.clone()),
                    status,
                    reason,
                ])?;
            }
            for constraint in &relation.constraints {
                let untranslated = table
                    .sqlite
                    .untranslated
                    .iter()
                    .find(|u| u.kind == "constraint" && u.name == constraint.name);
                constraint_insert.execute(params![
                    table.sqlite_name,
                    constraint.name,
                    constraint.kind,
                    constraint.definition,
                    untranslated.is_none(),
                    untranslated.map(|u| u.reason.clone()),
                    constraint.is_local,
                ])?;
            }
        }
        Ok(())
    }

    fn write_sequences_and_views(&self, conn: &Connection) -> rusqlite::Result<()> {
        let inputs = &self.0;
        let exported: HashMap<u32, &str> = inputs
            .plan
            .tables
            .iter()
            .map(|t| (t.relation_oid, t.schema.as_str()))
            .collect();
        let schemas: Vec<&str> = exported.values().copied().collect();
        let mut insert = conn
            .prepare("INSERT INTO _pgmirror_sequences VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)")?;
        for sequence in &inputs.catalog.sequences {
            let owner = sequence
                .owner_relation
                .and_then(|oid| inputs.catalog.relation(oid));
            // A sequence belongs in the mirror when its table does, or when it stands alone
            // in a schema the mirror covers.
            let wanted = match sequence.owner_relation {
                Some(oid) => exported.contains_key(&oid),
                None => schemas.contains(&sequence.schema.as_str()),
            };
            if !wanted {
                continue;
            }
            insert.execute(params![
                sequence.schema,
                sequence.name,
                sequence.data_type,
                sequence.start,
                sequence.increment,
                sequence.min,
                sequence.max,
                sequence.cycle,
                sequence.last_value,
                owner.map(|r| r.schema.clone()),
                owner.map(|r| r.name.clone()),
                sequence.owner_column,
                sequence.is_identity,
            ])?;
        }
        let mut insert = conn.prepare("INSERT INTO _pgmirror_types VALUES (?1,?2,?3,?4)")?;
        for user_type in &inputs.catalog.user_types {
            insert.execute(params![
                user_type.schema,
                user_type.name,
                user_type.kind,
                user_type.create_sql
            ])?;
        }
        let mut insert = conn.prepare("INSERT INTO _pgmirror_views VALUES (?1,?2,?3,?4,?5,?6)")?;
        for view in &inputs.catalog.views {
            insert.execute(params![
                view.schema,
                view.name,
                view.kind.name(),
                view.definition,
                view.options,
                view.populated
            ])?;
        }
        Ok(())
    }
}

fn identity_name(attidentity: &str) -> &'static str {
    match attidentity {
        "a" => "always",
        "d" => "by default",
        _ => "",
    }
}

/// A `CREATE TABLE` that recreates the relation's columns and constraints in PostgreSQL.
fn create_table_ddl(relation: &Relation) -> String {
    let mut lines: Vec<String> = relation
        .columns
        .iter()
        .map(|c| {
            let mut line = format!("    {} {}", quote_ident(&c.name), c.type_text);
            match (c.generated.as_str(), c.identity.as_str(), &c.default) {
                ("s", _, Some(expr)) => line.push_str(&format!(" GENERATED ALWAYS AS ({expr}) STORED")),
                (_, "a", _) => line.push_str(" GENERATED ALWAYS AS IDENTITY"),
                (_, "d", _) => line.push_str(" GENERATED BY DEFAULT AS IDENTITY"),
                (_, _, Some(expr)) => line.push_str(&format!(" DEFAULT {expr}")),
                _ => {}
            }
            if c.not_null {
                line.push_str(" NOT NULL");
            }
            line
        })
        .collect();
    lines.extend(
        relation
            .constraints
            .iter()
            .map(|c| format!("    CONSTRAINT {} {}", quote_ident(&c.name), c.definition)),
    );
    let kind = match relation.kind {
        RelationKind::MaterializedView => "-- materialized view, exported as a table\n",
        _ => "",
    };
    let partitioning = relation
        .partition_key
        .as_ref()
        .map(|key| format!(" PARTITION BY {key}"))
        .unwrap_or_default();
    format!(
        "{kind}CREATE TABLE {} (\n{}\n){partitioning}",
        relation.qualified_name(),
        lines.join(",\n")
    )
}

/// The `_pgmirror_meta` rows of one export: the format, the tool, the server, the
/// snapshot, when it ran and with which options.
pub fn run_facts(
    options: &crate::config::ExportOptions,
    snapshot_id: &str,
    catalog: &Catalog,
    started_at: std::time::SystemTime,
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
            humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        ),
        ("interval_style", "postgres".to_owned()),
        ("lc_monetary", catalog.server.lc_monetary.clone()),
        ("timestamptz_zone", "UTC".to_owned()),
        ("options", options_json.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .map(|(k, v)| match (&options.curation.sqlite_schema, k.as_str()) {
        // Made to be published: the database's name, not where it runs.
        (Some(_), "source") => (k, catalog.server.database.clone()),
        _ => (k, v),
    })
    .chain(
        options
            .curation
            .sqlite_schema
            .as_ref()
            .map(|given| (SQLITE_SCHEMA_KEY.to_owned(), given.describe())),
    )
    .collect()
}

/// `_pgmirror_meta` key naming the DDL file an export created its data tables from: such
/// a file is not a mirror of tables, and restore refuses it.
pub const SQLITE_SCHEMA_KEY: &str = "sqlite_schema";
