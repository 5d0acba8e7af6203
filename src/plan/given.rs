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
    /// sha256 of the file's text, for the file's metadata.
    pub sha256: String,
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
    /// Their declared types, as written ("" for none).
    pub declared: Vec<String>,
    /// Its place in the file: tables are created in the file's order.
    pub order: usize,
    /// The INTEGER PRIMARY KEY column (the rowid), if the table has one.
    pub integer_primary_key: Option<String>,
    /// Whether the key is AUTOINCREMENT: SQLite keeps the largest rowid it was given in
    /// `sqlite_sequence`, which a writer that bypasses its insert path has to fill.
    pub autoincrement: bool,
}

impl GivenSchema {
    /// Reads `path` with SQLite: statements it refuses are an error naming the file.
    pub fn load(path: &Path) -> Result<GivenSchema> {
        let context =
            |e: &dyn std::fmt::Display| Error::usage(format!("--sqlite-schema {}: {e}", path.display()));
        let ddl = std::fs::read_to_string(path).map_err(|e| context(&e))?;
        let conn = Connection::open_in_memory().map_err(|e| context(&e))?;
        run_definitions(&conn, &ddl).map_err(|e| context(&e))?;
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
                        declared: Vec::new(),
                        order: 0,
                        integer_primary_key: None,
                        autoincrement: false,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            for (order, table) in tables.iter_mut().enumerate() {
                table.order = order;
                let columns: Vec<(String, String)> = conn
                    .prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")?
                    .query_map([&table.name], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                (table.columns, table.declared) = columns.into_iter().unzip();
                table.index_sql = conn
                    .prepare("SELECT sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL ORDER BY rowid")?
                    .query_map([&table.name], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                table.integer_primary_key = crate::mirror::integer_primary_key(&conn, &table.name)?;
                table.autoincrement = is_autoincrement(&table.create_sql)?;
            }
            Ok(tables)
        };
        let tables = read().map_err(|e| context(&e))?;
        if tables.is_empty() {
            return Err(context(&"it creates no table"));
        }
        let unsupported: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND (type <> 'table' OR wr) AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>())
            .map_err(|e| context(&e))?;
        if !unsupported.is_empty() {
            return Err(context(&format!(
                "{} cannot be filled by an export: only ordinary rowid tables can (no views, virtual or WITHOUT ROWID tables)",
                quoted(&unsupported.iter().map(String::as_str).collect::<Vec<_>>())
            )));
        }
        for table in &tables {
            if let Some(reason) = crate::mirror::reserved_name_reason(&table.name) {
                return Err(context(&format!("table {:?}: the name {reason}", table.name)));
            }
        }
        use sha2::Digest;
        Ok(GivenSchema {
            path: path.to_path_buf(),
            sha256: sha2::Sha256::digest(ddl.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
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
        for column in &columns {
            let at = table.columns.iter().position(|c| c == &column.name).unwrap_or(0);
            let declared = table.declared.get(at).map(String::as_str).unwrap_or("");
            if let Some(why) = misfit(
                column,
                declared,
                table.integer_primary_key.as_deref() == Some(&column.name),
            ) {
                return Err(Error::usage(format!(
                    "{source}, column {:?} ({}) into table {name:?} of {}, declared {declared:?}: {why}",
                    column.name,
                    column.source.type_text,
                    self.path.display()
                )));
            }
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

    /// The file's name and digest, for the metadata (not its local path).
    pub fn describe(&self) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{name} sha256:{}", self.sha256)
    }

    /// Table names, for messages.
    pub fn names(&self) -> String {
        quoted(&self.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>())
    }
}

/// SQLite makes `sqlite_sequence` with the first AUTOINCREMENT table it creates: running the
/// statement alone in an empty database answers exactly, where reading its text would have to
/// tell the keyword from a column named after it or a word in a comment.
fn is_autoincrement(create_sql: &str) -> rusqlite::Result<bool> {
    let alone = Connection::open_in_memory()?;
    alone.execute_batch(create_sql)?;
    alone.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE name = 'sqlite_sequence'",
        [],
        |r| r.get(0),
    )
}

/// Why a column's values cannot go into a column declared so, if they cannot: SQLite
/// would change them on the way in.
fn misfit(column: &PlannedColumn, declared: &str, is_rowid: bool) -> Option<&'static str> {
    let upper = declared.to_ascii_uppercase();
    // SQLite's affinity rules, in their order (datatype3.html, 3.1).
    let text_affinity = !upper.contains("INT") && ["CHAR", "CLOB", "TEXT"].iter().any(|t| upper.contains(t));
    if is_rowid && !column.codec.is_integer() {
        return Some("it is the table's INTEGER PRIMARY KEY, which holds integers only");
    }
    if text_affinity && column.codec.keeps_exact_text() {
        return Some(
            "a TEXT column would keep SQLite's 15-digit rendering of the number, not its value; \
             select it as text in the query (::text)",
        );
    }
    None
}

/// Runs the file's statements one by one: only CREATE TABLE and CREATE INDEX, so reading a
/// schema cannot attach or write files, set pragmas or insert rows that would then be lost.
/// A `.schema` dump's `CREATE TABLE sqlite_sequence(...)` is SQLite's own and is skipped.
fn run_definitions(conn: &Connection, ddl: &str) -> std::result::Result<(), String> {
    use rusqlite::fallible_iterator::FallibleIterator;
    let ddl = without_sqlite_sequence(ddl);
    let mut batch = rusqlite::Batch::new(conn, &ddl);
    while let Some(mut statement) = batch.next().map_err(|e| e.to_string())? {
        let text = statement.expanded_sql().unwrap_or_default();
        let words: Vec<String> = without_leading_comments(&text)
            .split(|c: char| c.is_whitespace() || c == '(')
            .filter(|w| !w.is_empty())
            .take(3)
            .map(str::to_ascii_uppercase)
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["CREATE", "TABLE", ..] | ["CREATE", "INDEX", ..] | ["CREATE", "UNIQUE", "INDEX"] => {}
            _ => {
                let shown: String = without_leading_comments(&text).chars().take(60).collect();
                return Err(format!(
                    "only CREATE TABLE and CREATE INDEX statements are taken, not {shown:?}"
                ));
            }
        }
        statement.raw_execute().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A statement's text from its first keyword: SQLite hands a statement over with the
/// comments before it.
fn without_leading_comments(mut text: &str) -> &str {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix("--") {
            text = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = text.strip_prefix("/*") {
            text = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return text;
        }
    }
}

/// The text without `CREATE TABLE sqlite_sequence(name,seq);`, which `.schema` prints and
/// SQLite refuses to run (the table is its own, made with the first AUTOINCREMENT table).
fn without_sqlite_sequence(ddl: &str) -> String {
    const DUMPED: &str = "create table sqlite_sequence(name,seq);";
    let mut kept = String::with_capacity(ddl.len());
    let mut rest = ddl;
    while let Some(at) = rest.to_ascii_lowercase().find(DUMPED) {
        kept.push_str(&rest[..at]);
        rest = &rest[at + DUMPED.len()..];
    }
    kept.push_str(rest);
    kept
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
             CREATE TABLE \"Named\" (id INTEGER PRIMARY KEY, \"AUTOINCREMENT\" TEXT /* not AUTOINCREMENT */);
             CREATE INDEX \"IX\" ON \"Prompts\" (\"Title\");",
        )
        .unwrap();
        let prompts = given.table("Prompts").unwrap();
        assert_eq!(prompts.columns, vec!["Id", "Title"]);
        assert_eq!(prompts.integer_primary_key.as_deref(), Some("Id"));
        assert_eq!(prompts.index_sql.len(), 1);
        assert!(prompts.create_sql.contains("AUTOINCREMENT"));
        assert!(prompts.autoincrement);
        assert_eq!(given.table("Other").unwrap().integer_primary_key, None);
        assert!(!given.table("Other").unwrap().autoincrement);
        assert!(
            !given.table("Named").unwrap().autoincrement,
            "a column or a comment named AUTOINCREMENT is not the keyword"
        );
        assert_eq!(
            given.tables.len(),
            3,
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
        for refused in [
            "CREATE TABLE t (a); CREATE VIEW v AS SELECT a FROM t",
            "CREATE TABLE t (a PRIMARY KEY) WITHOUT ROWID",
            "CREATE VIRTUAL TABLE f USING fts5(a)",
            "CREATE TABLE t (a); INSERT INTO t VALUES (1)",
            "PRAGMA user_version = 7; CREATE TABLE t (a)",
            "ATTACH 'x.db' AS x; CREATE TABLE x.t (a)",
            "CREATE TABLE t (a); CREATE TRIGGER g AFTER INSERT ON t BEGIN SELECT 1; END",
        ] {
            assert!(schema(refused).is_err(), "{refused}");
        }
        // A .schema dump of a file with AUTOINCREMENT names SQLite's own table.
        let dumped = schema("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a);\nCREATE TABLE sqlite_sequence(name,seq);").unwrap();
        assert_eq!(dumped.tables.len(), 1);
    }
}
