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
