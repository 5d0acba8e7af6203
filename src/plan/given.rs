//! Exporting into a given SQLite schema (`sqlite_schema` in a profile, `--sqlite-schema`):
//! the data tables are created by the statements of a DDL file, exactly as written, and
//! each is filled by the `--query` or source table of its name, column by column by name.
//! The file is read by SQLite itself (an in-memory database), so what it accepts is what
//! the export creates.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::PlannedColumn;
use crate::error::{Error, Result};

/// A DDL file, as SQLite read it.
#[derive(Debug, Clone)]
pub struct GivenSchema {
    pub path: PathBuf,
    pub tables: Vec<GivenTable>,
}

#[derive(Debug, Clone)]
pub struct GivenTable {
    pub name: String,
    /// Its CREATE TABLE statement as the file has it.
    pub create_sql: String,
    /// Its CREATE INDEX statements, run after the rows are in.
    pub index_sql: Vec<String>,
    /// Column names in the table's order.
    pub columns: Vec<String>,
    /// The INTEGER PRIMARY KEY column (the rowid), if the table has one.
    pub integer_primary_key: Option<String>,
}

impl GivenSchema {
    /// Reads `path` with SQLite: statements it refuses are an error naming the file.
    pub fn load(path: &Path) -> Result<GivenSchema> {
        let context =
            |e: &dyn std::fmt::Display| Error::usage(format!("--sqlite-schema {}: {e}", path.display()));
        let ddl = std::fs::read_to_string(path).map_err(|e| context(&e))?;
        let conn = Connection::open_in_memory().map_err(|e| context(&e))?;
        conn.execute_batch(&ddl).map_err(|e| context(&e))?;
        let read = || -> rusqlite::Result<Vec<GivenTable>> {
            let mut tables: Vec<GivenTable> = conn
                .prepare(
                    "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                     ORDER BY rowid",
                )?
                .query_map([], |r| {
                    Ok(GivenTable {
                        name: r.get(0)?,
                        create_sql: r.get(1)?,
                        index_sql: Vec::new(),
                        columns: Vec::new(),
                        integer_primary_key: None,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            for table in &mut tables {
                table.columns = conn
                    .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?
                    .query_map([&table.name], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                table.index_sql = conn
                    .prepare("SELECT sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL ORDER BY rowid")?
                    .query_map([&table.name], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                table.integer_primary_key = crate::mirror::integer_primary_key(&conn, &table.name)?;
            }
            Ok(tables)
        };
        let tables = read().map_err(|e| context(&e))?;
        if tables.is_empty() {
            return Err(context(&"it creates no table"));
        }
        for table in &tables {
            if let Some(reason) = crate::mirror::reserved_name_reason(&table.name) {
                return Err(context(&format!("table {:?}: the name {reason}", table.name)));
            }
        }
        Ok(GivenSchema {
            path: path.to_path_buf(),
            tables,
        })
    }

    pub fn table(&self, name: &str) -> Option<&GivenTable> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// `columns` (of the query or source table `name` fills the DDL table with) in the
    /// DDL table's order; a column on one side only is an error naming both sides.
    pub fn arrange(
        &self,
        name: &str,
        source: &str,
        columns: Vec<PlannedColumn>,
    ) -> Result<Vec<PlannedColumn>> {
        let Some(table) = self.table(name) else {
            return Err(Error::usage(format!(
                "{source} fills a table {name:?} that {} does not create; its tables are {}",
                self.path.display(),
                self.names()
            )));
        };
        let missing: Vec<&str> = table
            .columns
            .iter()
            .filter(|c| !columns.iter().any(|p| &p.name == *c))
            .map(String::as_str)
            .collect();
        let extra: Vec<&str> = columns
            .iter()
            .filter(|p| !table.columns.contains(&p.name))
            .map(|p| p.name.as_str())
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("{} has no column {}", source, quoted(&missing)));
            }
            if !extra.is_empty() {
                parts.push(format!(
                    "table {name:?} of {} has no column {}",
                    self.path.display(),
                    quoted(&extra)
                ));
            }
            return Err(Error::usage(format!(
                "{source} does not fit table {name:?} of {}: {}",
                self.path.display(),
                parts.join("; ")
            )));
        }
        let mut columns = columns;
        let mut arranged = Vec::with_capacity(columns.len());
        for name in &table.columns {
            if let Some(at) = columns.iter().position(|p| &p.name == name) {
                arranged.push(columns.swap_remove(at));
            }
        }
        Ok(arranged)
    }

    /// Table names, for messages.
    pub fn names(&self) -> String {
        quoted(&self.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>())
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(ddl: &str) -> Result<GivenSchema> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.sql");
        std::fs::write(&path, ddl).unwrap();
        GivenSchema::load(&path)
    }

    #[test]
    fn tables_columns_indexes_and_the_rowid_key_are_read_by_sqlite() {
        let given = schema(
            "CREATE TABLE \"Prompts\" (\"Id\" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, \"Title\" TEXT NOT NULL);
             CREATE TABLE \"Other\" (a, b);
             CREATE INDEX \"IX\" ON \"Prompts\" (\"Title\");",
        )
        .unwrap();
        let prompts = given.table("Prompts").unwrap();
        assert_eq!(prompts.columns, vec!["Id", "Title"]);
        assert_eq!(prompts.integer_primary_key.as_deref(), Some("Id"));
        assert_eq!(prompts.index_sql.len(), 1);
        assert!(prompts.create_sql.contains("AUTOINCREMENT"));
        assert_eq!(given.table("Other").unwrap().integer_primary_key, None);
        assert_eq!(
            given.tables.len(),
            2,
            "sqlite_sequence is SQLite's, not the file's"
        );
    }

    #[test]
    fn statements_sqlite_refuses_are_an_error_naming_the_file() {
        let error = schema("CREATE TABLE t (a INTEGER,").unwrap_err().to_string();
        assert!(error.contains("schema.sql"), "{error}");
        let error = schema("-- nothing").unwrap_err().to_string();
        assert!(error.contains("creates no table"), "{error}");
        let error = schema("CREATE TABLE _pgmirror_x (a)").unwrap_err().to_string();
        assert!(error.contains("reserved"), "{error}");
    }
}
