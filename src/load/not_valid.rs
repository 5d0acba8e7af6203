//! NOT VALID constraints on the tables a restore loads. Such a constraint promises nothing
//! about the rows that were there when it was added, and the source's rows may break it;
//! pg_restore adds it after the data for that reason. A restore into existing tables does
//! the same: it sets the NOT VALID CHECK and foreign-key constraints of the tables (and
//! their partitions) aside inside the transaction and adds them back, NOT VALID, after
//! the rows.

use tokio_postgres::Client;

use super::TableRef;
use crate::error::{Context, Result};
use crate::pg::{field, quote_ident, quote_literal};

/// A constraint set aside, with what puts it back.
#[derive(Debug)]
struct SetAside {
    /// As PostgreSQL names it (regclass text, quoted as needed).
    relation: String,
    name: String,
    /// `pg_get_constraintdef`, ending in NOT VALID.
    definition: String,
    /// Its COMMENT, which dropping it loses.
    comment: Option<String>,
}

/// The NOT VALID constraints taken off for a load; [`Suspended::restore`] puts them back.
#[must_use = "the constraints must be put back before the commit"]
pub struct Suspended(Vec<SetAside>);

impl Suspended {
    /// Drops the NOT VALID constraints the tables (and their partitions) define themselves;
    /// an inherited copy goes with its parent's and comes back with it.
    pub async fn take(client: &Client, tables: &[TableRef]) -> Result<Suspended> {
        let relations: Vec<String> = tables.iter().map(TableRef::relation).collect();
        let q = "the target's NOT VALID constraints";
        let rows = client
            .query(
                "SELECT DISTINCT c.conrelid::regclass::text AS relation, c.conname::text AS name, \
                        pg_get_constraintdef(c.oid) AS definition, \
                        obj_description(c.oid, 'pg_constraint') AS comment \
                 FROM unnest($1::text[]) AS loaded(name) \
                 CROSS JOIN LATERAL ( \
                     SELECT to_regclass(loaded.name) AS relid \
                     UNION SELECT relid FROM pg_partition_tree(to_regclass(loaded.name))) AS tree \
                 JOIN pg_constraint c ON c.conrelid = tree.relid \
                 WHERE NOT c.convalidated AND c.contype IN ('c', 'f') AND c.coninhcount = 0 \
                 ORDER BY 1, 2",
                &[&relations],
            )
            .await
            .with_context(|| format!("reading {q}"))?;
        let mut set_aside = Vec::with_capacity(rows.len());
        for row in &rows {
            let constraint = SetAside {
                relation: field(row, q, "relation")?,
                name: field(row, q, "name")?,
                definition: field(row, q, "definition")?,
                comment: field(row, q, "comment")?,
            };
            client
                .batch_execute(&format!(
                    "ALTER TABLE {} DROP CONSTRAINT {}",
                    constraint.relation,
                    quote_ident(&constraint.name)
                ))
                .await
                .with_context(|| {
                    format!(
                        "setting NOT VALID constraint {} of {} aside for the load (this needs the table's owner, \
                         and REFERENCES on the table a foreign key points to)",
                        constraint.name, constraint.relation
                    )
                })?;
            set_aside.push(constraint);
        }
        Ok(Suspended(set_aside))
    }

    /// Adds every constraint back as it was, NOT VALID: the loaded rows are not checked.
    pub async fn restore(self, client: &Client) -> Result<()> {
        for constraint in self.0 {
            let mut sql = format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {}",
                constraint.relation,
                quote_ident(&constraint.name),
                constraint.definition
            );
            if let Some(comment) = &constraint.comment {
                sql.push_str(&format!(
                    "; COMMENT ON CONSTRAINT {} ON {} IS {}",
                    quote_ident(&constraint.name),
                    constraint.relation,
                    quote_literal(comment)
                ));
            }
            client.batch_execute(&sql).await.with_context(|| {
                format!(
                    "adding NOT VALID constraint {} of {} back after the load",
                    constraint.name, constraint.relation
                )
            })?;
        }
        Ok(())
    }
}
