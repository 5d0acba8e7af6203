//! What the restore target looks like: its tables' columns, foreign keys and sequences.

use tokio_postgres::Client;

use crate::error::{Context, Result};
use crate::pg::{field, qualified};

#[derive(Debug, Clone)]
pub struct TargetColumn {
    pub name: String,
    pub pg_type: String,
    pub generated: bool,
}

#[derive(Debug, Clone)]
pub struct TargetTable {
    pub oid: u32,
    pub partitioned: bool,
    /// A materialized view: refreshed from its query, never loaded.
    pub materialized: bool,
    pub columns: Vec<TargetColumn>,
    pub primary_key: Vec<String>,
}

/// The target's table of this schema and name, if it exists.
pub async fn find_table(client: &Client, schema: &str, table: &str) -> Result<Option<TargetTable>> {
    let context = || format!("reading table {schema}.{table} in the target");
    let name = qualified(schema, table);
    let Some(row) = client
        .query_opt(
            "SELECT c.oid AS oid, c.relkind = 'p' AS partitioned, c.relkind = 'm' AS materialized \
             FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&name],
        )
        .await
        .with_context(context)?
    else {
        return Ok(None);
    };
    let q = "the target table";
    let oid: u32 = field(&row, q, "oid")?;
    let columns = client
        .query(
            "SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS pg_type, \
                    a.attgenerated <> '' AS generated \
             FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .with_context(context)?
        .iter()
        .map(|r| {
            Ok(TargetColumn {
                name: field(r, "the target's columns", "name")?,
                pg_type: field(r, "the target's columns", "pg_type")?,
                generated: field(r, "the target's columns", "generated")?,
            })
        })
        .collect::<Result<_>>()?;
    let primary_key = client
        .query(
            "SELECT a.attname::text AS name FROM pg_index i \
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
            &[&oid],
        )
        .await
        .with_context(context)?
        .iter()
        .map(|r| field(r, "the target's primary key", "name"))
        .collect::<Result<_>>()?;
    Ok(Some(TargetTable {
        oid,
        partitioned: field(&row, q, "partitioned")?,
        materialized: field(&row, q, "materialized")?,
        columns,
        primary_key,
    }))
}

/// Foreign-key edges (referencing oid, referenced oid) among the given tables. A key
/// declared on a partition counts as its partitioned table's.
pub async fn foreign_keys(client: &Client, oids: &[u32]) -> Result<Vec<(u32, u32)>> {
    client
        .query(
            "SELECT * FROM ( \
               SELECT (CASE WHEN f.relispartition THEN pg_partition_root(f.oid) ELSE f.oid::regclass END)::oid AS referencing, \
                      (CASE WHEN t.relispartition THEN pg_partition_root(t.oid) ELSE t.oid::regclass END)::oid AS referenced \
               FROM pg_constraint k JOIN pg_class f ON f.oid = k.conrelid JOIN pg_class t ON t.oid = k.confrelid \
               WHERE k.contype = 'f') e \
             WHERE referencing = ANY($1) AND referenced = ANY($1)",
            &[&oids],
        )
        .await
        .context("reading foreign keys in the target")?
        .iter()
        .map(|r| {
            let q = "the target's foreign keys";
            Ok((field(r, q, "referencing")?, field(r, q, "referenced")?))
        })
        .collect()
}

/// A sequence that feeds a column of a target table.
#[derive(Debug, Clone)]
pub struct ColumnSequence {
    pub column: String,
    pub schema: String,
    pub name: String,
}

/// Columns of the table whose values come from a sequence: identity and serial columns,
/// and plain `DEFAULT nextval('...')` defaults on sequences nobody declared as owned.
pub async fn column_sequences(client: &Client, schema: &str, table: &str) -> Result<Vec<ColumnSequence>> {
    let name = qualified(schema, table);
    client
        .query(
            "SELECT DISTINCT a.attname::text AS column_name, n.nspname::text AS schema_name, s.relname::text AS name \
             FROM pg_attribute a \
             JOIN pg_class s ON s.relkind = 'S' AND s.oid IN ( \
                 SELECT pg_get_serial_sequence($1, a.attname)::regclass::oid \
                 UNION ALL \
                 SELECT dep.refobjid FROM pg_attrdef d \
                 JOIN pg_depend dep ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid \
                      AND dep.refclassid = 'pg_class'::regclass \
                 WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum) \
             JOIN pg_namespace n ON n.oid = s.relnamespace \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&name],
        )
        .await
        .with_context(|| format!("reading the sequences of table {schema}.{table} in the target"))?
        .iter()
        .map(|r| {
            let q = "the target's sequences";
            Ok(ColumnSequence {
                column: field(r, q, "column_name")?,
                schema: field(r, q, "schema_name")?,
                name: field(r, q, "name")?,
            })
        })
        .collect()
}
