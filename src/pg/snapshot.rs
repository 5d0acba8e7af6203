//! One consistent snapshot for the whole run: the coordinator exports it, each worker imports it.

use std::time::Duration;

use tokio_postgres::Client;

use crate::error::{Context, Error, ErrorKind, Result};

/// Starts the coordinator's transaction and exports its snapshot. The transaction must stay
/// open until every worker has imported the snapshot.
pub async fn export(client: &Client) -> Result<String> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .context("starting the snapshot transaction")?;
    let row = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .context("exporting the snapshot")?;
    Ok(row.get(0))
}

/// Where a replica's stream takes over from its initial copy (`pgmirror sync --init`).
#[derive(Debug, Clone)]
pub struct ReplicationPoint {
    pub snapshot_id: String,
    /// `pg_current_snapshot()`: which transactions the copy holds.
    pub snapshot: String,
    /// The WAL insert position right after the snapshot was taken.
    pub wal_lsn: String,
}

/// Like [`export`], but locks `relations` (qualified names; partitioned tables with their
/// partitions) before the snapshot is taken: LOCK takes no snapshot, and a TRUNCATE
/// committed between the snapshot and a table's copy would otherwise make the copy see an
/// empty table (TRUNCATE is not MVCC-safe).
pub async fn export_after_locks(
    client: &Client,
    relations: &[String],
    timeout: Duration,
) -> Result<ReplicationPoint> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .context("starting the snapshot transaction")?;
    set_lock_timeout(client, timeout).await?;
    for relation in relations {
        lock_relation(client, relation, relation, true, timeout).await?;
    }
    let row = client
        .query_one(
            "SELECT pg_export_snapshot() AS id, pg_current_snapshot()::text AS snapshot, \
             pg_current_wal_insert_lsn()::text AS wal_lsn",
            &[],
        )
        .await
        .context("exporting the snapshot")?;
    let q = "the snapshot";
    Ok(ReplicationPoint {
        snapshot_id: super::field(&row, q, "id")?,
        snapshot: super::field(&row, q, "snapshot")?,
        wal_lsn: super::field(&row, q, "wal_lsn")?,
    })
}

/// Makes the worker's transaction see exactly what the coordinator's sees.
pub async fn import(client: &Client, snapshot_id: &str) -> Result<()> {
    let sql = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
        super::quote_literal(snapshot_id)
    );
    client
        .batch_execute(&sql)
        .await
        .with_context(|| format!("importing snapshot {snapshot_id}"))
}

/// Bounds how long any later lock request of this transaction waits.
pub async fn set_lock_timeout(client: &Client, timeout: Duration) -> Result<()> {
    let millis = timeout.as_millis().max(1);
    client
        .batch_execute(&format!("SET LOCAL lock_timeout = {millis}"))
        .await
        .context("setting lock_timeout")
}

/// Takes ACCESS SHARE on a relation so a concurrent DROP or ALTER fails this run cleanly
/// up front instead of half-way. `with_partitions` also locks a partitioned table's leaves.
pub async fn lock_relation(
    client: &Client,
    display_name: &str,
    qualified_name: &str,
    with_partitions: bool,
    timeout: Duration,
) -> Result<()> {
    let only = if with_partitions { "" } else { "ONLY " };
    let sql = format!("LOCK TABLE {only}{qualified_name} IN ACCESS SHARE MODE");
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => Err(Error::new(
            format!("locking table {display_name}"),
            ErrorKind::Unsupported(format!(
                "another session holds a conflicting lock; gave up after {} (--lock-wait-timeout)",
                humanize(timeout)
            )),
        )),
        Err(e) => Err(Error::new(
            format!("locking table {display_name}"),
            ErrorKind::Postgres(e),
        )),
    }
}

fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}
