//! User triggers on the tables being loaded. A restore puts back the mirror's rows, not
//! what a trigger makes of them: `--disable-triggers` turns off, inside the load's
//! transaction, exactly the user triggers that would fire, and before the commit puts every
//! trigger of the tables and their partitions back in the state it had (O, A, R, D). Foreign-key triggers stay on (tables load in key order), so the
//! table's owner is enough; pg_restore's DISABLE TRIGGER ALL needs a superuser.

use tokio_postgres::Client;

use super::TableRef;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::{field, quote_ident};

/// A user trigger on a loaded table or one of its partitions, with the state it had.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The relation it is on, as PostgreSQL names it (a partition's for cloned triggers).
    pub relation: String,
    pub name: String,
    /// `pg_trigger.tgenabled`: O (fires in origin sessions), A (always), R (replica), D (off).
    state: String,
    /// 0 for the loaded table, 1 for its partitions, and so on.
    depth: i32,
}

impl Trigger {
    pub fn describe(&self) -> String {
        format!("{} on {}", self.name, self.relation)
    }

    /// Fires on this session's writes (replication role origin).
    fn fires(&self) -> bool {
        matches!(self.state.as_str(), "O" | "A")
    }
}

/// Every user trigger of the tables and their partitions, parents before partitions.
/// (pg_partition_tree lists nothing for a table outside a partition tree, so the table
/// itself is added.)
async fn all_triggers(client: &Client, tables: &[TableRef]) -> Result<Vec<Trigger>> {
    let relations: Vec<String> = tables.iter().map(TableRef::relation).collect();
    let q = "the target's triggers";
    let rows = client
        .query(
            "SELECT t.tgrelid::regclass::text AS relation, t.tgname::text AS name, \
                    t.tgenabled::text AS state, tree.level AS depth \
             FROM unnest($1::text[]) AS loaded(name) \
             CROSS JOIN LATERAL ( \
                 SELECT to_regclass(loaded.name) AS relid, 0 AS level \
                 UNION SELECT relid, level FROM pg_partition_tree(to_regclass(loaded.name))) AS tree \
             JOIN pg_trigger t ON t.tgrelid = tree.relid \
             WHERE NOT t.tgisinternal \
             ORDER BY depth, relation, name",
            &[&relations],
        )
        .await
        .with_context(|| format!("reading {q}"))?;
    rows.iter()
        .map(|row| {
            Ok(Trigger {
                relation: field(row, q, "relation")?,
                name: field(row, q, "name")?,
                state: field(row, q, "state")?,
                depth: field(row, q, "depth")?,
            })
        })
        .collect()
}

/// Puts one trigger into `state` (O, A, R or D), inside the current transaction.
async fn set_state(client: &Client, trigger: &Trigger, state: &str) -> Result<()> {
    let action = match state {
        "A" => "ENABLE ALWAYS",
        "R" => "ENABLE REPLICA",
        "D" => "DISABLE",
        _ => "ENABLE",
    };
    // The relation text comes from regclass output, already quoted as needed.
    let sql = format!(
        "ALTER TABLE {} {action} TRIGGER {}",
        trigger.relation,
        quote_ident(&trigger.name)
    );
    let Err(e) = client.batch_execute(&sql).await else {
        return Ok(());
    };
    let context = format!(
        "--disable-triggers: {} trigger {}",
        action.to_lowercase(),
        trigger.describe()
    );
    if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
        return Err(Error::new(
            context,
            ErrorKind::Unsupported(format!(
                "{}; turning a table's triggers off needs its owner (or a superuser): connect as one, \
                 or restore without --disable-triggers",
                crate::error::describe_postgres(&e)
            )),
        ));
    }
    Err(Error::new(context, e.into()))
}

/// The triggers of a load: which would fire, and, with `--disable-triggers`, the state of
/// every one of them to put back (see [`Guard::finish`]).
pub struct Guard {
    triggers: Vec<Trigger>,
    disabled: bool,
}

impl Guard {
    /// Lists the triggers that would fire on the tables and, when `disable`, turns them off.
    pub async fn take(client: &Client, tables: &[TableRef], disable: bool) -> Result<Guard> {
        let triggers = all_triggers(client, tables).await?;
        if disable {
            for trigger in triggers.iter().filter(|t| t.fires()) {
                set_state(client, trigger, "D").await?;
            }
        }
        Ok(Guard {
            triggers,
            disabled: disable,
        })
    }

    /// The warning to show when triggers were left on and some fired.
    pub fn warning(&self) -> Option<String> {
        let firing: Vec<String> = self
            .triggers
            .iter()
            .filter(|t| t.fires())
            .map(Trigger::describe)
            .collect();
        (!self.disabled && !firing.is_empty()).then(|| {
            format!(
                "user triggers fired on the restored rows, so the target may hold what they made of them: {} \
                 (--disable-triggers restores the rows exactly)",
                firing.join(", ")
            )
        })
    }

    /// A load that failed while triggers fired likelier than not failed because of one:
    /// the error says so, with the way out.
    pub fn blame(&self, error: Error) -> Error {
        match self.warning() {
            Some(warning) => Error::new(format!("{} ({warning})", error.context), error.kind),
            None => error,
        }
    }

    /// Puts every trigger back exactly as it was (before the commit): parents first, since
    /// a partitioned table's ALTER reaches its partitions, whose own states come after.
    pub async fn finish(self, client: &Client) -> Result<()> {
        if !self.disabled || self.triggers.is_empty() {
            return Ok(());
        }
        // ALTER TABLE refuses a table with queued deferred-constraint checks: run them now
        // (they would run at the commit anyway, with the same outcome).
        client
            .batch_execute("SET CONSTRAINTS ALL IMMEDIATE")
            .await
            .context("checking deferred constraints before turning triggers on again")?;
        let mut ordered = self.triggers;
        ordered.sort_by_key(|t| t.depth);
        for trigger in &ordered {
            set_state(client, trigger, &trigger.state).await?;
        }
        Ok(())
    }
}
