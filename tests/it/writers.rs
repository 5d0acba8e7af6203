//! The page writer (the default for fresh mirrors) against SQLite's insert path
//! (`--writer sqlite`): the same mirror, value by value, on the project's datasets and on
//! given schemas; tables the page writer does not cover fall back to the insert path.

use std::path::Path;

use crate::support::*;

/// `export --json` with `extra`; returns the summary.
fn export_json(db: &TestDb, output: &Path, extra: &[&str]) -> serde_json::Value {
    let output_text = output.to_str().expect("utf-8 path");
    let mut args = vec![
        "export",
        "--quiet",
        "--json",
        "--source",
        &db.url,
        "--output",
        output_text,
    ];
    args.extend_from_slice(extra);
    let result = pgmirror(&args);
    assert!(
        result.status.success(),
        "export of {} failed: {}",
        db.name,
        String::from_utf8_lossy(&result.stderr)
    );
    serde_json::from_slice(&result.stdout).expect("--json prints JSON")
}

/// Every row of every data table, each value with its storage class (a real and an
/// integer of the same number differ), sorted: what a reader sees. With `rowids`, also each
/// row's rowid and the exact-text table, which refers to rows by rowid: both are the same
/// only when rows arrive in the same order (one job), as a table without an INTEGER PRIMARY
/// KEY numbers its rows in arrival order.
fn mirror_contents(mirror: &Path, rowids: bool) -> Vec<(String, Vec<String>)> {
    let conn = open_mirror(mirror);
    let mut tables = mirror_table_names(mirror);
    let exact: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = '_pgmirror_exact_text'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if exact && rowids {
        tables.push("_pgmirror_exact_text".into());
    }
    // AUTOINCREMENT counts: in the order tables were first written to, which jobs decide.
    let sequence = "sqlite_sequence";
    let counted: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = ?1",
            [sequence],
            |r| r.get(0),
        )
        .unwrap();
    if counted {
        tables.push(sequence.into());
    }
    tables
        .into_iter()
        .map(|table| {
            let quoted = format!("\"{}\"", table.replace('"', "\"\""));
            let columns: Vec<String> = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{}')",
                    table.replace('\'', "''")
                ))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let row_text = columns
                .iter()
                .map(|c| {
                    let c = format!("\"{}\"", c.replace('"', "\"\""));
                    format!("typeof({c}) || ':' || quote({c})")
                })
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            let with_rowid = format!("SELECT rowid || '#' || {row_text} FROM {quoted}");
            let without = format!("SELECT {row_text} FROM {quoted}");
            let mut rows: Vec<String> = (if rowids && table != sequence {
                conn.prepare(&with_rowid)
            } else {
                conn.prepare(&without)
            })
            .or_else(|_| conn.prepare(&without))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
            rows.sort();
            (table, rows)
        })
        .collect()
}

fn assert_same_mirror(pages: &Path, sqlite: &Path, rowids: bool, what: &str) {
    let (pages, sqlite) = (mirror_contents(pages, rowids), mirror_contents(sqlite, rowids));
    assert_eq!(
        pages.iter().map(|(t, _)| t).collect::<Vec<_>>(),
        sqlite.iter().map(|(t, _)| t).collect::<Vec<_>>(),
        "{what}: tables"
    );
    for ((table, page_rows), (_, sqlite_rows)) in pages.iter().zip(&sqlite) {
        assert_eq!(page_rows.len(), sqlite_rows.len(), "{what}: rows of {table}");
        if let Some((a, b)) = page_rows.iter().zip(sqlite_rows).find(|(a, b)| a != b) {
            panic!("{what}: table {table} differs:\n page writer: {a}\n insert path: {b}");
        }
    }
}

fn both_writers(db: &TestDb, extra: &[&str]) -> (tempfile::TempDir, serde_json::Value, serde_json::Value) {
    let dir = temp_dir();
    let pages = export_json(db, &dir.path().join("pages.db"), extra);
    let mut sqlite_args = extra.to_vec();
    sqlite_args.extend_from_slice(&["--writer", "sqlite"]);
    let sqlite = export_json(db, &dir.path().join("sqlite.db"), &sqlite_args);
    assert_eq!(sqlite["writer"], "sqlite", "--writer sqlite is obeyed");
    assert_eq!(pages["rows"], sqlite["rows"]);
    let one_job = extra.windows(2).any(|w| w == ["--jobs", "1"]);
    assert_same_mirror(
        &dir.path().join("pages.db"),
        &dir.path().join("sqlite.db"),
        one_job,
        &db.name,
    );
    (dir, pages, sqlite)
}

#[test]
fn the_page_writer_writes_what_the_insert_path_writes_on_every_dataset() {
    let fixtures = fixtures_dir();
    let datasets = [
        (
            "writers_pagila",
            vec![
                "datasets/pagila/pagila-schema.sql",
                "datasets/pagila/pagila-data.sql",
            ],
        ),
        (
            "writers_datatypes",
            vec!["datasets/pg-datatypes/ddl.sql", "datasets/pg-datatypes/dml.sql"],
        ),
        (
            "writers_adp",
            vec!["aidungeonprompts/schema.sql", "aidungeonprompts/seed.sql"],
        ),
    ];
    for (name, files) in datasets {
        let db = fresh_db(name);
        for file in files {
            db.psql_file(&fixtures.join(file));
        }
        // Chunked reads in small batches: several runs of one table land in one B-tree.
        let (_dir, pages, _) = both_writers(
            &db,
            &["--jobs", "3", "--chunk-size", "64kB", "--batch-rows", "100"],
        );
        assert_eq!(
            pages["writer"], "pages",
            "{name}: the default writer is the page writer"
        );
        if name == "writers_pagila" {
            assert!(
                pages["copy_tasks"].as_u64() > pages["tables"].as_u64().map(|t| t + 5),
                "pagila's larger tables are read in chunks: {pages}"
            );
        }
    }
}

#[test]
fn a_given_schema_is_written_by_pages_unless_its_create_table_makes_an_index() {
    let db = fresh_db("writers_given");
    db.execute(
        "CREATE TABLE item (id bigint PRIMARY KEY, code text, amount numeric, seen timestamptz, flag bool, n int);
         INSERT INTO item SELECT g, 'c' || g, g * 1.5, timestamptz '2021-01-01 00:00+00' + g * interval '1 hour',
                                 g % 2 = 0, CASE WHEN g % 7 = 0 THEN NULL ELSE g END
         FROM generate_series(1, 3000) g;",
    );
    let dir = temp_dir();
    // Declared types that make SQLite convert: numbers into TEXT, numeric text into REAL.
    let plain = dir.path().join("plain.sql");
    std::fs::write(
        &plain,
        "CREATE TABLE item (id INTEGER PRIMARY KEY, code TEXT, amount REAL, seen TEXT, flag INTEGER, n TEXT);\n\
         CREATE INDEX item_code ON item (code);\n",
    )
    .unwrap();
    let (_dir, pages, _) = both_writers(&db, &["--jobs", "1", "--sqlite-schema", plain.to_str().unwrap()]);
    assert_eq!(pages["writer"], "pages");

    // AUTOINCREMENT: SQLite's insert path counts the largest key in sqlite_sequence, and
    // leaves no count for an empty table.
    db.execute("CREATE TABLE empty_item (id bigint PRIMARY KEY, code text);");
    let counted = dir.path().join("autoincrement.sql");
    std::fs::write(
        &counted,
        "CREATE TABLE item (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, code TEXT, amount REAL, seen TEXT, flag INTEGER, n TEXT);\n\
         CREATE TABLE empty_item (id INTEGER PRIMARY KEY AUTOINCREMENT, code TEXT);\n",
    )
    .unwrap();
    let (written, pages, _) = both_writers(
        &db,
        &["--jobs", "2", "--sqlite-schema", counted.to_str().unwrap()],
    );
    assert_eq!(pages["writer"], "pages");
    let counts: Vec<(String, i64)> = open_mirror(&written.path().join("pages.db"))
        .prepare("SELECT name, seq FROM sqlite_sequence ORDER BY name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(counts, vec![("item".to_string(), 3000)]);

    let unique = dir.path().join("unique.sql");
    std::fs::write(
        &unique,
        "CREATE TABLE item (id INTEGER PRIMARY KEY, code TEXT UNIQUE, amount REAL, seen TEXT, flag INTEGER, n TEXT);\n",
    )
    .unwrap();
    let (_dir, pages, _) = both_writers(&db, &["--jobs", "1", "--sqlite-schema", unique.to_str().unwrap()]);
    assert_eq!(
        pages["writer"], "sqlite",
        "a UNIQUE column needs SQLite's insert path"
    );

    // A CHECK constraint is SQLite's to enforce; the word in a comment is not one.
    for (ddl, writer) in [
        ("amount REAL CHECK (amount >= 0)", "sqlite"),
        ("amount REAL /* no CHECK here */", "pages"),
    ] {
        let checked = dir.path().join("checked.sql");
        std::fs::write(
            &checked,
            format!("CREATE TABLE item (id INTEGER PRIMARY KEY, code TEXT, {ddl}, seen TEXT, flag INTEGER, n TEXT);\n"),
        )
        .unwrap();
        let (_dir, pages, _) = both_writers(
            &db,
            &["--jobs", "1", "--sqlite-schema", checked.to_str().unwrap()],
        );
        assert_eq!(pages["writer"], writer, "{ddl}");
    }
}
