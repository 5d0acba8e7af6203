//! The mirror-vs-source oracle. Every mirror value is loaded back into PostgreSQL as text,
//! cast to the column's recorded PostgreSQL type, and the resulting rows are compared
//! with the source table as a multiset (EXCEPT ALL both ways) and by ordered md5 digest.
//! PostgreSQL does the parsing, so the check does not reuse pgmirror's own decoders.

use std::path::Path;

use rusqlite::types::ValueRef;

use crate::support::{connect, runtime, simple_rows, TestDb};

struct MirrorTable {
    sqlite_name: String,
    schema: String,
    name: String,
    kind: String,
    row_count: i64,
    /// (column name, pg_type, codec)
    columns: Vec<(String, String, String)>,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn mirror_tables(conn: &rusqlite::Connection) -> Vec<MirrorTable> {
    let mut tables: Vec<MirrorTable> = conn
        .prepare("SELECT sqlite_name, schema_name, table_name, kind, row_count FROM _pgmirror_tables ORDER BY sqlite_name")
        .unwrap()
        .query_map([], |row| {
            Ok(MirrorTable {
                sqlite_name: row.get(0)?,
                schema: row.get(1)?,
                name: row.get(2)?,
                kind: row.get(3)?,
                row_count: row.get(4)?,
                columns: Vec::new(),
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in &mut tables {
        table.columns = conn
            .prepare("SELECT column_name, pg_type, codec FROM _pgmirror_columns WHERE sqlite_table = ?1 ORDER BY ordinal")
            .unwrap()
            .query_map([&table.sqlite_name], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    }
    tables
}

/// A mirror value as text PostgreSQL can cast to the column's type.
fn value_text(value: ValueRef<'_>) -> serde_json::Value {
    match value {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.to_string().into(),
        // Plain digits (Display never writes an exponent, which money does not read).
        ValueRef::Real(f) => format!("{f}").into(),
        ValueRef::Text(t) => String::from_utf8(t.to_vec())
            .expect("mirror text is UTF-8")
            .into(),
        ValueRef::Blob(b) => {
            let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
            format!("\\x{hex}").into()
        }
    }
}

/// SQL turning mirror column `c` (text) back into the PostgreSQL value, as text.
fn restore_expression(column: &str, pg_type: &str, codec: &str) -> String {
    let c = quote(column);
    if codec == "bool" {
        return format!("({c}::int <> 0)::text");
    }
    if codec.starts_with("array:") {
        // JSON for 1-D arrays with lower bound 1, PostgreSQL's literal otherwise.
        return format!(
            "(CASE WHEN left({c}, 1) = '[' AND {c} !~ '^\\[-?[0-9]+:' \
               THEN (SELECT coalesce(array_agg(e ORDER BY i), '{{}}')::text \
                     FROM jsonb_array_elements_text({c}::jsonb) WITH ORDINALITY AS x(e, i)) \
               ELSE {c} END)::{pg_type}::text"
        );
    }
    format!("{c}::{pg_type}::text")
}

/// Asserts that every table of the mirror holds exactly the source table's rows, and that
/// every table of the source is in the mirror. Returns the number of tables compared.
pub fn assert_mirror_matches(db: &TestDb, mirror: &Path) -> usize {
    let conn = crate::support::open_mirror(mirror);
    let tables = mirror_tables(&conn);
    let rt = runtime();
    rt.block_on(async {
        let client = connect(&db.url).await;
        let expected: Vec<String> = simple_rows(
            &client,
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r','p') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname !~ '^pg_toast' \
             ORDER BY 1",
        )
        .await
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect();
        for name in &expected {
            assert!(
                tables.iter().any(|t| &format!("{}.{}", t.schema, t.name) == name),
                "table {name} of the source is missing from the mirror"
            );
        }
        for table in &tables {
            compare_table(&conn, &client, table).await;
        }
    });
    tables.len()
}

/// The exact texts a format 3 mirror keeps for one table: (rowid, column) → text.
fn exact_texts(conn: &rusqlite::Connection, table: &str) -> std::collections::HashMap<(i64, String), String> {
    let kept: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = '_pgmirror_exact_text'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if !kept {
        return Default::default();
    }
    conn.prepare("SELECT row, column_name, exact_text FROM _pgmirror_exact_text WHERE sqlite_table = ?1")
        .unwrap()
        .query_map([table], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

async fn compare_table(conn: &rusqlite::Connection, client: &tokio_postgres::Client, table: &MirrorTable) {
    let names: Vec<String> = table.columns.iter().map(|(n, _, _)| n.clone()).collect();
    let mut exact = exact_texts(conn, &table.sqlite_name);
    let select = format!(
        "SELECT _rowid_, {} FROM {}",
        names.iter().map(|n| quote(n)).collect::<Vec<_>>().join(", "),
        quote(&table.sqlite_name)
    );
    let mut statement = conn.prepare(&select).unwrap();
    let mut rows = statement.query([]).unwrap();
    let mut json_rows = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let rowid: i64 = row.get(0).unwrap();
        let mut object = serde_json::Map::new();
        for (i, name) in names.iter().enumerate() {
            let value = match exact.remove(&(rowid, name.clone())) {
                Some(text) => text.into(),
                None => value_text(row.get_ref(i + 1).unwrap()),
            };
            object.insert(name.clone(), value);
        }
        json_rows.push(serde_json::Value::Object(object));
    }
    assert!(
        exact.is_empty(),
        "{}: _pgmirror_exact_text keeps values of no row: {exact:?}",
        table.sqlite_name
    );
    assert_eq!(
        json_rows.len() as i64,
        table.row_count,
        "{}: _pgmirror_tables.row_count disagrees with the rows in the table",
        table.sqlite_name
    );
    let record_type = names
        .iter()
        .map(|n| format!("{} text", quote(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let mirror_exprs = table
        .columns
        .iter()
        .map(|(n, t, codec)| restore_expression(n, t, codec))
        .collect::<Vec<_>>()
        .join(", ");
    let source_exprs = names
        .iter()
        .map(|n| format!("{}::text", quote(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let only = if table.kind == "partitioned table" {
        ""
    } else {
        "ONLY "
    };
    let source = format!("{only}{}.{}", quote(&table.schema), quote(&table.name));
    let mirror = format!(
        "json_to_recordset({}::json) AS m({record_type})",
        literal(&serde_json::Value::Array(json_rows).to_string())
    );
    let digest = |exprs: &str, from: &str| {
        format!("SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) FROM (SELECT ROW({exprs}) AS r FROM {from}) x")
    };
    let sql = format!(
        "SELECT (SELECT count(*) FROM (SELECT {mirror_exprs} FROM {mirror} EXCEPT ALL SELECT {source_exprs} FROM {source}) a), \
                (SELECT count(*) FROM (SELECT {source_exprs} FROM {source} EXCEPT ALL SELECT {mirror_exprs} FROM {mirror}) b)"
    );
    let result = simple_rows(client, &sql).await;
    let (extra, missing) = (result[0][0].clone().unwrap(), result[0][1].clone().unwrap());
    if extra != "0" || missing != "0" {
        let sample = simple_rows(
            client,
            &format!(
                "(SELECT 'mirror', ROW({mirror_exprs})::text FROM {mirror} EXCEPT ALL SELECT 'mirror', ROW({source_exprs})::text FROM {source}) \
                 UNION ALL (SELECT 'source', ROW({source_exprs})::text FROM {source} EXCEPT ALL SELECT 'source', ROW({mirror_exprs})::text FROM {mirror}) LIMIT 6"
            ),
        )
        .await;
        panic!(
            "{}: {extra} mirror rows not in the source, {missing} source rows not in the mirror; e.g. {sample:?}",
            table.sqlite_name
        );
    }
    let mirror_digest = simple_rows(client, &digest(&mirror_exprs, &mirror)).await;
    let source_digest = simple_rows(client, &digest(&source_exprs, &source)).await;
    assert_eq!(
        mirror_digest, source_digest,
        "{}: content digests differ",
        table.sqlite_name
    );
}
