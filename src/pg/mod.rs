//! Everything that talks to PostgreSQL: connections, the snapshot, the catalog model.

pub mod catalog;
pub mod connect;
pub mod snapshot;

pub use connect::ConnectionSpec;

/// The single-threaded tokio runtime each thread that talks to PostgreSQL drives its
/// connection with: blocking sends on the batch channel then throttle the connection too.
pub fn runtime() -> crate::error::Result<tokio::runtime::Runtime> {
    use crate::error::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")
}

/// One column of a row by name (catalog queries name every column): a column missing from a query, or of a type this
/// build does not expect (another server version), is an error naming both, not a panic.
pub fn field<'a, T: postgres_types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    query: &str,
    column: &str,
) -> crate::error::Result<T> {
    use crate::error::Context;
    row.try_get(column)
        .with_context(|| format!("reading {query}: column {column}"))
}

/// Quotes an identifier for PostgreSQL and SQLite alike (both double embedded quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"a", "b", "c"`: a quoted, comma-separated list of identifiers.
pub fn quote_list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"schema"."name"`
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Quotes a string literal (standard_conforming_strings is on from PostgreSQL 9.1).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Ends a transaction by its outcome: COMMIT on success (unless a stop was requested), an
/// explicit ROLLBACK on failure. `what` names the work in messages ("the restore").
pub async fn finish_transaction<T>(
    client: &tokio_postgres::Client,
    outcome: crate::error::Result<T>,
    what: &str,
) -> crate::error::Result<T> {
    use crate::error::Context;
    match outcome.and_then(|done| crate::stop::check_stop().map(|_| done)) {
        Ok(done) => {
            client
                .batch_execute("COMMIT")
                .await
                .with_context(|| format!("committing {what}"))?;
            Ok(done)
        }
        // After a stop the server may not answer (that may be why the user stopped):
        // closing the connection rolls back without waiting for it.
        Err(error) if crate::stop::stop_requested() => Err(error),
        Err(error) => {
            // Dropping the connection would roll back too; say it explicitly.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(error)
        }
    }
}
