//! The restore oracle (issue 13): fixtures/oracle.sql holds every kind of schema object and
//! every built-in type with edge values. Exported, then restored with `--create` into an
//! empty database and with `--disable-triggers` into a `pg_dump --schema-only` copy, every
//! relation's rows must be identical (order-free digests of `to_jsonb(row)`, so column order
//! does not matter), and after `--create` pg_dump must describe the same schema.

use crate::support::{
    assert_ok, copy_schema, csv_export, export, fixtures_dir, fresh_db, restore, schema_dump, temp_dir,
    TestDb,
};

fn oracle_source(name: &str) -> TestDb {
    let source = fresh_db(name);
    source.psql_file(&fixtures_dir().join("oracle.sql"));
    source
}

/// Per relation (tables, partitioned tables, materialized views, views): row count and an
/// md5 over the sorted `to_jsonb` texts of its rows (ONLY for inheritance parents), or
/// "not populated" for a materialized view WITH NO DATA.
fn row_digests(db: &TestDb) -> Vec<(String, String)> {
    let relations = db.query(
        "SELECT format('%I.%I', n.nspname, c.relname), c.relkind::text, c.relispopulated \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'm', 'v') AND NOT c.relispartition \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_' ORDER BY 1",
    );
    relations
        .into_iter()
        .map(|row| {
            let relation = row[0].clone().unwrap();
            if row[2].as_deref() == Some("f") {
                return (relation, "not populated".to_owned());
            }
            let only = if row[1].as_deref() == Some("r") { "ONLY " } else { "" };
            let digest = db.query(&format!(
                "SET TimeZone = 'UTC'; SET extra_float_digits = 3; \
                 SELECT count(*) || ' ' || md5(coalesce(string_agg(to_jsonb(t)::text, E'\\n' ORDER BY to_jsonb(t)::text), '')) \
                 FROM {only}{relation} t"
            ));
            (relation, digest[0][0].clone().unwrap())
        })
        .collect()
}

/// The relations whose digests differ, named, rather than two long lists.
fn assert_same_rows(expected: &[(String, String)], actual: &[(String, String)], after: &str) {
    let differing: Vec<String> = expected
        .iter()
        .filter(|e| !actual.contains(e))
        .map(|(relation, digest)| {
            let found = actual
                .iter()
                .find(|(r, _)| r == relation)
                .map(|(_, d)| d.as_str());
            format!(
                "{relation}: expected {digest}, found {}",
                found.unwrap_or("no such relation")
            )
        })
        .chain(
            actual
                .iter()
                .filter(|(r, _)| !expected.iter().any(|(e, _)| e == r))
                .map(|(r, _)| format!("{r}: not in the source")),
        )
        .collect();
    assert!(
        differing.is_empty(),
        "rows differ after {after}:\n{}",
        differing.join("\n")
    );
}

/// pg_dump --schema-only as a sorted list of statements, without comments and settings.
fn schema_statements(db: &TestDb) -> Vec<String> {
    let text = String::from_utf8(schema_dump(db)).expect("utf-8 dump");
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("--") && !line.trim().is_empty())
        .filter(|line| !line.starts_with("SET ") && !line.starts_with("SELECT pg_catalog.set_config"))
        // pg_dump's \restrict guard carries a random key.
        .filter(|line| !line.starts_with("\\restrict ") && !line.starts_with("\\unrestrict "))
        .map(|line| format!("{line}\n"))
        .collect();
    let mut statements: Vec<String> = body
        .split(";\n")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    statements.sort();
    statements
}

/// pg_dump --schema-only of both databases agree, statement by statement.
fn assert_same_schema(source: &TestDb, target: &TestDb, after: &str) {
    let (expected, actual) = (schema_statements(source), schema_statements(target));
    let missing: Vec<&str> = expected
        .iter()
        .filter(|s| !actual.contains(s))
        .map(String::as_str)
        .collect();
    let extra: Vec<&str> = actual
        .iter()
        .filter(|s| !expected.contains(s))
        .map(String::as_str)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "pg_dump --schema-only differs after {after}\n--- only in the source:\n{}\n--- only in the target:\n{}",
        missing.join("\n\n"),
        extra.join("\n\n"),
    );
}

#[test]
fn create_rebuilds_the_oracle_database_exactly() {
    let source = oracle_source("oracle_create_source");
    let dir = temp_dir();
    let mirror = dir.path().join("oracle.db");
    export(&source, &mirror, &[]);
    let target = fresh_db("oracle_create_target");
    assert_ok(&restore(&mirror, &target, &["--create"]));

    let expected = row_digests(&source);
    assert!(expected.len() >= 16, "the oracle has its relations: {expected:?}");
    assert_same_rows(&expected, &row_digests(&target), "restore --create");

    let statements = schema_statements(&source).len();
    assert!(
        statements > 50,
        "the oracle's schema is large: {statements} statements"
    );
    assert_same_schema(&source, &target, "restore --create");

    let sequence = "SELECT last_value, is_called FROM app.ticket_seq";
    assert_eq!(
        target.query(sequence),
        source.query(sequence),
        "the standalone sequence goes on where it was"
    );

    // The triggers came back after the rows, and fire now.
    target.execute("INSERT INTO app.tickets (n, title) VALUES (6, 'after')");
    assert_eq!(
        target.scalar("SELECT note FROM app.tickets WHERE title = 'after'"),
        " [rewritten by trigger]"
    );
}

#[test]
fn disable_triggers_restores_the_oracle_into_a_pg_dump_schema_copy() {
    let source = oracle_source("oracle_schema_copy_source");
    let dir = temp_dir();
    let mirror = dir.path().join("oracle.db");
    export(&source, &mirror, &[]);
    let target = fresh_db("oracle_schema_copy_target");
    copy_schema(&source, &target);
    let schema_before = schema_statements(&target);
    assert_ok(&restore(&mirror, &target, &["--disable-triggers"]));
    assert_same_rows(
        &row_digests(&source),
        &row_digests(&target),
        "restore --disable-triggers into a schema copy",
    );
    // The copy's schema is pg_dump's (a child's column order may differ from the source's):
    // the restore leaves it exactly as it was, triggers and NOT VALID constraints included.
    assert_eq!(
        schema_statements(&target),
        schema_before,
        "restore --disable-triggers changed the schema copy"
    );
}

#[test]
fn an_object_the_target_cannot_have_stops_create_before_any_row_naming_it() {
    let source = oracle_source("oracle_missing_library_source");
    let dir = temp_dir();
    // As if the function were C code in a library the target does not have. app.norm is
    // called only by an index and a view, app."Stamp Ω" (a name PostgreSQL quotes) only by
    // a trigger: every CREATE TABLE succeeds, and the check comes after them, before the rows.
    for (case, name, shown) in [
        ("plain", "norm(text)", "function app.norm(text)"),
        ("quoted", "Stamp Ω()", "function app.Stamp Ω()"),
    ] {
        let mirror = dir.path().join(format!("{case}.db"));
        export(&source, &mirror, &[]);
        let conn = rusqlite::Connection::open(&mirror).unwrap();
        let edited = conn
            .execute(
                "UPDATE _pgmirror_objects SET create_sql = \
                 'CREATE FUNCTION app.pgmirror_missing() RETURNS text LANGUAGE c AS ''$libdir/pgmirror_no_such_library'', ''f''' \
                 WHERE kind = 'function' AND schema_name = 'app' AND object_name = ?1",
                [name],
            )
            .unwrap();
        assert_eq!(edited, 1, "the mirror records {name}");
        drop(conn);
        let target = fresh_db(&format!("oracle_missing_library_{case}"));
        let output = restore(&mirror, &target, &["--create"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{case}: {stderr}");
        assert!(stderr.contains(shown), "{case}: names the object: {stderr}");
        assert!(
            stderr.contains("pgmirror_no_such_library"),
            "{case}: says why: {stderr}"
        );
        assert!(
            stderr.contains("creating what the mirror's tables need in the target; nothing was written"),
            "{case}: stops before the rows: {stderr}"
        );
        assert_eq!(
            target.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'app'"),
            "0",
            "{case}: the whole restore was rolled back"
        );
    }
}

/// A mirror as format 1 wrote it: no `_pgmirror_objects`, no `is_local`.
fn downgrade_to_format_1(mirror: &std::path::Path) {
    let conn = rusqlite::Connection::open(mirror).unwrap();
    conn.execute_batch(
        "DROP TABLE _pgmirror_objects; ALTER TABLE _pgmirror_constraints DROP COLUMN is_local; \
         ALTER TABLE _pgmirror_views DROP COLUMN options; ALTER TABLE _pgmirror_views DROP COLUMN populated; \
         DELETE FROM _pgmirror_types WHERE kind IN ('range', 'base'); PRAGMA user_version = 1; \
         UPDATE _pgmirror_meta SET value = '1' WHERE key = 'format_version';",
    )
    .unwrap();
}

#[test]
fn a_format_1_mirror_still_restores_with_create() {
    let source = fresh_db("oracle_format_1_source");
    source.execute(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL UNIQUE, feeling mood DEFAULT 'happy');
         CREATE TABLE events (id bigint, at date NOT NULL, who integer REFERENCES people) PARTITION BY RANGE (at);
         CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE INDEX events_who ON events (who);
         INSERT INTO people (name, feeling) VALUES ('ann', 'sad'), ('bob', NULL);
         INSERT INTO events VALUES (1, '2025-05-05', 1), (2, '2025-06-06', NULL);",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("old.db");
    export(&source, &mirror, &[]);
    downgrade_to_format_1(&mirror);
    let target = fresh_db("oracle_format_1_target");
    assert_ok(&restore(&mirror, &target, &["--create"]));
    assert_same_rows(
        &row_digests(&source),
        &row_digests(&target),
        "restore --create of a format 1 mirror",
    );
    assert_same_schema(&source, &target, "restore --create of a format 1 mirror");
}

#[test]
fn csv_export_from_a_mirror_writes_what_csv_export_source_writes() {
    let source = oracle_source("oracle_csv_source");
    let dir = temp_dir();
    let mirror = dir.path().join("oracle.db");
    export(&source, &mirror, &[]);
    for table in [
        "app.builtin_types",
        "app.user_typed",
        "app.tickets",
        "app.measurements",
        "app.orders",
    ] {
        let (from_mirror, from_source) = (dir.path().join("mirror.csv"), dir.path().join("source.csv"));
        csv_export(("--from", mirror.to_str().unwrap()), table, &from_mirror);
        csv_export(("--source", &source.url), table, &from_source);
        let (mirror_text, source_text) = (
            std::fs::read_to_string(&from_mirror).unwrap(),
            std::fs::read_to_string(&from_source).unwrap(),
        );
        let mut mirror_rows: Vec<&str> = mirror_text.lines().collect();
        let mut source_rows: Vec<&str> = source_text.lines().collect();
        mirror_rows.sort_unstable();
        source_rows.sort_unstable();
        assert_eq!(
            mirror_rows, source_rows,
            "{table}: the CSV depends on where it came from"
        );
    }
}

#[test]
fn a_filtered_create_makes_what_its_tables_need() {
    let source = oracle_source("oracle_filtered_source");
    let dir = temp_dir();
    let full = dir.path().join("full.db");
    export(&source, &full, &[]);
    let only_tickets = dir.path().join("tickets.db");
    export(&source, &only_tickets, &["--table", "app.tickets"]);
    let tickets = |db: &TestDb| {
        row_digests(db)
            .into_iter()
            .filter(|(relation, _)| relation == "app.tickets")
            .collect::<Vec<_>>()
    };
    // An unfiltered restore of the one-table mirror also makes the plain views it can
    // (the two over app.tickets); the others, and the WITH NO DATA materialized view over
    // app.orders, are warnings.
    for (mirror, name, filter, relations) in [
        (
            &full,
            "oracle_filtered_full",
            &["--table", "app.tickets"][..],
            "1",
        ),
        (
            &only_tickets,
            "oracle_filtered_tickets",
            &["--table", "app.tickets"][..],
            "1",
        ),
        (&only_tickets, "oracle_filtered_unfiltered", &[][..], "3"),
    ] {
        let target = fresh_db(name);
        // Functions over tables that are not restored (app.item_ok(app.items)) cannot be
        // made; no restored table needs them, so they are a warning, not a refusal.
        let mut args = vec!["--create"];
        args.extend_from_slice(filter);
        let output = restore(mirror, &target, &args);
        assert_ok(&output);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("not created (no restored table needs it): function app.item_ok"),
            "{name}: says what it left out: {stderr}"
        );
        assert_eq!(tickets(&target), tickets(&source), "{name}");
        assert_eq!(
            target.scalar(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'app' AND c.relkind IN ('r', 'p', 'v', 'm')"
            ),
            relations,
            "{name}: app.tickets, and no view over a table that was not asked for"
        );
        assert_eq!(
            target.scalar("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'app.tickets'::regclass AND NOT tgisinternal"),
            "2",
            "{name}: the table's triggers"
        );
    }
}

#[test]
fn a_materialized_view_is_made_from_the_refreshed_ones_it_reads() {
    let source = oracle_source("oracle_matview_source");
    let dir = temp_dir();
    let mirror = dir.path().join("oracle.db");
    export(&source, &mirror, &[]);
    let target = fresh_db("oracle_matview_target");
    copy_schema(&source, &target);
    // The target has app.title_counts (empty until refreshed) but not app.title_total,
    // which reads it: title_total must be computed after title_counts is refreshed.
    target.execute("DROP MATERIALIZED VIEW app.title_total");
    assert_ok(&restore(&mirror, &target, &["--create", "--disable-triggers"]));
    assert_same_rows(
        &row_digests(&source),
        &row_digests(&target),
        "restore --create of one materialized view",
    );
}
