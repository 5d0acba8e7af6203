//! Source workers: each owns one connection inside the shared snapshot, takes COPY tasks
//! from the queue, decodes the binary stream and sends row batches to the writer.
//! A blocking send on the bounded channel is the backpressure that keeps memory flat.

use std::collections::HashSet;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use futures_util::StreamExt;
use tokio_postgres::Client;

use crate::batch::{BatchLimits, RowBatch};
use crate::copy::{CopyReader, Row};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::{snapshot, ConnectionSpec};
use crate::plan::{CopyTask, ExportPlan, PlannedTable, Redaction};
use crate::progress::Progress;

/// What a worker needs; borrowed from the pipeline for the life of the run.
pub struct Worker<'a> {
    pub spec: &'a ConnectionSpec,
    pub snapshot_id: &'a str,
    pub plan: &'a ExportPlan,
    pub tasks: Receiver<usize>,
    pub batches: Sender<RowBatch>,
    pub limits: BatchLimits,
    pub lock_timeout: Duration,
    pub quit: &'a AtomicBool,
    pub progress: &'a Progress,
    /// The key of `--redact-with hash`.
    pub redact_key: Option<&'a [u8]>,
}

impl Worker<'_> {
    /// Runs until the queue is empty, an error occurs, or the run is cancelled.
    pub fn run(self) -> Result<()> {
        let runtime = crate::pg::runtime()?;
        // A hung socket or a slow --where scan must not outlive a stop or another's failure.
        runtime.block_on(crate::stop::until_stopped(Some(self.quit), self.run_async()))
    }

    async fn run_async(&self) -> Result<()> {
        let client = self.spec.connect().await?;
        snapshot::import(&client, self.snapshot_id).await?;
        snapshot::set_lock_timeout(&client, self.lock_timeout).await?;
        let mut locked = HashSet::new();
        while let Ok(task_index) = self.tasks.try_recv() {
            self.check_quit()?;
            let task = &self.plan.tasks[task_index];
            if task.lockable && locked.insert(task.source_relation.clone()) {
                snapshot::lock_relation(
                    &client,
                    &task.source_name,
                    &task.source_relation,
                    false,
                    self.lock_timeout,
                )
                .await?;
            }
            let table = &self.plan.tables[task.table];
            let described = task.describe();
            self.progress.table_started(&described);
            // A bug in decoding one table's values names that table, like any error.
            futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                self.copy_task(&client, task_index, table),
            ))
            .await
            .unwrap_or_else(|payload| {
                Err(Error::new(
                    format!("reading table {described}"),
                    ErrorKind::Internal(crate::error::panic_message(&*payload)),
                ))
            })?;
            self.progress.table_finished(&described);
        }
        Ok(())
    }

    fn check_quit(&self) -> Result<()> {
        crate::stop::check_stop()?;
        if self.quit.load(Ordering::Relaxed) {
            Err(Error::new("", ErrorKind::Cancelled))
        } else {
            Ok(())
        }
    }

    async fn copy_task(&self, client: &Client, task_index: usize, table: &PlannedTable) -> Result<()> {
        let task = &self.plan.tasks[task_index];
        let new_batch = || RowBatch {
            task: task_index,
            ..RowBatch::new(task.table, table.columns.len(), self.limits)
        };
        let context = || format!("reading table {}", task.describe());
        let stream = client.copy_out(task.query.as_str()).await.with_context(context)?;
        let mut stream = pin!(stream);
        let mut reader = CopyReader::new(table.columns.len());
        let mut batch = new_batch();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(context)?;
            batch.source_bytes += chunk.len() as u64;
            reader
                .feed(&chunk, |row: &Row<'_>| {
                    decode_row(row, task, table, self.redact_key, &mut batch)?;
                    if batch.is_full(self.limits) {
                        let full = std::mem::replace(&mut batch, new_batch());
                        self.send(full)?;
                    }
                    Ok::<(), Error>(())
                })
                .map_err(|e| {
                    if e.context.is_empty() {
                        Error::new(context(), e.kind)
                    } else {
                        e
                    }
                })?;
            self.check_quit()?;
        }
        reader.finish().with_context(context)?;
        if !batch.is_empty() || batch.source_bytes > 0 {
            self.send(batch)?;
        }
        Ok(())
    }

    fn send(&self, batch: RowBatch) -> Result<()> {
        let (rows, bytes) = (batch.rows() as u64, batch.source_bytes);
        self.batches
            .send(batch)
            .map_err(|_| Error::new("", ErrorKind::Cancelled))?;
        self.progress.rows_done(rows, bytes);
        Ok(())
    }
}

fn decode_row(
    row: &Row<'_>,
    task: &CopyTask,
    table: &PlannedTable,
    redact_key: Option<&[u8]>,
    batch: &mut RowBatch,
) -> Result<()> {
    crate::failpoint::hit("decode", &table.sqlite_name);
    for (index, column) in table.columns.iter().enumerate() {
        match row.get(index) {
            None => batch.push_null(),
            Some(bytes) if column.redaction == Some(Redaction::Hash) => {
                let key = redact_key.ok_or_else(|| Error::usage("--redact-with hash needs a key"))?;
                batch.push_str(&keyed_hash(key, bytes));
            }
            Some(bytes) => column.codec.decode_into(bytes, batch).map_err(|e| {
                Error::new(
                    format!(
                        "table {}, column {:?} ({}), row {}",
                        task.describe(),
                        column.name,
                        column.source.type_text,
                        row.number
                    ),
                    ErrorKind::Copy(e),
                )
            })?,
        }
    }
    Ok(())
}

/// HMAC-SHA256 of a value's text under the redaction key, as lower-case hex.
fn keyed_hash(key: &[u8], text: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(text);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keyed_hash_is_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::keyed_hash(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
