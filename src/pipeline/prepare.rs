//! Preparation and validation, inside the snapshot: the catalog, the selection and its
//! locks, sizes, every `--where` and `--query` checked by PostgreSQL, and the plan.

use crate::config::ExportOptions;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::catalog::{self, Catalog, RelationKind};
use crate::pg::snapshot;
use crate::plan::{self, ExportPlan};

/// Reads the catalog, selects and locks the relations, and builds the plan.
pub(super) async fn prepare(
    client: &tokio_postgres::Client,
    options: &ExportOptions,
) -> Result<(Catalog, ExportPlan)> {
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
    let selected = match &options.curation.sqlite_schema {
        None => plan::select(&catalog, &options.filter, &options.curation.include_views)?,
        Some(given) => {
            if !options.filter.is_everything() || !options.curation.include_views.is_empty() {
                return Err(Error::usage(
                    "with a given SQLite schema the exported tables are the schema's: --table, --schema, \
                     --exclude-table and --include-view do not apply",
                ));
            }
            // Only what fills the DDL's tables: a table of that name, unless a query fills it.
            let queried = |name: &str| options.curation.queries.iter().any(|(q, _)| q == name);
            catalog
                .relations
                .iter()
                .filter(|r| {
                    let name = crate::mirror::sqlite_table_name(&r.schema, &r.name);
                    r.partition_root.is_none()
                        && matches!(
                            r.kind,
                            RelationKind::Table
                                | RelationKind::PartitionedTable
                                | RelationKind::MaterializedView
                        )
                        && given.table(&name).is_some()
                        && !queried(&name)
                })
                .collect()
        }
    };
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
    let mut plan = plan::build(&catalog, &selected, &sizes, read, &curation, &queries)?;
    count_columnless_tables(client, &mut plan).await?;
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
        if statement.columns().is_empty() {
            return Err(Error::new(
                context(),
                ErrorKind::Usage("the query returns no columns; a mirror table needs at least one".into()),
            ));
        }
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

/// Tables without columns are counted, not copied: SQLite cannot hold a table without
/// columns, so the mirror records their row count (restore puts that many rows back).
async fn count_columnless_tables(client: &tokio_postgres::Client, plan: &mut ExportPlan) -> Result<()> {
    for table in &mut plan.tables {
        let Some(sql) = &table.count_query else {
            continue;
        };
        let rows: i64 = client
            .query_one(sql.as_str(), &[])
            .await
            .with_context(|| {
                format!(
                    "counting the rows of table {} (it has no columns)",
                    table.display_name()
                )
            })?
            .try_get(0)
            .with_context(|| format!("counting the rows of table {}", table.display_name()))?;
        table.counted_rows = Some(rows.max(0) as u64);
    }
    Ok(())
}
