//! Loading rows into PostgreSQL, shared by `restore` and `csv import`: how existing rows
//! are treated (the mode), emptying tables, COPY into a table or an upsert staging table,
//! and moving sequences past the loaded values. target.rs inspects the target's tables,
//! triggers.rs its user triggers, not_valid.rs sets NOT VALID constraints aside.

pub mod not_valid;
pub mod target;
pub mod triggers;

use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Context, Error, Result};
use crate::pg::{qualified, quote_ident, quote_list};
use target::{ColumnSequence, TargetTable};

const UPSERT_STAGING: &str = "pg_temp.pgmirror_upsert";

/// What happens to rows already in a target table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMode {
    /// Empty the table first (TRUNCATE, or DELETE where a foreign key forbids it).
    Replace,
    /// Add the mirror's rows to what is there.
    Append,
    /// Insert new rows, update rows whose primary key exists.
    Upsert,
}

/// A table of the target by name, as restore and CSV import address it.
#[derive(Debug, Clone)]
pub struct TableRef {
    pub schema: String,
    pub name: String,
    pub partitioned: bool,
}

impl TableRef {
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub fn relation(&self) -> String {
        qualified(&self.schema, &self.name)
    }

    /// The table without an inheritance parent's children; a partitioned table has no rows
    /// of its own, so it is addressed with its partitions.
    pub fn only_relation(&self) -> String {
        let only = if self.partitioned { "" } else { "ONLY " };
        format!("{only}{}", self.relation())
    }
}

/// TRUNCATE the tables at once; where a foreign key from outside the set forbids it,
/// DELETE instead, in reverse order (referencing tables first).
pub async fn empty_tables(client: &Client, tables: &[TableRef]) -> Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    let targets: Vec<String> = tables.iter().map(TableRef::only_relation).collect();
    let truncate = format!(
        "SAVEPOINT pgmirror_truncate; TRUNCATE {}; RELEASE SAVEPOINT pgmirror_truncate",
        targets.join(", ")
    );
    let Err(refused) = client.batch_execute(&truncate).await else {
        return Ok(());
    };
    client
        .batch_execute("ROLLBACK TO SAVEPOINT pgmirror_truncate")
        .await
        .context("emptying the target tables")?;
    // A foreign key from outside the set, or a role allowed DELETE but not TRUNCATE (the
    // usual application grant), is worked around; any other refusal (a trigger, a lock)
    // is the user's to see.
    use tokio_postgres::error::SqlState;
    let worked_around = [SqlState::FEATURE_NOT_SUPPORTED, SqlState::INSUFFICIENT_PRIVILEGE];
    if !refused.code().is_some_and(|code| worked_around.contains(code)) {
        return Err(Error::new(
            format!("emptying the target tables (TRUNCATE {})", targets.join(", ")),
            refused.into(),
        ));
    }
    let because = crate::error::describe_postgres(&refused);
    refuse_cascades(client, tables, &because).await?;
    for (table, target) in tables.iter().zip(&targets).rev() {
        client
            .batch_execute(&format!("DELETE FROM {target}"))
            .await
            .with_context(|| {
                format!(
                    "emptying table {} in the target with DELETE (TRUNCATE was refused: {because})",
                    table.display_name()
                )
            })?;
    }
    Ok(())
}

/// DELETE, unlike TRUNCATE, follows `ON DELETE CASCADE / SET NULL / SET DEFAULT` keys:
/// rows of tables outside the set would change. Refused, naming them.
async fn refuse_cascades(client: &Client, tables: &[TableRef], because: &str) -> Result<()> {
    let relations: Vec<String> = tables.iter().map(TableRef::relation).collect();
    let q = "foreign keys into the restored tables";
    let rows = client
        .query(
            "WITH emptied AS (SELECT to_regclass(name)::oid AS oid FROM unnest($1::text[]) AS name) \
             SELECT c.conrelid::regclass::text AS referencing, c.conname::text AS name, \
                    c.confrelid::regclass::text AS referenced \
             FROM pg_constraint c \
             WHERE c.contype = 'f' AND c.confdeltype IN ('c', 'n', 'd') \
               AND c.confrelid IN (SELECT oid FROM emptied) AND c.conrelid NOT IN (SELECT oid FROM emptied) \
             ORDER BY 1, 2",
            &[&relations],
        )
        .await
        .with_context(|| format!("reading {q}"))?;
    let mut keys = Vec::new();
    for row in &rows {
        let (referencing, name, referenced): (String, String, String) = (
            crate::pg::field(row, q, "referencing")?,
            crate::pg::field(row, q, "name")?,
            crate::pg::field(row, q, "referenced")?,
        );
        keys.push(format!("{referencing} (key {name} on {referenced})"));
    }
    if keys.is_empty() {
        return Ok(());
    }
    Err(Error::unsupported(
        "emptying the target tables",
        format!(
            "TRUNCATE was refused ({because}), and DELETE would also change rows of {} through ON DELETE \
             actions; restore those tables too, or let the role TRUNCATE",
            keys.join(", ")
        ),
    ))
}

/// Where COPY writes for this mode: the table itself, or a staging table for upsert.
pub async fn copy_destination(
    client: &Client,
    destination: &str,
    name: &str,
    mode: RestoreMode,
) -> Result<String> {
    if mode != RestoreMode::Upsert {
        return Ok(destination.to_owned());
    }
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {UPSERT_STAGING}; \
             CREATE TEMP TABLE pgmirror_upsert (LIKE {destination} INCLUDING DEFAULTS) ON COMMIT DROP"
        ))
        .await
        .with_context(|| format!("staging rows of table {name} for upsert"))?;
    Ok(UPSERT_STAGING.to_owned())
}

/// Moves the staged rows into the table: new keys inserted, existing keys updated.
pub async fn upsert_from_staging(
    client: &Client,
    destination: &str,
    columns: &[&str],
    target: &TargetTable,
    name: &str,
) -> Result<()> {
    let column_list = quote_list(columns);
    let key = quote_list(&target.primary_key);
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !target.primary_key.iter().any(|k| k == *c))
        .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
        .collect();
    let action = if updates.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    client
        .batch_execute(&format!(
            "INSERT INTO {destination} ({column_list}) OVERRIDING SYSTEM VALUE \
             SELECT {column_list} FROM {UPSERT_STAGING} ON CONFLICT ({key}) {action}; DROP TABLE {UPSERT_STAGING}"
        ))
        .await
        .with_context(|| format!("upserting rows of table {name}"))
}

/// Moves each sequence feeding a column of the table past the largest value in it (or to
/// `recorded(sequence)`, if larger), so the next INSERT does not collide. Returns
/// `sequence = value` for each one moved.
pub async fn advance_sequences(
    client: &Client,
    table: &TableRef,
    recorded: impl Fn(&ColumnSequence) -> Option<i64>,
) -> Result<Vec<String>> {
    let relation = table.relation();
    let mut moved = Vec::new();
    for feed in target::column_sequences(client, &table.schema, &table.name).await? {
        let sequence = qualified(&feed.schema, &feed.name);
        let sql = format!(
            "SELECT setval($1::text::regclass, v, true) FROM ( \
               SELECT CASE WHEN s.seqincrement > 0 \
                           THEN greatest((SELECT max({col}) FROM {relation})::int8, $2::int8) \
                           ELSE least((SELECT min({col}) FROM {relation})::int8, $2::int8) END AS v \
               FROM pg_sequence s WHERE s.seqrelid = $1::text::regclass) x \
             WHERE v IS NOT NULL",
            col = quote_ident(&feed.column),
        );
        let rows = client
            .query(&sql, &[&sequence, &recorded(&feed)])
            .await
            .with_context(|| format!("moving sequence {sequence} past table {}", table.display_name()))?;
        if let Some(row) = rows.first() {
            moved.push(format!("{sequence} = {}", row.get::<_, i64>(0)));
        }
    }
    Ok(moved)
}
