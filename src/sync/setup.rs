//! Setting a replica up on the source and taking it down: the checks made before anything
//! is created, the publication (for exactly the chosen tables, never FOR ALL TABLES: that
//! makes UPDATE and DELETE fail on the source for tables without a replica identity) and
//! the pgoutput slot.

use std::time::Duration;

use tokio_postgres::Client;

use crate::convert::{choose_codec, SelectAs};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::catalog::{Catalog, Relation, RelationKind};
use crate::pg::quote_ident;

/// PostgreSQL 14 brought pgoutput's binary mode, which sends values as binary COPY does.
const MIN_VERSION_NUM: i32 = 140_000;

/// A slot and publication name: PostgreSQL allows lower-case letters, digits and `_`.
pub fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "--slot {name:?}: a slot name is 1 to 63 lower-case letters, digits and underscores"
        )))
    }
}

/// A fresh name for a new replica's slot and publication.
pub fn new_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "pgmirror_{:x}_{:x}",
        (nanos / 1_000_000) as u64,
        std::process::id()
    )
}

/// What the server must offer before a replica is set up.
pub async fn check_server(client: &Client, catalog: &Catalog) -> Result<()> {
    let context = "checking the server for logical decoding";
    if catalog.server.version_num < MIN_VERSION_NUM {
        return Err(Error::unsupported(
            context,
            format!(
                "PostgreSQL {} cannot send values in binary; pgmirror sync needs 14 or later",
                catalog.server.version
            ),
        ));
    }
    let row = client
        .query_one(
            "SELECT current_setting('wal_level') AS wal_level, \
                    (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS may_replicate, \
                    current_user::text AS role_name",
            &[],
        )
        .await
        .context(context)?;
    let q = "the server's replication settings";
    let wal_level: String = crate::pg::field(&row, q, "wal_level")?;
    if wal_level != "logical" {
        return Err(Error::unsupported(
            context,
            format!(
                "the server runs with wal_level = {wal_level}; following changes needs wal_level = logical \
                 (set it in postgresql.conf and restart the server; managed services have a parameter \
                 such as rds.logical_replication)"
            ),
        ));
    }
    let may_replicate: Option<bool> = crate::pg::field(&row, q, "may_replicate")?;
    if may_replicate != Some(true) {
        let role: String = crate::pg::field(&row, q, "role_name")?;
        return Err(Error::unsupported(
            context,
            format!(
                "role {role} may not use replication slots; a superuser can allow it: ALTER ROLE {} REPLICATION",
                quote_ident(&role)
            ),
        ));
    }
    Ok(())
}

/// Refuses, naming the table and the fix, every selected table whose changes could not be
/// followed exactly. Runs before anything is created.
pub async fn check_tables(client: &Client, catalog: &Catalog, selected: &[&Relation]) -> Result<()> {
    let mut problems = Vec::new();
    let mut oids = Vec::new();
    for relation in selected {
        if !matches!(
            relation.kind,
            RelationKind::Table | RelationKind::PartitionedTable
        ) {
            continue;
        }
        if relation.columns.is_empty() {
            problems.push(format!("table {} has no columns", relation.display_name()));
        }
        for column in &relation.columns {
            if !column.generated.is_empty() {
                problems.push(format!(
                    "table {}, column {:?}: generated columns are not in PostgreSQL's change stream; \
                     leave the table out (--exclude-table)",
                    relation.display_name(),
                    column.name
                ));
                continue;
            }
            let (_, select_as) = choose_codec(column.type_info, catalog.server.money_scale);
            if matches!(select_as, SelectAs::TextOutput | SelectAs::InetOutput) {
                problems.push(format!(
                    "table {}, column {:?} ({}): export reads this type as text, and pgmirror sync \
                     follows only types it decodes from the binary change stream; leave the table \
                     out (--exclude-table)",
                    relation.display_name(),
                    column.name,
                    column.type_text
                ));
            }
        }
        oids.push(relation.oid);
        oids.extend(catalog.partition_leaves(relation.oid).map(|leaf| leaf.oid));
    }
    let rows = client
        .query(include_str!("sql/replica_identity.sql"), &[&oids])
        .await
        .context("reading the tables' replica identities")?;
    let q = "the replica identities";
    for row in &rows {
        let schema: String = crate::pg::field(row, q, "schema_name")?;
        let name: String = crate::pg::field(row, q, "table_name")?;
        let identity: String = crate::pg::field(row, q, "replica_identity")?;
        let has_primary_key: bool = crate::pg::field(row, q, "has_primary_key")?;
        let has_identity_index: bool = crate::pg::field(row, q, "has_identity_index")?;
        let has_deferrable_unique: bool = crate::pg::field(row, q, "has_deferrable_unique")?;
        if has_deferrable_unique {
            problems.push(format!(
                "table {schema}.{name} has a DEFERRABLE primary key or unique constraint: inside a transaction \
                 its rows may collide for a moment, which the mirror's unique index refuses; leave the \
                 table out (--exclude-table)"
            ));
            continue;
        }
        let identifiable = match identity.as_str() {
            "f" => true,
            "d" => has_primary_key,
            "i" => has_identity_index,
            _ => false,
        };
        if !identifiable {
            let qualified = crate::pg::qualified(&schema, &name);
            problems.push(format!(
                "table {schema}.{name} has no primary key and no REPLICA IDENTITY FULL, so its updated \
                 and deleted rows cannot be found; fix: ALTER TABLE {qualified} REPLICA IDENTITY FULL"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::unsupported(
            "pgmirror sync --init",
            format!("these tables cannot be followed: {}", problems.join("; ")),
        ))
    }
}

/// Creates the publication for exactly `tables` (qualified names), partitioned tables
/// published through their root so their rows land in the root's mirror table.
pub async fn create_publication(client: &Client, name: &str, tables: &[String]) -> Result<()> {
    let sql = format!(
        "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
        quote_ident(name),
        tables.join(", ")
    );
    client
        .batch_execute(&sql)
        .await
        .with_context(|| format!("creating publication {name} (this needs ownership of the tables)"))
}

/// Whether the publication already has this table (partitioned tables are listed by root).
pub async fn publishes(client: &Client, publication: &str, schema: &str, name: &str) -> Result<bool> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
            &[&publication, &schema, &name],
        )
        .await
        .with_context(|| format!("reading publication {publication}"))?
        .is_some())
}

/// Adds a table to the publication. SHARE mode waits (at most `timeout`) for the
/// transactions writing it: changes they made before the table was published would be in
/// neither the stream nor a copy taken before they commit.
pub async fn add_to_publication(
    client: &Client,
    publication: &str,
    qualified: &str,
    timeout: Duration,
) -> Result<()> {
    let sql = format!(
        "BEGIN; SET LOCAL lock_timeout = {}; LOCK TABLE {qualified} IN SHARE MODE; \
         ALTER PUBLICATION {} ADD TABLE {qualified}; COMMIT",
        timeout.as_millis().max(1),
        quote_ident(publication)
    );
    if let Err(e) = client.batch_execute(&sql).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(Error::new(
            format!("adding {qualified} to publication {publication} (this needs ownership of the table)"),
            ErrorKind::Postgres(e),
        ));
    }
    Ok(())
}

/// Takes a table out of the publication again (a `--resync` that added it failed).
pub async fn remove_from_publication(client: &Client, publication: &str, qualified: &str) -> Result<()> {
    client
        .batch_execute(&format!(
            "ALTER PUBLICATION {} DROP TABLE {qualified}",
            quote_ident(publication)
        ))
        .await
        .with_context(|| format!("removing {qualified} from publication {publication}"))
}

/// Waits (at most `timeout`) until every transaction running now has ended. With
/// synchronous replication a commit can be in the WAL, and so applied, before other
/// sessions see it: a copy's snapshot taken then would miss it while the stream skips it.
pub async fn wait_for_running_transactions(client: &Client, timeout: Duration) -> Result<()> {
    let context = "waiting for running transactions";
    let row = client
        .query_one(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax",
            &[],
        )
        .await
        .context(context)?;
    let xmax: String = crate::pg::field(&row, "the current snapshot", "xmax")?;
    let started = std::time::Instant::now();
    loop {
        let done: bool = client
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8 AS done",
                &[&xmax],
            )
            .await
            .context(context)?
            .try_get("done")
            .context(context)?;
        if done {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(Error::unsupported(
                context,
                format!(
                    "transactions that were running when --resync began are still running after {}s \
                     (--lock-wait-timeout); try again when they have ended",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Refuses a name whose slot or publication exists: `--init` must not take over, or on
/// failure drop, what another replica or tool made.
pub async fn check_names_free(client: &Client, name: &str) -> Result<()> {
    let context = || format!("checking that slot and publication {name} are free");
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1) AS slot, \
                    EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS publication",
            &[&name],
        )
        .await
        .with_context(context)?;
    let q = "the slot and publication names";
    let slot: bool = crate::pg::field(&row, q, "slot")?;
    let publication: bool = crate::pg::field(&row, q, "publication")?;
    if slot || publication {
        return Err(Error::usage(format!(
            "a replication {} named {name} exists already; choose another --slot (if it is an abandoned \
             pgmirror replica's, pgmirror sync --drop --slot {name} removes it)",
            if slot { "slot" } else { "publication" }
        )));
    }
    Ok(())
}

/// Creates the slot; returns the LSN its stream starts after.
pub async fn create_slot(client: &Client, name: &str) -> Result<String> {
    let context = || format!("creating replication slot {name}");
    let row = client
        .query_one(
            "SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&name],
        )
        .await
        .with_context(context)?;
    crate::pg::field(&row, "the new slot", "lsn")
}

/// What `drop` removed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Dropped {
    pub slot: Option<String>,
    pub publication: Option<String>,
}

/// After a failed `--init`: drops the publication it made and the slot, if it made one.
pub async fn drop_created(client: &Client, slot: Option<&str>, publication: &str) -> Result<()> {
    if let Some(slot) = slot {
        client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .with_context(|| format!("dropping replication slot {slot}"))?;
    }
    client
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {}",
            quote_ident(publication)
        ))
        .await
        .with_context(|| format!("dropping publication {publication}"))
}

/// Drops the slot and the publication of that name, where they exist.
pub async fn drop_replication(client: &Client, slot: &str, publication: &str) -> Result<Dropped> {
    let mut dropped = Dropped::default();
    let slot_exists = client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .with_context(|| format!("looking for replication slot {slot}"))?
        .is_some();
    if slot_exists {
        match client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
        {
            Ok(_) => dropped.slot = Some(slot.to_owned()),
            Err(e) => {
                return Err(Error::new(
                    format!("dropping replication slot {slot} (is a pgmirror sync still running on it?)"),
                    ErrorKind::Postgres(e),
                ))
            }
        }
    }
    let publication_exists = client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&publication])
        .await
        .with_context(|| format!("looking for publication {publication}"))?
        .is_some();
    if publication_exists {
        client
            .batch_execute(&format!("DROP PUBLICATION {}", quote_ident(publication)))
            .await
            .with_context(|| format!("dropping publication {publication}"))?;
        dropped.publication = Some(publication.to_owned());
    }
    Ok(dropped)
}

/// The cluster's identity, so changes are never applied from another cluster.
pub async fn system_identifier(client: &Client) -> Result<String> {
    let row = client
        .query_one(
            "SELECT system_identifier::text AS id FROM pg_control_system()",
            &[],
        )
        .await
        .context("reading the server's system identifier")?;
    crate::pg::field(&row, "the system identifier", "id")
}

/// The slot's health and how far behind the mirror is.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SlotStatus {
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: String,
    pub confirmed_flush_lsn: String,
    /// WAL the slot keeps on the source's disk.
    pub retained_bytes: i64,
    /// WAL written since the slot's confirmed position.
    pub lag_bytes: i64,
}

pub async fn slot_status(client: &Client, slot: &str) -> Result<SlotStatus> {
    let row = client
        .query_opt(
            "SELECT coalesce(wal_status, '') AS wal_status, coalesce(confirmed_flush_lsn::text, '') AS confirmed, \
                    coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::int8 AS retained, \
                    coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::int8 AS lag, \
                    plugin::text AS plugin, database::text AS database, current_database()::text AS here \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .with_context(|| format!("reading replication slot {slot}"))?
        .ok_or_else(|| {
            Error::unsupported(
                format!("replication slot {slot}"),
                "it does not exist on the source (dropped, or another server); the mirror cannot catch \
                 up: make a new replica with pgmirror sync --init",
            )
        })?;
    let q = "the replication slot";
    let status = SlotStatus {
        wal_status: crate::pg::field(&row, q, "wal_status")?,
        confirmed_flush_lsn: crate::pg::field(&row, q, "confirmed")?,
        retained_bytes: crate::pg::field(&row, q, "retained")?,
        lag_bytes: crate::pg::field(&row, q, "lag")?,
    };
    let plugin: String = crate::pg::field(&row, q, "plugin")?;
    let database: Option<String> = crate::pg::field(&row, q, "database")?;
    let here: String = crate::pg::field(&row, q, "here")?;
    if plugin != "pgoutput" || database.as_deref() != Some(here.as_str()) {
        return Err(Error::unsupported(
            format!("replication slot {slot}"),
            format!(
                "it is not this mirror's: plugin {plugin}, database {}",
                database.unwrap_or_default()
            ),
        ));
    }
    if status.wal_status == "lost" {
        return Err(Error::unsupported(
            format!("replication slot {slot}"),
            "it was invalidated (wal_status lost): the server removed WAL the mirror had not applied \
             (see max_slot_wal_keep_size). The mirror cannot catch up: run pgmirror sync --drop, then --init",
        ));
    }
    Ok(status)
}

/// `LOCK`-ready names of the tables and the quoted list for the publication.
pub fn qualified_names(selected: &[&Relation]) -> Vec<String> {
    selected
        .iter()
        .filter(|r| matches!(r.kind, RelationKind::Table | RelationKind::PartitionedTable))
        .map(|r| r.qualified_name())
        .collect()
}

/// Quotes a publication name for pgoutput's `publication_names` option.
pub fn publication_option(name: &str) -> String {
    quote_ident(name)
}
