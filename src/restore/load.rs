//! Streaming one mirror table into `COPY ... FROM STDIN`.

use std::pin::pin;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::Client;

use crate::convert::write_copy_text;
use crate::error::{Context, Result};
use crate::load::target::TargetTable;
use crate::load::{copy_destination, upsert_from_staging, RestoreMode};
use crate::mirror::{Mirror, MirrorTable, RowReader};
use crate::pg::{qualified, quote_list};
use crate::progress::Progress;

/// Bytes of COPY data sent per message.
const CHUNK_BYTES: usize = 1 << 20;

/// A table without columns is recorded by its row count alone: that many rows go back.
async fn put_back_columnless_rows(client: &Client, table: &MirrorTable, destination: &str) -> Result<u64> {
    let rows = client
        .execute(
            &format!("INSERT INTO {destination} SELECT FROM generate_series(1, $1::int8)"),
            &[&table.row_count],
        )
        .await
        .with_context(|| {
            format!(
                "restoring the {} rows of table {} (it has no columns)",
                table.row_count,
                table.display_name()
            )
        })?;
    Ok(rows)
}

/// Loads the table's rows; returns how many.
pub async fn load_table(
    client: &Client,
    mirror: &Mirror,
    table: &MirrorTable,
    target: &TargetTable,
    mode: RestoreMode,
    progress: &Progress,
) -> Result<u64> {
    let name = table.display_name();
    let destination = qualified(&table.schema, &table.name);
    if table.columns.is_empty() {
        return put_back_columnless_rows(client, table, &destination).await;
    }
    let columns = table.loadable_columns()?;
    let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    let column_list = quote_list(&names);
    let copy_into = copy_destination(client, &destination, &name, mode).await?;
    let context = || {
        format!(
            "restoring table {name} (COPY line N is row N of mirror table {:?} in rowid order)",
            table.sqlite_name
        )
    };
    let sink = client
        .copy_in::<_, Bytes>(&format!("COPY {copy_into} ({column_list}) FROM STDIN"))
        .await
        .with_context(context)?;
    let mut sink = pin!(sink);
    let mut reader = RowReader::new(mirror, table, &columns)?;
    let mut rows = reader.rows()?;
    let mut buffer = Vec::with_capacity(CHUNK_BYTES + 4096);
    let mut count: u64 = 0;
    let mut since_report: u64 = 0;
    while let Some(row) = rows.next_row()? {
        for (index, (_, codec)) in columns.iter().enumerate() {
            if index > 0 {
                buffer.push(b'\t');
            }
            write_copy_text(*codec, row.value(index)?, &mut buffer);
        }
        buffer.push(b'\n');
        count += 1;
        since_report += 1;
        if buffer.len() >= CHUNK_BYTES {
            crate::stop::check_stop()?;
            let chunk = Bytes::from(std::mem::replace(
                &mut buffer,
                Vec::with_capacity(CHUNK_BYTES + 4096),
            ));
            sink.send(chunk).await.with_context(context)?;
            progress.rows_done(since_report, 0);
            since_report = 0;
        }
    }
    if !buffer.is_empty() {
        sink.send(Bytes::from(buffer)).await.with_context(context)?;
    }
    sink.as_mut().finish().await.with_context(context)?;
    progress.rows_done(since_report, 0);
    if mode == RestoreMode::Upsert {
        upsert_from_staging(client, &destination, &names, target, &name).await?;
    }
    Ok(count)
}
