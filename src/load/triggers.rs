//! User triggers on the tables being loaded. A restore puts back the mirror's rows, not
//! what a trigger makes of them: `--disable-triggers` turns off, inside the load's
//! transaction, exactly the user triggers that would fire, and turns the same ones back on
//! before the commit. Foreign-key triggers stay on (tables load in key order), so the
//! table's owner is enough; pg_restore's DISABLE TRIGGER ALL needs a superuser.

use tokio_postgres::Client;

use super::TableRef;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::{field, quote_ident};

/// A user trigger that fires on ordinary writes (enabled in the origin role).
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The relation it is on, as PostgreSQL names it (a partition's for cloned triggers).
    pub relation: String,
    pub name: String,
}

impl Trigger {
    pub fn describe(&self) -> String {
        format!("{} on {}", self.name, self.relation)
    }
}

/// The user triggers that would fire while the tables (and their partitions) are loaded.
/// (pg_partition_tree lists nothing for a table outside a partition tree, so the table
/// itself is added.)
pub async fn firing(client: &Client, tables: &[TableRef]) -> Result<Vec<Trigger>> {
    let relations: Vec<String> = tables.iter().map(TableRef::relation).collect();
    let q = "the target's triggers";
    let rows = client
        .query(
            "SELECT t.tgrelid::regclass::text AS relation, t.tgname::text AS name \
             FROM unnest($1::text[]) AS loaded(name) \
             CROSS JOIN LATERAL ( \
                 SELECT to_regclass(loaded.name) AS relid \
                 UNION SELECT relid FROM pg_partition_tree(to_regclass(loaded.name))) AS tree \
             JOIN pg_trigger t ON t.tgrelid = tree.relid \
             WHERE NOT t.tgisinternal AND t.tgenabled IN ('O', 'A') \
             ORDER BY 1, 2",
            &[&relations],
        )
        .await
        .with_context(|| format!("reading {q}"))?;
    rows.iter()
        .map(|row| {
            Ok(Trigger {
                relation: field(row, q, "relation")?,
                name: field(row, q, "name")?,
            })
        })
        .collect()
}

/// Turns the triggers off (`enabled` false) or back on, inside the current transaction.
pub async fn set_enabled(client: &Client, triggers: &[Trigger], enabled: bool) -> Result<()> {
    let action = if enabled { "ENABLE" } else { "DISABLE" };
    for trigger in triggers {
        // The relation text comes from regclass output, already quoted as needed.
        let sql = format!(
            "ALTER TABLE {} {action} TRIGGER {}",
            trigger.relation,
            quote_ident(&trigger.name)
        );
        if let Err(e) = client.batch_execute(&sql).await {
            let context = format!(
                "--disable-triggers: {} trigger {}",
                action.to_lowercase(),
                trigger.describe()
            );
            let denied = e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
            if denied {
                return Err(Error::new(
                    context,
                    ErrorKind::Unsupported(format!(
                        "{}; turning a table's triggers off needs its owner (or a superuser): connect as one, \
                         or restore without --disable-triggers",
                        crate::error::describe_postgres(&e)
                    )),
                ));
            }
            return Err(Error::new(context, e.into()));
        }
    }
    Ok(())
}

/// The triggers of a load, turned off for it when `disable` (see [`Guard::finish`]).
pub struct Guard {
    triggers: Vec<Trigger>,
    disabled: bool,
}

impl Guard {
    /// Lists the triggers that would fire on the tables and, when `disable`, turns them off.
    pub async fn take(client: &Client, tables: &[TableRef], disable: bool) -> Result<Guard> {
        let triggers = firing(client, tables).await?;
        if disable {
            set_enabled(client, &triggers, false).await?;
        }
        Ok(Guard {
            triggers,
            disabled: disable,
        })
    }

    /// The warning to show when triggers were left on and some fired.
    pub fn warning(&self) -> Option<String> {
        warning(&self.triggers).filter(|_| !self.disabled)
    }

    /// A load that failed while triggers fired likelier than not failed because of one:
    /// the error says so, with the way out.
    pub fn blame(&self, error: Error) -> Error {
        match self.warning() {
            Some(warning) => Error::new(format!("{} ({warning})", error.context), error.kind),
            None => error,
        }
    }

    /// Turns the disabled triggers on again (before the commit).
    pub async fn finish(self, client: &Client) -> Result<()> {
        if self.disabled {
            set_enabled(client, &self.triggers, true).await?;
        }
        Ok(())
    }
}

/// The warning for triggers left on: what fired on the restored rows.
pub fn warning(triggers: &[Trigger]) -> Option<String> {
    (!triggers.is_empty()).then(|| {
        let names: Vec<String> = triggers.iter().map(Trigger::describe).collect();
        format!(
            "user triggers fired on the restored rows, so the target may hold what they made of them: {} \
             (--disable-triggers restores the rows exactly)",
            names.join(", ")
        )
    })
}
