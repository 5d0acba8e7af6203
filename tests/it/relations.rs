//! Which relations become which SQLite tables: partitions, inheritance, materialized
//! views, schemas, hostile names, filters and collisions.

use crate::compare::assert_mirror_matches;
use crate::support::{export, fresh_db, mirror_table_names, open_mirror, pgmirror, temp_dir};

pub const RELATIONS: &str = r#"
CREATE TABLE measurements (id bigint, taken date NOT NULL, value numeric) PARTITION BY RANGE (taken);
CREATE TABLE measurements_2023 PARTITION OF measurements FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
    PARTITION BY LIST (id);
CREATE TABLE measurements_2024_a PARTITION OF measurements_2024 FOR VALUES IN (1, 2, 3);
CREATE TABLE measurements_2024_b PARTITION OF measurements_2024 DEFAULT;
CREATE TABLE measurements_other PARTITION OF measurements DEFAULT;
INSERT INTO measurements SELECT g, date '2022-12-25' + g * 3, g * 1.5 FROM generate_series(1, 300) g;

CREATE TABLE animals (id serial PRIMARY KEY, name text);
CREATE TABLE dogs (breed text) INHERITS (animals);
INSERT INTO animals (name) VALUES ('generic');
INSERT INTO dogs (name, breed) VALUES ('rex', 'collie'), ('fido', 'pug');

CREATE MATERIALIZED VIEW dog_names AS SELECT name FROM dogs;
CREATE MATERIALIZED VIEW never_refreshed AS SELECT 1 AS one WITH NO DATA;
CREATE VIEW adults AS SELECT * FROM animals WHERE id > 1;

CREATE SCHEMA sales;
CREATE TABLE sales.animals (id int PRIMARY KEY, price numeric(8,2));
INSERT INTO sales.animals VALUES (1, 9.99);
CREATE SCHEMA "Odd ""Schema""";
CREATE TABLE "Odd ""Schema"""."Table with ""quotes"", spaces and ünïcødé ✓" (
    "Column ""A""" text, "ß ✓" int, "select" int);
INSERT INTO "Odd ""Schema"""."Table with ""quotes"", spaces and ünïcødé ✓" VALUES ('x''y"z', 1, 2);
CREATE INDEX ON "Odd ""Schema"""."Table with ""quotes"", spaces and ünïcødé ✓" ("ß ✓");
CREATE INDEX lower_name ON animals (lower(name));
ALTER TABLE animals ADD CONSTRAINT name_not_empty CHECK (name <> '');
"#;

#[test]
fn partitions_inheritance_matviews_and_schemas_map_as_designed() {
    let db = fresh_db("relations");
    db.execute(RELATIONS);
    let dir = temp_dir();
    let mirror = dir.path().join("relations.db");
    let stderr = export(&db, &mirror, &["--jobs", "3"]);
    assert_mirror_matches(&db, &mirror);

    let tables = mirror_table_names(&mirror);
    assert_eq!(
        tables,
        vec![
            "Odd \"Schema\".Table with \"quotes\", spaces and ünïcødé ✓",
            "animals",
            "dog_names",
            "dogs",
            "measurements",
            "sales.animals",
        ]
    );
    let conn = open_mirror(&mirror);
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM measurements"),
        300,
        "all leaves, nested ones too"
    );
    assert_eq!(
        count("SELECT count(*) FROM animals"),
        1,
        "an inheritance parent holds only its own rows"
    );
    assert_eq!(count("SELECT count(*) FROM dogs"), 2);
    assert_eq!(count("SELECT count(*) FROM dog_names"), 2);
    assert_eq!(count("SELECT count(*) FROM \"sales.animals\""), 1);
    let partitions: String = conn
        .query_row(
            "SELECT partitions FROM _pgmirror_tables WHERE sqlite_name = 'measurements'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(partitions.contains("public.measurements_2024_b"), "{partitions}");
    assert_eq!(count("SELECT count(*) FROM _pgmirror_views WHERE view_name IN ('adults', 'never_refreshed', 'dog_names')"), 3);
    assert!(stderr.contains("never_refreshed is not populated"), "{stderr}");
    // What SQLite cannot express is recorded and reported.
    assert_eq!(count("SELECT count(*) FROM _pgmirror_indexes WHERE index_name = 'lower_name' AND status = 'untranslated'"), 1);
    assert_eq!(count("SELECT count(*) FROM _pgmirror_constraints WHERE constraint_name = 'name_not_empty' AND translated = 0"), 2, "on animals and, inherited, on dogs");
    assert!(
        stderr.contains("lower_name") && stderr.contains("name_not_empty"),
        "{stderr}"
    );
    let quoted: String = conn
        .query_row("SELECT \"Column \"\"A\"\"\" FROM \"Odd \"\"Schema\"\".Table with \"\"quotes\"\", spaces and ünïcødé ✓\"", [], |r| r.get(0))
        .unwrap();
    assert_eq!(quoted, "x'y\"z");
}

#[test]
fn filters_select_tables_by_name_schema_and_glob() {
    let db = fresh_db("filters");
    db.execute(RELATIONS);
    let dir = temp_dir();
    let run = |args: &[&str]| {
        let mirror = dir.path().join("filtered.db");
        export(&db, &mirror, args);
        mirror_table_names(&mirror)
    };
    assert_eq!(run(&["--table", "animals"]), vec!["animals", "sales.animals"]);
    assert_eq!(run(&["--table", "sales.animals"]), vec!["sales.animals"]);
    assert_eq!(run(&["--schema", "sales"]), vec!["sales.animals"]);
    assert_eq!(
        run(&["--table", "d*", "--exclude-table", "dogs"]),
        vec!["dog_names"]
    );

    let missing = pgmirror(&[
        "export",
        "--source",
        &db.url,
        "--output",
        "/tmp/never.db",
        "--table",
        "no_such_table",
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no table matches --table no_such_table"));
    let wrong_case = pgmirror(&[
        "export",
        "--source",
        &db.url,
        "--output",
        "/tmp/never.db",
        "--table",
        "Animals",
    ]);
    assert_eq!(
        wrong_case.status.code(),
        Some(2),
        "table names are case-sensitive"
    );
    assert!(!std::path::Path::new("/tmp/never.db").exists());
}

#[test]
fn tables_whose_mirror_names_collide_are_an_error_naming_both() {
    let db = fresh_db("collisions");
    db.execute(r#"CREATE SCHEMA s; CREATE TABLE s.t (a int); CREATE TABLE public."s.t" (b int);"#);
    let dir = temp_dir();
    let mirror = dir.path().join("collide.db");
    let result = pgmirror(&[
        "export",
        "--source",
        &db.url,
        "--output",
        mirror.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("public.s.t") && stderr.contains("s.t"),
        "{stderr}"
    );
    assert!(!mirror.exists());
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing left behind"
    );
}
